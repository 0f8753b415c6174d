"""One session per run directory: the controller locks it for the whole session.

Two sessions writing one ``--pb-output`` would score the same instances twice and
replace each other's files mid-write. The controller takes an OS file lock on
``<run>/.programbench.lock`` (released by the kernel if the process dies, so it
never goes stale) and writes ``<host>:<pid>`` beside it for the next session's
message. xdist workers never take it: they belong to the session that holds it.

The run directory is also where a session's own troubles with it are found first: one
that cannot be written is a usage error before anything starts (:func:`check_writable`),
a write failing later is named (:func:`unwritable`), and what a killed session left (its
containers, the images the evaluator committed, partial files) is swept by the next
session that takes the lock, from the ledger of sessions kept beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest

LOCK_NAME = ".programbench.lock"
HOLDER_NAME = ".programbench.lock.holder"
SESSIONS_NAME = ".programbench.sessions"
_PARTIAL = re.compile(r"\.(\d+)\.partial$")


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
    """Held from ``pytest_configure`` to ``pytest_unconfigure`` of the controller (a plugin).

    It also keeps the run directory's ledger of the sessions that held it
    (``.programbench.sessions``: owner, run id, ``--pb-keep``), each removed when its session
    ends. An entry still there names a session that was killed (``kill -9``, OOM, a lost
    machine): at the start of the next session, what it left is swept (see
    :meth:`pytest_sessionstart`).
    """

    def __init__(
        self, run_dir: Path, *, run_id: str = "", keep: bool = False, hosts: tuple[str, ...] = ()
    ) -> None:
        from filelock import FileLock

        self.run_dir = run_dir
        self.run_id = run_id
        self.keep = keep
        self.hosts: tuple[str | None, ...] = hosts or (None,)
        self._holder = run_dir / HOLDER_NAME
        self._lock = FileLock(str(run_dir / LOCK_NAME), timeout=0)
        self.dead: list[dict[str, Any]] = []  # ledger entries of killed sessions, found at acquire

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
        owner = f"{socket.gethostname()}:{os.getpid()}"
        self._holder.write_text(f"{owner}\n")
        # With the lock held no other live session uses this directory: every entry is a session
        # that ended without its release, unless it is another host's (then not ours to judge).
        entries = read_ledger(self.run_dir)
        self.dead = [e for e in entries if is_dead(e.get("owner", ""))]
        kept = [e for e in entries if e not in self.dead]
        write_ledger(self.run_dir, [*kept, {"owner": owner, "run_id": self.run_id, "keep": self.keep}])

    def release(self) -> None:
        # The holder file goes first: once the lock is free, the next session writes its own.
        with contextlib.suppress(OSError):
            self._holder.unlink()
        owner = f"{socket.gethostname()}:{os.getpid()}"
        with contextlib.suppress(OSError):
            write_ledger(self.run_dir, [e for e in read_ledger(self.run_dir) if e.get("owner") != owner])
        self._lock.release()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Sweep what killed sessions of this run directory left: their containers and committed
        images (if their owners are provably dead) and the partial files of dead writers."""
        if session.config.option.collectonly:
            return
        from pytest_programbench.engine.containers import Engine

        removed, alive, unfinished = 0, set(), []
        for entry in self.dead:
            if entry.get("keep") or not entry.get("run_id"):
                continue  # --pb-keep: its containers were kept on purpose
            for host in self.hosts:
                try:
                    with Engine(host) as engine:
                        gone, left = engine.sweep_orphans(run_id=str(entry["run_id"]), spare_kept=True)
                except Exception as exc:  # the session goes on; --pb-cleanup can finish the job
                    left = [f"{host or 'the engine'} could not be swept ({exc})"]
                    gone = 0
                removed += gone
                alive.update(left)
                if left and entry not in unfinished:
                    unfinished.append(entry)  # its workers may still run: the next session looks again
        if unfinished:
            with contextlib.suppress(OSError):
                write_ledger(self.run_dir, [*unfinished, *read_ledger(self.run_dir)])
        partials = sweep_partials(self.run_dir)
        if not (removed or partials or alive):
            return
        reporter = session.config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None:
            killed = ", ".join(f"{e.get('owner')} (run {e.get('run_id')})" for e in self.dead) or "none"
            reporter.write_line(
                f"programbench: removed {removed} container(s) and image(s) and {partials} partial file(s) "
                f"that killed sessions left in {self.run_dir} (killed: {killed})"
            )
            if alive:
                reporter.write_line(
                    f"programbench: left what may still be in use: {'; '.join(sorted(alive))}"
                )

    def pytest_unconfigure(self, config: Any) -> None:
        self.release()


def read_ledger(run_dir: Path) -> list[dict[str, Any]]:
    """The sessions that hold or held ``run_dir`` without releasing it (one JSON object a line)."""
    try:
        lines = (run_dir / SESSIONS_NAME).read_text().splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def write_ledger(run_dir: Path, entries: list[dict[str, Any]]) -> None:
    from pytest_programbench import files

    files.write_text(run_dir / SESSIONS_NAME, "".join(json.dumps(e) + "\n" for e in entries))


def is_dead(owner: str) -> bool:
    """Whether ``<host>:<pid>`` names a process of this host that is not running."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep_partials(run_dir: Path, depth: int = 3) -> int:
    """Remove ``*.<pid>.partial`` files (files.partial_path) whose writer is not running; returns how many.

    Only as deep as the run directory's layout goes (``attempt-<k>/<id>/<file>``): a run
    directory may sit next to anything.
    """
    removed = 0
    for level in range(depth):
        for path in run_dir.glob("/".join(["*"] * (level + 1)) + ".partial"):
            match = _PARTIAL.search(path.name)
            if match is None or _alive(int(match.group(1))) or not path.is_file():
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed
