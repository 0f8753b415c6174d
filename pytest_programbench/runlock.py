"""One session per run directory: the controller locks it for the whole session.

Two sessions writing one ``--pb-output`` would score the same instances twice and
replace each other's files mid-write. The controller takes an OS file lock on
``<run>/.programbench.lock`` (released by the kernel if the process dies, so it
never goes stale) and writes ``<host>:<pid>`` beside it for the next session's
message. xdist workers never take it: they belong to the session that holds it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

import pytest

LOCK_NAME = ".programbench.lock"
HOLDER_NAME = ".programbench.lock.holder"


def check_writable(run_dir: Path, where: str) -> None:
    """Make ``run_dir`` and write a file in it, or stop the session with a usage error saying why."""
    from pytest_programbench import files

    probe = run_dir / f".programbench.probe.{os.getpid()}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        files.write_text(probe, "")
        probe.unlink()
    except OSError as exc:
        raise pytest.UsageError(
            f"programbench: the run directory {run_dir} ({where}) cannot be written "
            f"({exc.strerror or exc}): give --pb-output a directory you can write, or make this one writable"
        ) from None


def unwritable(exc: BaseException, run_dir: Path) -> Exception | None:
    """``exc`` as RunDirUnwritable when it is a failed write into ``run_dir``; else None."""
    from pytest_programbench.errors import RunDirUnwritable
    from pytest_programbench.files import WRITE_FAILURES

    if not isinstance(exc, OSError) or exc.errno not in WRITE_FAILURES or not exc.filename:
        return None
    path = Path(os.fsdecode(exc.filename))
    if run_dir != path and run_dir not in path.parents:
        return None
    return RunDirUnwritable(str(path), exc.strerror or str(exc), str(run_dir))


def in_use(run_dir: Path, holder: str) -> pytest.UsageError:
    """The usage error of a second session (pytest.UsageError is final, so not a subclass)."""
    return pytest.UsageError(
        f"programbench: the run directory {run_dir} is in use by another session ({holder}). "
        "Wait for that session to end, stop it, or give this one another --pb-output"
    )


class RunDirLock:
    """Held from ``pytest_configure`` to ``pytest_unconfigure`` of the controller (a plugin)."""

    def __init__(self, run_dir: Path) -> None:
        from filelock import FileLock

        self.run_dir = run_dir
        self._holder = run_dir / HOLDER_NAME
        self._lock = FileLock(str(run_dir / LOCK_NAME), timeout=0)

    def acquire(self) -> None:
        from filelock import Timeout

        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            try:
                holder = self._holder.read_text().strip() or "holder unknown"
            except OSError:
                holder = "holder unknown"
            raise in_use(self.run_dir, holder) from None
        self._holder.write_text(f"{socket.gethostname()}:{os.getpid()}\n")

    def release(self) -> None:
        # The holder file goes first: once the lock is free, the next session writes its own.
        with contextlib.suppress(OSError):
            self._holder.unlink()
        self._lock.release()

    def pytest_unconfigure(self, config: Any) -> None:
        self.release()
