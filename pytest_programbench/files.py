"""Files in the run directory: written whole or not at all.

Every file a rerun trusts (eval.json, markers, archives, the JSON report) is written
under a temporary name and renamed into place, so a killed session never leaves a
half-written file under the final name. The temporary name carries the process id:
two processes writing the same file (a second session, an xdist worker and the
controller) never rename each other's half-written file away.

:func:`replacing` is the one place that does this; ``durable=True`` also flushes the
file and its directory to disk before and after the rename, for what a crash of the
machine must not lose or tear (a submission, eval.json, the resume markers).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

#: A failed write whose cause is the directory or its disk (read-only, full, not ours), not the data.
WRITE_FAILURES = frozenset(
    {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}
)


def sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks (what markers record to vouch for a file)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def partial_path(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place."""
    return path.with_name(f"{path.name}.{os.getpid()}.partial")


@contextlib.contextmanager
def replacing(path: Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield the temporary path to write; on a clean exit rename it to ``path``.

    A failure inside the block (a full disk, Ctrl-C) removes the temporary file and
    leaves ``path`` as it was. A block that removes the temporary file itself (nothing
    to replace after all) leaves ``path`` untouched too.
    """
    partial = partial_path(path)
    try:
        yield partial
        if not partial.exists():
            return
        if durable:
            _fsync(partial)
        partial.replace(path)
        if durable:
            _fsync(path.parent)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def write_text(path: Path, text: str, *, durable: bool = False) -> None:
    """Write ``path`` whole or not at all; a failed write (a full disk) leaves no partial file."""
    with replacing(path, durable=durable) as partial:
        partial.write_text(text)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
