"""Agent sessions on the self-test task: each way to plug an agent in, timeouts, crashes, leftovers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from typing import Any

import pytest
from support import only_row, running

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_OWNER, LABEL_RUN, Engine
from pytest_programbench.model import PROMPT

CPUS = str(min(2, os.cpu_count() or 1))

# Agents a test's conftest.py can use; the partial source breaks every test that subtracts (15/18).
AGENTS = textwrap.dedent(
    """
    import time
    from pytest_programbench import selftest

    SOURCE = selftest.reference_source()
    PARTIAL = SOURCE.replace("__builtin_sub_overflow(a, b, &r)", "__builtin_sub_overflow(b, a, &r)")
    COMPILE = "#!/bin/sh\\nset -e\\ngcc -O2 -o executable rpncalc.c\\n"

    def solver(instance, sandbox):
        sandbox.write_file("rpncalc.c", SOURCE)
        sandbox.write_file("compile.sh", COMPILE, mode=0o755)
        assert sandbox.exec("./compile.sh").returncode == 0
        sandbox.progress("solver built it")  # from the agent's own process, through the harness
        return {"steps": 2, "cost": 0.25, "trajectory": {"prompt": instance.prompt[:40]}}

    def hanger(instance, sandbox):
        sandbox.write_file("rpncalc.c", PARTIAL)
        sandbox.write_file("compile.sh", COMPILE, mode=0o755)
        sandbox.report(steps=1)
        sandbox.exec("sleep 600")

    def crasher(instance, sandbox):
        sandbox.write_file("notes.txt", "half done")
        sandbox.exec("sleep 600 &")
        raise RuntimeError("model API said no")

    def shouter(instance, sandbox):
        return {"exit_status": "from-hook"}
    """
)


def session(
    pytester: pytest.Pytester, conftest: str = "", *args: str
) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makepyfile(agents_for_tests=AGENTS)
    pytester.makeconftest(conftest)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "--pb-selftest",
        f"--pb-cpus={CPUS}",
        f"--pb-output={pytester.path / 'out'}",
        f"--pb-report={report}",
        "-p",
        "no:cacheprovider",
        *args,
    )
    return result, json.loads(report.read_text()) if report.exists() else {}


def assert_no_leftovers(engine: Engine, report: dict[str, Any]) -> None:
    assert engine.labelled({LABEL_RUN: report["run_id"]}) == []


def test_selftest_runs_the_scripted_agent(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    result, report = session(pytester)
    assert result.parseoutcomes() == {"resolved": 1}
    row = only_row(report)
    assert (row["score"], row["agent"], row["agent_steps"], row["agent_timed_out"]) == (
        1.0,
        "scripted_agent",
        3,
        False,
    )
    assert (pytester.path / "out" / selftest.INSTANCE_ID / "submission.tar.gz").is_file()
    assert_no_leftovers(engine, report)


def test_python_agent_from_module_attr(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    result, report = session(pytester, "", "--pb-agent=agents_for_tests:solver", "-n", "2")
    assert result.parseoutcomes() == {"resolved": 1}
    row = only_row(report)
    assert (row["score"], row["n_resolved"], row["agent_steps"], row["agent_cost"]) == (1.0, 18, 2, 0.25)
    traj = pytester.path / "out" / selftest.INSTANCE_ID / f"{selftest.INSTANCE_ID}.traj.json"
    assert json.loads(traj.read_text()) == {"prompt": PROMPT[:40]}
    log = (pytester.path / "out" / "progress.log").read_text()
    assert re.search(rf"{re.escape(selftest.INSTANCE_ID)} \+\d+s solver built it$", log, re.MULTILINE), log
    assert_no_leftovers(engine, report)


def test_fixture_beats_hook_beats_option(pytester: pytest.Pytester, selftest_image: str) -> None:
    hook = (
        "import agents_for_tests\n"
        "def pytest_programbench_agent(config, instance):\n"
        "    return agents_for_tests.shouter\n"
    )
    _, report = session(pytester, hook, "--pb-agent=none")
    assert only_row(report)["agent_exit_status"] == "from-hook"
    fixture = hook + ("import pytest\n@pytest.fixture\ndef pb_agent():\n    return agents_for_tests.solver\n")
    result, report = session(pytester, fixture, "--pb-agent=none", "--pb-force-agent")
    assert result.parseoutcomes() == {"resolved": 1}
    assert only_row(report)["agent"] == "solver"


def test_none_is_the_zero_baseline(pytester: pytest.Pytester, engine: Engine, selftest_image: str) -> None:
    result, report = session(pytester, "", "--pb-agent=none")
    assert result.parseoutcomes() == {"zero": 1}
    row = only_row(report)
    assert (row["score"], row["error_code"], row["agent"]) == (0.0, "compile_failed", "none")
    result.stdout.fnmatch_lines(["*score 0.00 (0/18 hidden tests) < 1.00: compile_failed*"])
    assert_no_leftovers(engine, report)


def test_hanging_agent_is_stopped_and_its_workspace_scored(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    # Long enough for its two writes on a loaded machine before it hangs; the item must end at the
    # limit, never before it.
    limit = 15
    result, report = session(
        pytester, "", "--pb-agent=agents_for_tests:hanger", f"--pb-agent-timeout={limit}"
    )
    assert result.parseoutcomes() == {"partial": 1}
    row = only_row(report)
    assert (row["n_resolved"], row["n_tests"], row["agent_timed_out"], row["agent_steps"]) == (
        15,
        18,
        True,
        1,
    )
    assert row["agent_seconds"] >= limit
    result.stdout.fnmatch_lines(["*15/18 hidden tests) < 1.00; the agent timed out after *s*"])
    assert_no_leftovers(engine, report)


def test_crashing_agent_is_an_error_and_keeps_its_workspace(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    result, report = session(pytester, "", "--pb-agent=agents_for_tests:crasher")
    assert result.parseoutcomes() == {"errors": 1}
    row = only_row(report)
    assert row["error_code"] == "agent_crashed" and "model API said no" in row["message"]
    archive = pytester.path / "out" / selftest.INSTANCE_ID / "submission.tar.gz"
    listing = subprocess.run(["tar", "-tzf", str(archive)], capture_output=True, text=True, check=True)
    assert "./notes.txt" in listing.stdout.split()
    assert_no_leftovers(engine, report)


def test_command_agent_is_killed_at_the_timeout(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    pidfile = pytester.path / "agent.pid"
    script = pytester.path / "agent.sh"
    script.write_text(
        f'echo $$ > {pidfile}\necho "container=$PB_CONTAINER_ID instance=$PB_INSTANCE_ID"\n'
        'test -s "$PB_PROMPT_FILE" && echo prompt-ok\nsleep 600 &\nwait\n'
    )
    result, report = session(
        pytester, "", "--pb-agent=command", f"--pb-agent-cmd=sh {script}", "--pb-agent-timeout=3"
    )
    assert result.parseoutcomes() == {"zero": 1}
    row = only_row(report)
    assert row["agent_timed_out"] is True
    log = (pytester.path / "out" / selftest.INSTANCE_ID / "agent.log").read_text()
    assert f"instance={selftest.INSTANCE_ID}" in log and "prompt-ok" in log and "container=" in log
    assert not running(int(pidfile.read_text()))
    assert_no_leftovers(engine, report)


def test_agent_options_are_checked_up_front(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--pb-agent=none")
    result.stderr.fnmatch_lines(["*--pb-agent needs instances to run*"])
    result = pytester.runpytest_subprocess("--pb-selftest", "--pb-agent=command")
    result.stderr.fnmatch_lines(["*the command agent needs --pb-agent-cmd CMD*"])
    result = pytester.runpytest_subprocess("--pb-selftest", "--pb-agent-timeout=soon")
    result.stderr.fnmatch_lines(["*--pb-agent-timeout='soon' is not valid; expected a duration*"])
    result = pytester.runpytest_subprocess("--pb-selftest", "--pb-agent=no such agent")
    result.stderr.fnmatch_lines(["*expected one of none, command, mini-swe-agent, or module:attr*"])


def test_unimportable_agent_is_a_usage_error_before_any_container(
    pytester: pytest.Pytester, selftest_image: str
) -> None:
    result = pytester.runpytest_subprocess("--pb-selftest", "--pb-agent=nowhere_to_be_found:agent")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # the preflight, once for the session
    (line,) = [x for x in result.errlines if x.startswith("ERROR:")]
    assert "agent 'nowhere_to_be_found:agent' cannot be loaded: importing nowhere" in line
    assert not any(x.startswith("collected") for x in result.outlines)


def test_cleanup_removes_only_what_provably_dead_sessions_left(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    run = f"test-cleanup-{os.getpid()}"
    host = os.uname().nodename
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid of this host that no longer runs
    owners = {
        "dead": f"{host}:{gone.pid}",
        "alive": f"{host}:1",
        "elsewhere": "another-host-entirely:1",  # cannot be checked from here: left alone
        "unknown": "",
    }
    made = {
        name: engine.client.containers.create(
            selftest_image, ["sleep", "600"], labels={LABEL_RUN: run, **({LABEL_OWNER: o} if o else {})}
        )
        for name, o in owners.items()
    }
    try:
        result = pytester.runpytest_subprocess("--pb-cleanup")
        assert result.ret == 0
        result.stdout.fnmatch_lines(
            [
                "programbench: removed * leftover container(s) and image(s) from *",
                "programbench: left what may still be in use: *",
            ]
        )
        kept = {c.id for c in engine.labelled({LABEL_RUN: run})}
        assert kept == {made[n].id for n in ("alive", "elsewhere", "unknown")}
        assert "session another-host-entirely:1 on another host" in result.stdout.str()
    finally:
        for container in made.values():
            engine.remove(container)
