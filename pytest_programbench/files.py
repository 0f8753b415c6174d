"""Files in the run directory: written whole or not at all.

Every file a rerun trusts (eval.json, markers, archives, the JSON report) is written
under a temporary name and renamed into place, so a killed session never leaves a
half-written file under the final name. The temporary name carries the process id:
two processes writing the same file (a second session, an xdist worker and the
controller) never rename each other's half-written file away.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def partial_path(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place."""
    return path.with_name(f"{path.name}.{os.getpid()}.partial")


def write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all; a failed write (a full disk) leaves no partial file."""
    partial = partial_path(path)
    try:
        partial.write_text(text)
        partial.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
