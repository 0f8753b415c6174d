"""submissions.scan_archive: the archive read to its end as the task image's tar and gzip read it."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from pytest_programbench.errors import SubmissionInvalid, SubmissionTooLarge
from pytest_programbench.scoring.submissions import ArchiveFault, check_archive, scan_archive

from .archives import ACCEPTED, BUILD, FAULTS, LEFT_TO_TAR


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "submission.tar.gz"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", ACCEPTED)
def test_what_tar_unpacks_passes(tmp_path: Path, case: str) -> None:
    scan_archive(write(tmp_path, BUILD[case]()))


@pytest.mark.parametrize("case", list(FAULTS))
def test_what_tar_refuses_is_named(tmp_path: Path, case: str) -> None:
    with pytest.raises(ArchiveFault) as caught:
        scan_archive(write(tmp_path, BUILD[case]()))
    assert FAULTS[case] in str(caught.value)


@pytest.mark.parametrize("case", list(LEFT_TO_TAR))
def test_what_the_scan_leaves_to_tar_passes_it(tmp_path: Path, case: str) -> None:
    scan_archive(write(tmp_path, LEFT_TO_TAR[case]()))


def test_offsets_are_exact(tmp_path: Path) -> None:
    data = BUILD["correct"]()
    with pytest.raises(ArchiveFault, match=f"from byte {len(data)} of the file"):
        scan_archive(write(tmp_path, data + b"junk"))
    with pytest.raises(ArchiveFault, match=f"ends at byte {len(data) - 8} "):
        scan_archive(write(tmp_path, data[:-8]))
    padded = data + b"\0" * 10 + b"!"
    with pytest.raises(ArchiveFault, match=f"from byte {len(data) + 10} of the file"):
        scan_archive(write(tmp_path, padded))


def test_check_archive_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, BUILD["dotdot_member"]())
    with pytest.raises(SubmissionInvalid) as caught:
        check_archive(path)
    assert caught.value.code == "invalid_submission"
    assert str(path) in str(caught.value) and "tar -czf submission.tar.gz -C <workspace> ." in str(
        caught.value
    )


def test_a_bomb_stops_at_the_unpacked_limit(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as zipped,
        tarfile.open(fileobj=zipped, mode="w|") as tar,
    ):
        info = tarfile.TarInfo("./zeros")
        info.size = 64 * 2**20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(SubmissionTooLarge):
        check_archive(write(tmp_path, raw.getvalue()), max_unpacked=2**20)


def test_memory_does_not_grow_with_the_number_of_members(tmp_path: Path) -> None:
    import tracemalloc

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:  # compressed whole: faster than a gzip stream
        for i in range(4_000):
            tar.addfile(tarfile.TarInfo(f"./f{i}"))
        tar.addfile(tarfile.TarInfo("./link"), None)
    path = write(tmp_path, gzip.compress(raw.getvalue(), compresslevel=1))
    tracemalloc.start()
    try:
        assert scan_archive(path) == 4_001
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20  # streamed, ~1 MiB; listed (tarfile keeps them), 4,000 members take 2.7 MiB more
