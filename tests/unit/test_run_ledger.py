"""The run directory's ledger of sessions and its sweep of dead writers' partial files (runlock.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from pytest_programbench.engine.runlock import RunDirLock, read_ledger, sweep_partials


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_a_session_finds_the_killed_ones_and_leaves_other_hosts_alone(tmp_path: Path) -> None:
    host = socket.gethostname()
    killed = {"owner": f"{host}:{dead_pid()}", "run_id": "r-killed", "keep": False}
    elsewhere = {"owner": "another-host:1", "run_id": "r-there", "keep": False}
    (tmp_path / ".programbench.sessions").write_text(
        "".join(json.dumps(e) + "\n" for e in (killed, elsewhere)) + "not json\n"
    )
    lock = RunDirLock(tmp_path, run_id="r-now", keep=True)
    lock.acquire()
    try:
        assert lock.dead == [killed]
        me = {"owner": f"{host}:{os.getpid()}", "run_id": "r-now", "keep": True}
        assert read_ledger(tmp_path) == [elsewhere, me]
    finally:
        lock.release()
    assert read_ledger(tmp_path) == [elsewhere]  # a normal end leaves no entry of its own


def test_partials_of_dead_writers_go_and_live_ones_stay(tmp_path: Path) -> None:
    dead, live = dead_pid(), os.getpid()
    paths = {
        tmp_path / f"report.json.{dead}.partial": False,
        tmp_path / "i" / f"submission.tar.gz.{dead}.partial": False,
        tmp_path / "attempt-1" / "i" / f"i.eval.json.{dead}.partial": False,
        tmp_path / "i" / f"agent.json.{live}.partial": True,
        tmp_path / "i" / "notes.partial": True,  # not one of ours
        tmp_path / "a" / "b" / "c" / f"deep.{dead}.partial": True,  # deeper than a run directory goes
    }
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    assert sweep_partials(tmp_path) == 3
    assert {p: p.exists() for p in paths} == paths
