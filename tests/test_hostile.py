"""Hostile or sloppy agents, task files and disks, replayed as whole sessions on the real engine.

Each case is one that used to knock the harness over (issue 10). Every test asserts the
session ends with its ProgramBench summary, nothing of the run stays on the engine, the
finished work survives, and the problem has its named error.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tarfile
import textwrap
from typing import Any

import pytest
from support import only_row, running

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_RUN, Engine

CPUS = str(min(2, os.cpu_count() or 1))

AGENTS = textwrap.dedent(
    """
    import os
    from pathlib import Path
    from pytest_programbench import selftest

    SOURCE = selftest.reference_source()
    COMPILE = "#!/bin/sh\\nset -e\\ngcc -O2 -o executable rpncalc.c\\n"
    PIDFILE = Path(__file__).with_name("agent.pid")

    def solve(sandbox):
        sandbox.write_file("rpncalc.c", SOURCE)
        sandbox.write_file("compile.sh", COMPILE, mode=0o755)
        assert sandbox.exec("./compile.sh").returncode == 0

    def liar(instance, sandbox):
        solve(sandbox)
        sandbox.report(steps="many", cost=10**400)
        return {"cost": "free", "steps": -1, 1: "one", "trajectory": {("tuple", "key"): object()}}

    def vandal(instance, sandbox):
        solve(sandbox)
        # The traps the in-container packer fell into, zombies by the dozen, then a fork bomb
        # that shed the exec marker: only the container's end stops it.
        sandbox.exec("mkfifo /tmp/.pb-submission.tar.gz pipe; ln -s /etc/shadow shadow-link")
        for _ in range(20):
            sandbox.exec("sleep 100; true", timeout=0.2)
        sandbox.exec("(env -u PB_EXEC_MARKER bash -c 'b() { b | b & }; b' >/dev/null 2>&1 &)")
        return {"steps": 3}

    def spinner(instance, sandbox):
        PIDFILE.write_text(str(os.getpid()))
        solve(sandbox)
        while True:
            pass

    def shouter(instance, sandbox):
        solve(sandbox)
        result = sandbox.exec("head -c 2000000000 /dev/zero")
        return {"exit_status": f"cut {result.cut_bytes}"}

    def hoarder(instance, sandbox):
        solve(sandbox)
        sandbox.exec("fallocate -l 1G /tmp/big || head -c 1073741824 /dev/zero > /tmp/big")
        sandbox.exec("sleep 600")

    def packrat(instance, sandbox):
        solve(sandbox)
        sandbox.exec("head -c 30000000 /dev/urandom > data.bin")
    """
)

#: An agent timeout for agents that must finish some work before they hang: long enough for a few
#: sandbox calls on a heavily loaded machine (3 s was not, at load average 45).
WORK_THEN_LIMIT = 15

# Tells, at the end of the session (before the interpreter goes), whether the agent process still runs.
WATCH_AGENT = textwrap.dedent(
    """
    from pathlib import Path

    def pytest_sessionfinish(session):
        here = Path(__file__).parent
        pid = int((here / "agent.pid").read_text())
        alive = Path(f"/proc/{pid}").exists() and pid != __import__("os").getpid()
        same = pid == __import__("os").getpid()
        (here / "agent.state").write_text("same-process" if same else "alive" if alive else "gone")
    """
)


def session(
    pytester: pytest.Pytester, *args: str, conftest: str = "", selftest_task: bool = True
) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makepyfile(agents_hostile=AGENTS)
    pytester.makeconftest(conftest)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        *(["--pb-selftest"] if selftest_task else []),
        f"--pb-cpus={CPUS}",
        "--pb-memory=1g",
        f"--pb-output={pytester.path / 'out'}",
        f"--pb-report={report}",
        "-p",
        "no:cacheprovider",
        *args,
    )
    return result, json.loads(report.read_text()) if report.exists() else {}


def assert_summary_and_no_leftovers(result: pytest.RunResult, engine: Engine, report: dict[str, Any]) -> None:
    result.stdout.fnmatch_lines(["*= ProgramBench =*", "mean score * over 1 item(s)*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert engine.labelled({LABEL_RUN: report["run_id"]}) == []


def test_lying_agent_cannot_break_the_summary_or_a_resume(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    result, report = session(pytester, "--pb-agent=agents_hostile:liar")
    assert result.ret == 0 and result.parseoutcomes()["resolved"] == 1
    row = only_row(report)
    assert (row["score"], row["agent_steps"], row["agent_cost"]) == (1.0, None, None)
    for line in (  # the warnings summary groups them in its own order
        "*agent report: steps='many' is not a whole number >= 0; dropped*",
        "*agent report: cost=1000000000*is not a finite number of dollars >= 0; dropped*",
        "*agent report: cost='free'*",
        "*dropped 1 returned key(s) that are not strings*",
        "*agent report: trajectory is not JSON-serialisable*",
    ):
        result.stdout.fnmatch_lines([line])
    traj = pytester.path / "out" / selftest.INSTANCE_ID / f"{selftest.INSTANCE_ID}.traj.json"
    assert "('tuple', 'key')" in json.loads(traj.read_text())
    assert_summary_and_no_leftovers(result, engine, report)
    # The resume reads back what the first session saved: it must not crash either.
    again, report = session(pytester, "--pb-agent=agents_hostile:liar")
    assert again.parseoutcomes()["resolved"] == 1 and only_row(report)["reused"] is True
    assert_summary_and_no_leftovers(again, engine, report)


def test_vandalised_sandbox_still_packs_the_finished_work(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    result, report = session(pytester, "--pb-agent=agents_hostile:vandal")
    assert result.parseoutcomes()["resolved"] == 1
    result.stdout.fnmatch_lines(["*1 fifo(s)/device(s) in /workspace cannot be submitted*./pipe*"])
    archive = pytester.path / "out" / selftest.INSTANCE_ID / "submission.tar.gz"
    with tarfile.open(archive, "r:gz") as tar:
        link = tar.getmember("./shadow-link")
    assert link.issym() and link.linkname == "/etc/shadow"
    assert_summary_and_no_leftovers(result, engine, report)


def test_busy_python_agent_is_killed_at_its_timeout(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    result, report = session(
        # The limit leaves the agent time to solve on a loaded machine before it spins; what is
        # checked is that it dies then, not how soon.
        pytester,
        "--pb-agent=agents_hostile:spinner",
        f"--pb-agent-timeout={WORK_THEN_LIMIT}",
        conftest=WATCH_AGENT,
    )
    assert result.parseoutcomes()["resolved"] == 1
    assert only_row(report)["agent_timed_out"] is True
    # Dead before the session ended: not a thread spinning in the session's own process.
    assert (pytester.path / "agent.state").read_text() == "gone"
    assert_summary_and_no_leftovers(result, engine, report)


def test_command_agent_leaves_no_process_behind(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    child = pytester.path / "child.pid"
    script = pytester.path / "agent.sh"
    script.write_text(
        "trap '' TERM INT HUP\n"
        f"setsid sh -c 'echo $$ > {child}; trap \"\" TERM HUP; exec sleep 600' &\n"
        "sleep 600\n"
    )
    result, report = session(
        pytester, "--pb-agent=command", f"--pb-agent-cmd=sh {script}", "--pb-agent-timeout=3"
    )
    assert only_row(report)["agent_timed_out"] is True
    assert not running(int(child.read_text()))
    assert_summary_and_no_leftovers(result, engine, report)


def test_a_report_that_cannot_be_written_is_a_warning(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    blocker = pytester.path / "not-a-dir"
    blocker.write_text("")  # a report under it fails like one on a full disk: OSError on write
    pytester.makeconftest(
        "from pathlib import Path\n"
        "from pytest_programbench.keys import RUN_ID_KEY\n"
        "def pytest_sessionstart(session):\n"
        "    Path('run_id').write_text(session.config.stash[RUN_ID_KEY])\n"
    )
    result = pytester.runpytest_subprocess(
        "--pb-selftest",
        f"--pb-cpus={CPUS}",
        f"--pb-output={pytester.path / 'out'}",
        f"--pb-report={blocker / 'report.json'}",
        "-p",
        "no:cacheprovider",
    )
    assert result.parseoutcomes()["resolved"] == 1
    result.stdout.fnmatch_lines(
        ["*= ProgramBench =*", f"warning: --pb-report {blocker / 'report.json'} could not be written: *"]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert engine.labelled({LABEL_RUN: (pytester.path / "run_id").read_text()}) == []


def test_output_flood_keeps_the_session_small(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    # The whole session runs under a small wrapper whose children's peak RSS is the measure:
    # the session, its xdist-less pytest and the forked agent process all count.
    pytester.makepyfile(agents_hostile=AGENTS)
    report = pytester.path / "report.json"
    wrapper = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=False)\n"
        "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    result = pytester.run(
        sys.executable,
        "-c",
        wrapper,
        sys.executable,
        "-m",
        "pytest",
        "--pb-selftest",
        "--pb-agent=agents_hostile:shouter",
        f"--pb-cpus={CPUS}",
        f"--pb-output={pytester.path / 'out'}",
        f"--pb-report={report}",
        "-p",
        "no:cacheprovider",
        timeout=900,
    )
    [line] = [line for line in result.outlines if line.startswith("MAXRSS_KB")]
    peak_mb = int(line.split()[1]) / 1024
    print(f"peak RSS of the session's processes: {peak_mb:.0f} MB for 2 GB of output")
    assert peak_mb < 400
    row = only_row(json.loads(report.read_text()))
    assert row["outcome"] == "resolved" and row["agent_exit_status"] == f"cut {2_000_000_000 - 2 * 2**20}"
    assert engine.labelled({LABEL_RUN: json.loads(report.read_text())["run_id"]}) == []


def test_disk_hog_is_stopped_at_the_disk_limit(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    result, report = session(pytester, "--pb-agent=agents_hostile:hoarder", "--pb-disk=300m")
    assert result.parseoutcomes()["errors"] == 1
    row = only_row(report)
    assert row["error_code"] == "disk_limit_exceeded"
    assert "over the --pb-disk limit of 300.0 MiB" in row["message"]
    # What it had finished was packed before the item became an error.
    archive = pytester.path / "out" / selftest.INSTANCE_ID / "submission.tar.gz"
    with tarfile.open(archive, "r:gz") as tar:
        assert "./rpncalc.c" in tar.getnames()
    assert_summary_and_no_leftovers(result, engine, report)


def test_oversized_workspace_is_kept_not_lost(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    result, report = session(pytester, "--pb-agent=agents_hostile:packrat", "--pb-max-submission=10m")
    row = only_row(report)
    try:
        assert row["error_code"] == "submission_too_large"
        assert "--pb-max-submission" in result.stdout.str()
        [kept] = engine.labelled({LABEL_RUN: report["run_id"]})
        assert kept.name.startswith("pb-kept-") and f"docker cp {kept.name}:/workspace" in row["message"]
        assert len(engine.read_file(kept, "/workspace/data.bin")) == 30_000_000
        assert not (pytester.path / "out" / selftest.INSTANCE_ID / "submission.tar.gz").exists()
    finally:
        engine.sweep({LABEL_RUN: report["run_id"]})
        for container in engine.labelled({LABEL_RUN: report["run_id"]}):
            engine.remove(container)
    result.stdout.fnmatch_lines(["*= ProgramBench =*"])


def test_gzip_bomb_is_refused_before_it_unpacks(pytester: pytest.Pytester, selftest_image: str) -> None:
    runs = pytester.path / "runs"
    archive = runs / selftest.INSTANCE_ID / "submission.tar.gz"
    archive.parent.mkdir(parents=True)
    with gzip.open(archive, "wb", compresslevel=1) as zipped, tarfile.open(fileobj=zipped, mode="w|") as tar:
        info = tarfile.TarInfo("./zeros")
        info.size = 200 * 2**20
        tar.addfile(info, _Zeros(info.size))
    assert archive.stat().st_size < 2**20
    result, report = session(pytester, f"--pb-submissions={runs}", "--pb-max-submission=10m")
    row = only_row(report)
    assert row["error_code"] == "submission_too_large"
    assert "unpacked exceeds the submission limit of 80.0 MiB" in row["message"]
    result.stdout.fnmatch_lines(["*= ProgramBench =*"])


class _Zeros:
    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


@pytest.mark.parametrize(
    ("tests_json", "problem"),
    [
        ('{"branches": {"a": {"tests": [', "it is not valid JSON"),
        ('["eval.tests.test_add"]', "expected a JSON object with 'branches', found a list"),
        ('{"branches": {"a": {"ignored": false}}}', "branch 'a' has no 'tests' list"),
        ('{"branches": {"a": {"tests": [1, 2]}}}', "branch 'a': 'tests' must be a list of test names"),
    ],
)
def test_bad_tests_json_is_an_error_naming_the_file(
    pytester: pytest.Pytester, tests_json: str, problem: str
) -> None:
    tasks = pytester.path / "tasks"
    task = tasks / selftest.INSTANCE_ID
    task.mkdir(parents=True)
    (task / "task.yaml").write_text((selftest.tasks_dir() / selftest.INSTANCE_ID / "task.yaml").read_text())
    (task / "tests.json").write_text(tests_json)
    # No container needed: the submission is a stand-in, and the task is read before any image.
    pytester.makeconftest(
        "import pytest\n"
        "@pytest.fixture\n"
        "def pb_submission(pb_instance_dir):\n"
        "    return pb_instance_dir / 'submission.tar.gz'\n"
    )
    result = pytester.runpytest_subprocess(
        f"--pb-tasks-dir={tasks}", "--pb-output=out", "-p", "no:cacheprovider"
    )
    assert result.parseoutcomes()["errors"] == 1
    result.stdout.fnmatch_lines(
        ["*task_invalid*", f"*task file {task / 'tests.json'} is invalid: {problem}*"]
    )


def test_bad_task_yaml_is_a_usage_error_naming_the_file(pytester: pytest.Pytester) -> None:
    task = pytester.path / "tasks" / selftest.INSTANCE_ID
    task.mkdir(parents=True)
    (task / "task.yaml").write_text("language:\n  name: c\ndifficulty: easy\n")
    result = pytester.runpytest_subprocess(f"--pb-tasks-dir={task.parent}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*{task / 'task.yaml'} is not a valid task.yaml: language must be a string, found dict*"]
    )
