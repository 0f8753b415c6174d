"""agents.agent.kill_marked: host processes carrying an agent's marker die, wherever they went."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pytest_programbench.agents import agent


def _marked(marker: str) -> subprocess.Popen[bytes]:
    # start_new_session: like an agent's daemon that left the agent's process group.
    env = {**os.environ, agent.AGENT_MARKER: marker}
    command = [sys.executable, "-c", "import time; time.sleep(600)"]
    return subprocess.Popen(command, env=env, start_new_session=True)


def test_a_marked_process_in_our_cgroup_is_killed_and_an_unmarked_one_is_not() -> None:
    marked, other = _marked("m-1"), _marked("m-other")
    try:
        assert agent.kill_marked("m-1") == 1
        assert marked.wait(timeout=30) == -9
        assert other.poll() is None
    finally:
        for proc in (marked, other):
            proc.kill()
            proc.wait()


def test_processes_of_another_cgroup_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # A container's processes live in the engine's cgroups: their environ is never opened, so a
    # container thrashing at its memory limit cannot hold the harness up.
    marked = _marked("m-2")
    real = agent._cgroup

    def cgroup(pid: str) -> bytes | None:
        return b"0::/system.slice/docker-x.scope\n" if pid == str(marked.pid) else real(pid)

    monkeypatch.setattr(agent, "_cgroup", cgroup)
    try:
        assert agent.kill_marked("m-2") == 0  # the count of processes it sent SIGKILL
    finally:
        marked.kill()
        marked.wait()
