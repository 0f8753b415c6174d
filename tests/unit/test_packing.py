"""Packing's pure part: the engine's tar of /workspace in, programbench's layout out, bounded."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_programbench.agents.packing import PackLimit, pack_stream


def engine_tar(*members: tuple[tarfile.TarInfo, bytes]) -> Iterator[bytes]:
    """A tar as the engine's archive API sends it for /workspace, in small chunks."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = buffer.getvalue()
    return iter([raw[i : i + 4096] for i in range(0, len(raw), 4096)])


def engine_tar_pax(*members: tuple[tarfile.TarInfo, bytes]) -> Iterator[bytes]:
    """A tar as Docker's archive API writes one: PAX records for long and non-ASCII names."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = buffer.getvalue()
    return iter([raw[i : i + 4096] for i in range(0, len(raw), 4096)])


def member(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def test_layout_is_tar_c_workspace_dot(tmp_path: Path) -> None:
    chunks = engine_tar(
        (member("workspace", tarfile.DIRTYPE, uid=1000), b""),
        (member("workspace/src", tarfile.DIRTYPE), b""),
        (member("workspace/src/a.c", uid=1000, mode=0o600), b"int main;"),
        (member("workspace/src/b.c", tarfile.LNKTYPE, linkname="workspace/src/a.c"), b""),
        (member("workspace/up", tarfile.SYMTYPE, linkname="../../etc/passwd"), b""),
        (member("workspace/fifo", tarfile.FIFOTYPE), b""),
        (member("workspace/tty", tarfile.CHRTYPE, devmajor=5, devminor=0), b""),
        (member("elsewhere/x"), b"not ours"),
    )
    packed = pack_stream(chunks, tmp_path / "s.tar.gz", root="workspace", max_bytes=0, timeout=60)
    assert packed.skipped == ("./fifo", "./tty") and packed.members == 5
    with tarfile.open(packed.path, "r:gz") as tar:
        got = {m.name: m for m in tar}
        assert tar.extractfile("./src/a.c").read() == b"int main;"  # type: ignore[union-attr]
    assert list(got) == [".", "./src", "./src/a.c", "./src/b.c", "./up"]
    assert got["./src/a.c"].uid == 1000 and got["./src/a.c"].mode == 0o600
    assert got["./src/b.c"].linkname == "./src/a.c" and got["./up"].linkname == "../../etc/passwd"


def test_size_limit_leaves_nothing_behind(tmp_path: Path) -> None:
    chunks = engine_tar(
        (member("workspace", tarfile.DIRTYPE), b""), (member("workspace/r"), os.urandom(300_000))
    )
    with pytest.raises(PackLimit) as caught:
        pack_stream(chunks, tmp_path / "s.tar.gz", root="workspace", max_bytes=100_000, timeout=60)
    assert caught.value.kind == "size"
    assert list(tmp_path.iterdir()) == []


def test_headers_are_written_afresh_in_gnu_format(tmp_path: Path) -> None:
    # The engine names long and non-ASCII members in PAX records; tarfile would let those old
    # records win over the name we give, and the member would unpack under ./workspace/.
    long_name = "workspace/src/test/resources/com/example/" + "d" * 120 + "/fixture.txt"
    target = "/".join(["t" * 50] * 4)
    chunks = engine_tar_pax(
        (member("workspace", tarfile.DIRTYPE), b""),
        (member("workspace/src/données", tarfile.DIRTYPE), b""),
        (member("workspace/src/données/wc.py"), b"print()"),
        (member(long_name), b"deep"),
        (member("workspace/lien", tarfile.SYMTYPE, linkname=target), b""),
        (member("workspace/dur-é", tarfile.LNKTYPE, linkname="workspace/src/données/wc.py"), b""),
    )
    packed = pack_stream(chunks, tmp_path / "s.tar.gz", root="workspace", max_bytes=0, timeout=60)
    raw = gzip.decompress(packed.path.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        got = {m.name: m for m in tar}
        assert all(not m.pax_headers for m in got.values())
    assert list(got) == [
        ".",
        "./src/données",
        "./src/données/wc.py",
        "./" + long_name.removeprefix("workspace/"),
        "./lien",
        "./dur-é",
    ]
    assert got["./lien"].linkname == target and got["./dur-é"].linkname == "./src/données/wc.py"
    # What GNU tar itself writes: long names and targets as ././@LongLink records, other
    # non-ASCII names as their UTF-8 bytes in the header (no PAX header: see pax_headers above).
    assert raw.count(b"././@LongLink") == 2
    assert "./src/données/wc.py".encode() in raw


def test_names_that_are_not_utf8_keep_their_bytes(tmp_path: Path) -> None:
    name = b"workspace/latin1-\xe9-\xff".decode("utf-8", "surrogateescape")
    chunks = engine_tar_pax((member("workspace", tarfile.DIRTYPE), b""), (member(name), b"x"))
    packed = pack_stream(chunks, tmp_path / "s.tar.gz", root="workspace", max_bytes=0, timeout=60)
    raw = gzip.decompress(packed.path.read_bytes())
    assert b"./latin1-\xe9-\xff\0" in raw


def test_memory_does_not_grow_with_the_number_of_members(tmp_path: Path) -> None:
    import tracemalloc

    def many(n: int) -> Iterator[bytes]:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.addfile(member("workspace", tarfile.DIRTYPE))
            for i in range(n):
                tar.addfile(member(f"workspace/f{i}"))
        raw = buffer.getvalue()
        return iter([raw[i : i + 65536] for i in range(0, len(raw), 65536)])

    chunks = many(4_000)  # built before measuring: the test's own archive is not the packer's
    tracemalloc.start()
    try:
        pack_stream(chunks, tmp_path / "s.tar.gz", root="workspace", max_bytes=0, timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Kept members cost ~1 kB each, twice over (read and written); streamed, the buffers alone count.
    assert peak < 4 * 2**20  # streamed, ~1.4 MiB; kept, 4,000 members would take 4.7 MiB more
