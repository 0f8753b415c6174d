"""Submissions: find an instance's ``submission.tar.gz`` and check it can be read.

The evaluator streams the archive straight into a container's ``tar -xzf``; a file
that is not a gzip tar would fail there as an opaque compile error scored 0. We
check it first so a broken file is a harness error that says so, while an archive
that reads fine but holds a bad workspace stays the submission's own failure.
"""

from __future__ import annotations

import shutil
import tarfile
import zlib
from pathlib import Path

from pytest_programbench import files
from pytest_programbench.errors import NoSubmission, SubmissionInvalid, SubmissionTooLarge

ARCHIVE_NAME = "submission.tar.gz"
#: A replayed archive may unpack to this many times --pb-max-submission: source compresses
#: ~5x, and a gzip bomb (12.5 MB -> 12 GB) must stop long before the disk does.
UNPACKED_FACTOR = 8


def submission_path(run_dir: Path, instance_id: str) -> Path:
    """Where a run directory keeps an instance's archive (the layout `programbench eval` reads)."""
    return run_dir / instance_id / ARCHIVE_NAME


def find_submission(run_dir: Path, instance_id: str) -> Path:
    path = submission_path(run_dir, instance_id)
    if not path.is_file():
        raise NoSubmission(instance_id, str(run_dir))
    return path


def check_archive(path: Path, max_unpacked: int = 0) -> None:
    """Raise SubmissionInvalid unless ``path`` is a gzip-compressed tar we can list.

    With ``max_unpacked`` (bytes), raise SubmissionTooLarge as soon as the members'
    declared sizes pass it: the check stops before decompressing a bomb, and the
    evaluator never unpacks it.
    """
    total = 0
    try:
        with tarfile.open(path, mode="r|gz") as archive:
            for member in archive:
                total += member.size + tarfile.BLOCKSIZE
                if max_unpacked and total > max_unpacked:
                    raise SubmissionTooLarge(
                        f"submission {path} unpacked", max_unpacked, f"it is left untouched at {path}"
                    )
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise SubmissionInvalid(str(path), str(exc) or type(exc).__name__) from None


def place_submission(source: Path, instance_dir: Path) -> Path:
    """Put the archive at ``<instance_dir>/submission.tar.gz`` (no copy when already there)."""
    target = instance_dir / ARCHIVE_NAME
    if target.exists() and target.resolve() == source.resolve():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with files.replacing(target, durable=True) as partial:
        shutil.copyfile(source, partial)
    return target
