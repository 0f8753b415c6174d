"""The agent's sandbox on a real engine: confinement, commands with timeouts, files, packing."""

from __future__ import annotations

import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_programbench.agents.sandbox import AgentTimedOut, Limits, Sandbox, open_sandbox
from pytest_programbench.engine.containers import LABEL_INSTANCE, LABEL_ROLE, LABEL_RUN, LABEL_WORKER, Engine

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


def processes(engine: Engine, run_id: str) -> list[list[str]]:
    """[pid, stat, args] of every process in the container but its init, its keeper and the `ps` asking."""
    [container] = engine.labelled({LABEL_RUN: run_id})
    out = engine.exec(container, "ps -eo pid=,stat=,args=", user="0", interpreter=("sh", "-c")).output
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    return [
        row
        for row in rows
        if row[0] != "1" and row[2] != "sleep infinity" and not row[2].startswith(("ps ", "sh -c ps"))
    ]


def live_processes(engine: Engine, run_id: str) -> list[str]:
    """Processes other than init, keeper and `ps`, zombies excluded."""
    return [" ".join(row) for row in processes(engine, run_id) if not row[1].startswith("Z")]


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
    with pytest.raises(FileNotFoundError, match=r"notes\.txt"):
        sandbox.read_file("/etc/../workspace/missing/notes.txt")


# Made as root before the agent starts: what the image (or the harness) protects from the agent.
PROTECTED = """
set -e
printf 'root only\n' > /workspace/secret && chmod 600 /workspace/secret
printf 'no one\n' > /workspace/zero-root && chmod 000 /workspace/zero-root
printf 'own but 000\n' > /workspace/zero-own && chown agent /workspace/zero-own
chmod 000 /workspace/zero-own
mkdir -p /opt/locked && printf 'keep\n' > /opt/locked/file
cd /workspace && ln -s /etc/shadow shadow-link && ln -s /etc etc-dir && ln -s /root root-link
ln -s /opt/locked/file locked-link
sha256sum /etc/shadow /opt/locked/file
"""


def test_files_are_read_and_written_as_the_agent_whatever_the_path(
    engine: Engine, sandbox: Sandbox, run_id: str
) -> None:
    [container] = engine.labelled({LABEL_RUN: run_id})
    made = engine.exec(container, PROTECTED, user="0", interpreter=("sh", "-c"))
    assert made.returncode == 0, made.output
    unreadable = [
        "/etc/shadow",  # absolute
        "../etc/shadow",  # out of /workspace by ..
        "shadow-link",  # a symlink in the workspace to a root-only file
        "secret",  # root-owned, 600
        "zero-root",  # root-owned, 000
        "zero-own",  # the agent's own, 000: the agent's permissions, not the owner's
        "/root/.bashrc",  # in root's 700 home
        "root-link/.bashrc",  # the same through a symlinked directory
    ]
    for path in unreadable:
        with pytest.raises(PermissionError, match=r"Permission denied.*as user agent"):
            sandbox.read_file(path)
        # The same answer the agent's own commands get.
        assert sandbox.exec(f"cat -- {path}").returncode != 0, path
    assert sandbox.read_file("../etc/hostname") == sandbox.exec("cat /etc/hostname").output.encode()
    assert sandbox.read_file("/workspace/etc-dir/passwd").startswith(b"root:")

    unwritable = [
        "/etc/profile.d/pb.sh",
        "../etc/profile.d/pb.sh",
        "etc-dir/profile.d/pb.sh",  # through a symlinked directory
        "/root/pb",
        "root-link/pb",
        "/opt/locked/file",  # root's file in root's directory
        "/opt/locked/new",
    ]
    for path in unwritable:
        with pytest.raises(PermissionError, match=r"Permission denied.*as user agent"):
            sandbox.write_file(path, "#!/bin/sh\necho pwned\n", mode=0o755)
    # A symlink at the path is replaced by the agent's own file, never written through.
    sandbox.write_file("shadow-link", "mine\n")
    sandbox.write_file("locked-link", "mine\n")
    assert sandbox.exec("stat -c '%U %F' shadow-link locked-link").output == (
        "agent regular file\nagent regular file\n"
    )
    with pytest.raises(IsADirectoryError):
        sandbox.write_file("etc-dir/", "x")
    with pytest.raises(IsADirectoryError):
        sandbox.read_file("root-link")
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("root-link/../no-such-file")  # normalised as text: /workspace/no-such-file

    # Nothing outside the agent's reach changed, nothing was created where it may not write.
    after = engine.exec(
        container,
        "sha256sum /etc/shadow /opt/locked/file; ls /etc/profile.d /root /opt/locked",
        user="0",
        interpreter=("sh", "-c"),
    ).output
    assert after.startswith(made.output), after
    assert "pb.sh" not in after and "\npb\n" not in after and "new" not in after, after


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
    # Killed with its init: nothing in it runs, and the harness can still pack what is there.
    [container] = engine.labelled({LABEL_RUN: run_id})
    assert container.status == "exited"
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


def test_init_reaps_what_timed_out_commands_leave(engine: Engine, sandbox: Sandbox, run_id: str) -> None:
    # A compound command's shell is killed with its children; under `sleep infinity` as PID 1
    # nothing ever reaped them, and at the pids limit the sandbox could not fork at all.
    for _ in range(20):
        assert sandbox.exec("sleep 100; true", timeout=0.5).timed_out
    assert [row for row in processes(engine, run_id) if row[1].startswith("Z")] == []


def test_exec_output_is_bounded_head_and_tail(sandbox: Sandbox) -> None:
    result = sandbox.exec("echo first; head -c 50000000 /dev/zero | tr '\\0' x; echo; echo last")
    assert result.returncode == 0
    assert result.output.startswith("first\n") and result.output.endswith("x\nlast\n")
    assert len(result.output) < 3 * 2**20
    assert result.cut_bytes == 6 + 50_000_000 + 1 + 5 - 2 * 2**20
    assert f"[... {result.cut_bytes} bytes of output cut by pytest-programbench ...]" in result.output


@pytest.fixture
def tight_sandbox(engine: Engine, selftest_image: str, run_id: str) -> Iterator[Sandbox]:
    """A sandbox with a small pids limit: a fork bomb fills it in a moment without loading the host."""
    with open_sandbox(
        engine,
        selftest_image,
        run_id=run_id,
        worker="gw-test",
        instance_id="pbselftest__rpncalc.5e1f7a0",
        limits=Limits(cpus=1, memory="256m", pids=64),
    ) as box:
        yield box
    assert engine.labelled({LABEL_RUN: run_id}) == [], "the sandbox outlived its context"


def test_packing_survives_a_full_pids_table_fifos_devices_and_symlinks(
    engine: Engine, tight_sandbox: Sandbox, run_id: str, tmp_path: Path
) -> None:
    box = tight_sandbox
    [container] = engine.labelled({LABEL_RUN: run_id})
    assert container.attrs["HostConfig"]["PidsLimit"] == 64  # what the container was given
    box.exec("echo 'int main(){return 0;}' > main.c && ln -s /etc/passwd passwd-link && mkfifo pipe")
    box.exec("ln main.c main-hardlink.c && mkfifo /tmp/.pb-submission.tar.gz")  # the old packer's path
    assert engine.exec(container, "mknod /workspace/null c 1 3", user="0").returncode == 0
    # A fork bomb that keeps every pid it gets and shed the exec marker, so nothing but the
    # container's end stops it: it forks for ever, taking each pid that comes free, and once
    # the kernel has refused it for a while it says so in a file. A bomb whose processes die
    # and retry leaves the table full only now and then; this one keeps it full, so what
    # follows does not depend on how fast the machine is.
    bomb = (
        "import os, time\n"
        "refused = 0\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(3600); os._exit(0)\n"
        "        refused = 0\n"
        "    except OSError:\n"
        "        refused += 1\n"
        "        if refused == 40:\n"
        "            open('/tmp/pids-full', 'w').close()\n"
        "        time.sleep(0.01)\n"
    )
    box.write_file("/tmp/bomb.py", bomb.encode())
    box.exec("(env -u PB_EXEC_MARKER python3 /tmp/bomb.py >/dev/null 2>&1 &)")
    deadline = time.monotonic() + 300  # a guard against a hang, not a measure: the file comes in ms
    while True:
        try:
            engine.read_file(container, "/tmp/pids-full")  # the archive API: no process needed
            break
        except Exception:
            if time.monotonic() > deadline:
                pytest.fail("the bomb never wrote /tmp/pids-full")
            time.sleep(0.2)
    # An exec'd process usually still gets in (a process moved into a cgroup is not counted against
    # its limit), but nothing in the container can fork: whatever packing needed of a shell would
    # fail. Now and then runc's own exec set-up is what cannot fork in there (seen in CI: 126, "OCI
    # runtime exec failed: ... read init-p: connection reset by peer"): the same full table.
    forked = box.exec("python3 -c 'import os; os.fork()'", timeout=60)
    refused = "Resource temporarily unavailable" in forked.output or (
        forked.returncode == 126 and "OCI runtime exec failed" in forked.output
    )
    assert forked.returncode != 0 and refused, forked
    packed = box.pack(tmp_path / "submission.tar.gz")
    assert sorted(packed.skipped) == ["./null", "./pipe"]
    with tarfile.open(packed.path, "r:gz") as tar:
        members = {m.name: m for m in tar}
        assert tar.extractfile("./main.c").read() == b"int main(){return 0;}\n"  # type: ignore[union-attr]
    assert {".", "./executable", "./main.c", "./passwd-link"} <= set(members)
    assert "./pipe" not in members and "./null" not in members
    link = members["./passwd-link"]
    assert link.issym() and link.linkname == "/etc/passwd"  # kept as a link, never followed
    hard = members["./main-hardlink.c"]
    assert (hard.islnk() and hard.linkname == "./main.c") or (
        members["./main.c"].islnk() and members["./main.c"].linkname == "./main-hardlink.c"
    )
    assert members["./main.c"].uid == 1000 and members["."].uid == 1000


def test_packing_stops_at_the_size_limit_and_keeps_the_workspace(
    engine: Engine, selftest_image: str, run_id: str, tmp_path: Path
) -> None:
    from pytest_programbench.errors import SubmissionTooLarge

    with open_sandbox(
        engine, selftest_image, run_id=run_id, worker="main", instance_id="x", limits=Limits()
    ) as box:
        box.exec("head -c 3000000 /dev/urandom > data.bin")
        with pytest.raises(
            SubmissionTooLarge, match=r"1\.0 MiB.*docker cp pb-kept-.*Raise --pb-max-submission"
        ):
            box.pack(tmp_path / "submission.tar.gz", max_bytes=2**20)
    try:
        assert list(tmp_path.iterdir()) == []  # neither a partial nor a truncated archive
        [kept] = engine.labelled({LABEL_RUN: run_id})
        assert kept.name == box.kept_as and kept.name.startswith("pb-kept-")
        assert engine.sweep({LABEL_RUN: run_id}) == 0  # the session's sweep spares it
        assert len(engine.read_file(kept, "/workspace/data.bin")) == 3_000_000
    finally:
        for container in engine.labelled({LABEL_RUN: run_id}):
            engine.remove(container)


def test_packing_has_a_time_limit(engine: Engine, selftest_image: str, run_id: str, tmp_path: Path) -> None:
    from pytest_programbench.errors import PackTimedOut

    with (
        open_sandbox(
            engine, selftest_image, run_id=run_id, worker="main", instance_id="x", limits=Limits()
        ) as box,
        pytest.raises(PackTimedOut, match="longer than 0s"),
    ):
        box.pack(tmp_path / "submission.tar.gz", timeout=0)
    for container in engine.labelled({LABEL_RUN: run_id}):
        engine.remove(container)
    assert not (tmp_path / "submission.tar.gz").exists()


def test_removal_already_in_progress_or_done_is_no_error(engine: Engine, selftest_image: str) -> None:
    from docker.errors import APIError

    run = f"test-remove-{uuid.uuid4().hex[:8]}"
    container = engine.client.containers.create(selftest_image, ["true"], labels={LABEL_RUN: run})
    real_remove = container.remove

    def busy(**kwargs: object) -> None:  # what the engine answers a second remover
        real_remove(**kwargs)
        response = type("R", (), {"status_code": 409, "reason": "Conflict"})()
        raise APIError("removal of container is already in progress", response=response)  # type: ignore[arg-type]

    container.remove = busy  # type: ignore[method-assign]
    engine.remove(container)  # 409: someone else is removing it
    engine.remove(container)  # 404 now
    assert engine.labelled({LABEL_RUN: run}) == []
