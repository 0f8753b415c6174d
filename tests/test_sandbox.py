"""The agent's sandbox on a real engine: confinement, commands with timeouts, files, packing."""

from __future__ import annotations

import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_programbench.containers import LABEL_INSTANCE, LABEL_ROLE, LABEL_RUN, LABEL_WORKER, Engine
from pytest_programbench.sandbox import AgentTimedOut, Limits, Sandbox, open_sandbox

CAP_SYS_PTRACE = 19


@pytest.fixture
def run_id() -> str:
    return f"test-sandbox-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sandbox(engine: Engine, selftest_image: str, run_id: str) -> Iterator[Sandbox]:
    with open_sandbox(
        engine,
        selftest_image,
        run_id=run_id,
        worker="gw-test",
        instance_id="pbselftest__rpncalc.5e1f7a0",
        limits=Limits(cpus=1, memory="512m"),
    ) as box:
        yield box
    assert engine.labelled({LABEL_RUN: run_id}) == [], "the sandbox outlived its context"


def live_processes(engine: Engine, run_id: str) -> list[str]:
    """Processes in the container other than PID 1 and the `ps` asking, zombies excluded."""
    [container] = engine.labelled({LABEL_RUN: run_id})
    out = engine.exec(container, "ps -eo pid=,stat=,args=", user="0", interpreter=("sh", "-c")).output
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    return [
        " ".join(row)
        for row in rows
        if row[0] != "1" and not row[1].startswith("Z") and not row[2].startswith(("ps ", "sh -c ps"))
    ]


def test_confinement(engine: Engine, sandbox: Sandbox, run_id: str) -> None:
    assert sandbox.user == "agent" and sandbox.uid == 1000
    result = sandbox.exec("id -un; pwd; ls /sys/class/net; grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status")
    lines = result.output.split()
    assert lines[:3] == ["agent", "/workspace", "lo"], result.output  # no interface but loopback
    status = dict(zip(lines[3::2], lines[4::2], strict=True))
    assert status["NoNewPrivs:"] == "1"
    assert not int(status["CapBnd:"], 16) & (1 << CAP_SYS_PTRACE)
    [container] = engine.labelled({LABEL_RUN: run_id})
    assert container.labels[LABEL_WORKER] == "gw-test"
    assert container.labels[LABEL_INSTANCE] == "pbselftest__rpncalc.5e1f7a0"
    assert container.labels[LABEL_ROLE] == "agent"
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 10**9 and host["Memory"] == 512 * 2**20 and host["PidsLimit"] == 4096


def test_exec_merges_output_and_returns_the_exit_code(sandbox: Sandbox) -> None:
    result = sandbox.exec("echo out; echo err >&2; exit 3")
    # Two pipes: docker may deliver the stderr frame first.
    assert (result.returncode, sorted(result.output.splitlines()), result.timed_out) == (
        3,
        ["err", "out"],
        False,
    )


def test_timeout_kills_the_whole_process_tree(engine: Engine, sandbox: Sandbox, run_id: str) -> None:
    # A child, a child in its own session and a double-forked daemon: all must die.
    command = "sleep 301 & setsid sleep 302 & (nohup sleep 303 >/dev/null 2>&1 &); echo started; sleep 304"
    result = sandbox.exec(command, timeout=2)
    assert result.timed_out and result.output == "started\n"
    assert live_processes(engine, run_id) == []
    assert sandbox.exec("echo still usable").output == "still usable\n"


def test_files_stay_in_the_container(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.write_file("src/../notes.txt", "hello\n")
    sandbox.write_file("/tmp/run.sh", b"#!/bin/sh\necho ran\n", mode=0o755)
    assert sandbox.read_file("notes.txt") == b"hello\n"
    assert sandbox.exec("stat -c '%U %a' notes.txt /tmp/run.sh && /tmp/run.sh").output == (
        "agent 644\nagent 755\nran\n"
    )
    with pytest.raises(Exception, match=r"notes\.txt"):
        sandbox.read_file("/etc/../workspace/missing/notes.txt")


def test_pack_workspace_is_what_programbench_eval_reads(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.exec("mkdir -p src && echo 'int main(){return 0;}' > src/main.c && chmod 600 src/main.c")
    archive = sandbox.pack_workspace(tmp_path / "out" / "submission.tar.gz")
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: m for m in tar}
    # `tar -czf - -C /workspace .`: the root as ".", everything else under "./".
    assert {".", "./executable", "./README.md", "./src", "./src/main.c"} <= set(members)
    assert members["./src/main.c"].uid == 1000 and members["./src/main.c"].mode == 0o600
    assert not list((tmp_path / "out").glob("*.partial"))


def test_expired_sandbox_refuses_and_stops_everything(
    engine: Engine, sandbox: Sandbox, run_id: str, tmp_path: Path
) -> None:
    sandbox.exec("(setsid sleep 600 &) ; nohup sleep 601 >/dev/null 2>&1 &")
    stopped: list[bool] = []
    sandbox.on_expire(lambda: stopped.append(True))
    sandbox.expire()
    assert stopped == [True]
    with pytest.raises(AgentTimedOut):
        sandbox.exec("true")
    with pytest.raises(AgentTimedOut):
        sandbox.write_file("late.txt", "too late")
    # The harness itself can still pack what is there.
    assert live_processes(engine, run_id) == []
    assert sandbox.pack_workspace(tmp_path / "submission.tar.gz").stat().st_size > 0


def test_keep_leaves_the_container_for_debugging(engine: Engine, selftest_image: str, run_id: str) -> None:
    with open_sandbox(
        engine, selftest_image, run_id=run_id, worker="main", instance_id="x", limits=Limits(), keep=True
    ):
        pass
    try:
        assert len(engine.labelled({LABEL_RUN: run_id})) == 1
    finally:
        assert engine.sweep({LABEL_RUN: run_id}) == 1
