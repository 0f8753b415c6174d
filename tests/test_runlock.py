"""One session per run directory: a second one is refused with the holder's name."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from support import wait_for

from pytest_programbench import selftest

HOLD = """
import os, time
from pathlib import Path
import pytest
from pytest_programbench.model import Outcome

@pytest.fixture
def pb_outcome(pb_instance):
    here = Path(__file__).parent
    (here / "started").write_text(str(os.getpid()))
    while not (here / "go").exists():
        time.sleep(0.05)
    return Outcome.from_score(pb_instance, score=1.0, n_resolved=1, n_tests=1)
"""


def test_a_second_session_on_a_run_directory_is_refused_naming_the_holder(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(HOLD)
    options = [f"--pb-tasks-dir={selftest.tasks_dir()}", "--pb-output=out", "-p", "no:cacheprovider"]
    # The holder runs under xdist: its workers work while the controller holds the lock.
    holder = subprocess.Popen(
        [sys.executable, "-m", "pytest", *options, "-n", "2"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(pytester.path / "started")  # a worker is inside the item
        second = pytester.runpytest_subprocess(*options)
        assert second.ret == pytest.ExitCode.USAGE_ERROR
        assert pytester.runpytest_subprocess(*options, "--collect-only").ret == pytest.ExitCode.OK
        second.stderr.fnmatch_lines(
            [
                f"ERROR: programbench: the run directory {pytester.path / 'out'} is in use by another "
                f"session ({socket.gethostname()}:{holder.pid}). Wait for that session to end, stop it, "
                "or give this one another --pb-output"
            ]
        )
        (pytester.path / "go").touch()
        output = holder.communicate(timeout=120)[0].decode()
    finally:
        if holder.poll() is None:
            holder.kill()
    assert holder.returncode == pytest.ExitCode.OK, output
    assert "1 resolved" in output
    # Released at the end: the next session runs.
    (pytester.path / "started").unlink()
    assert pytester.runpytest_subprocess(*options).parseoutcomes() == {"resolved": 1}
