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
from pytest_programbench.errors import NoSubmission, SubmissionInvalid

ARCHIVE_NAME = "submission.tar.gz"


def submission_path(run_dir: Path, instance_id: str) -> Path:
    """Where a run directory keeps an instance's archive (the layout `programbench eval` reads)."""
    return run_dir / instance_id / ARCHIVE_NAME


def find_submission(run_dir: Path, instance_id: str) -> Path:
    path = submission_path(run_dir, instance_id)
    if not path.is_file():
        raise NoSubmission(instance_id, str(run_dir))
    return path


def check_archive(path: Path) -> None:
    """Raise SubmissionInvalid unless ``path`` is a gzip-compressed tar we can list."""
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            for _ in archive:
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise SubmissionInvalid(str(path), str(exc) or type(exc).__name__) from None


def place_submission(source: Path, instance_dir: Path) -> Path:
    """Put the archive at ``<instance_dir>/submission.tar.gz`` (no copy when already there)."""
    target = instance_dir / ARCHIVE_NAME
    if target.exists() and target.resolve() == source.resolve():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = files.partial_path(target)
    shutil.copyfile(source, partial)
    partial.replace(target)
    return target
