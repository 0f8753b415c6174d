"""Reports users read and CI keeps: the terminal section, JUnit, the JSON report, resume and --lf.

Sessions run on clones of the self-test task, one instance id per behaviour, so a
single session holds a resolved, a partial, a zero (failure) and an error.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml, Properties, Property
from support import CreationWatch, clone_selftest, wait_for

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_INSTANCE, LABEL_ROLE, LABEL_RUN, Engine

CPUS = "1"
NAMES = ["good", "half", "broken", "crash"]

# One agent per behaviour, chosen by instance id; "slow" blocks so a test can interrupt it.
CONFTEST = """
import os, time
from pathlib import Path
from pytest_programbench import selftest

SOURCE = selftest.reference_source()
PARTIAL = SOURCE.replace("__builtin_sub_overflow(a, b, &r)", "__builtin_sub_overflow(b, a, &r)")
COMPILE = "#!/bin/sh\\nset -e\\ngcc -O2 -o executable rpncalc.c\\n"
CALLS = Path(__file__).parent / "agent-calls.log"

def behaviour(instance, sandbox):
    with CALLS.open("a") as f:
        f.write(instance.instance_id + "\\n")
    kind = instance.instance_id.split("__")[1].split(".")[0].split("-")[-1]  # "resumed-good" too
    if kind == "crash":
        raise RuntimeError("the model went away")
    if kind == "slow":
        # A Python agent runs in a process forked from the worker: its parent is the worker.
        (Path(__file__).parent / "slow.pid").write_text(str(os.getppid()))
        sandbox.exec("sleep 600")
    if kind in ("good", "half", "slow"):
        sandbox.write_file("rpncalc.c", SOURCE if kind != "half" else PARTIAL)
        sandbox.write_file("compile.sh", COMPILE, mode=0o755)
    sandbox.report(steps=len(kind), cost=0.5)

def pytest_programbench_agent(config, instance):
    return behaviour
"""


@pytest.fixture(scope="module")
def clones(engine: Engine, selftest_image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("reports")
    tasks, blobs, ids = clone_selftest(engine, root, [*NAMES, "slow"])
    return {"tasks": tasks, "blobs": blobs, "ids": dict(zip([*NAMES, "slow"], ids, strict=True))}


def stack_heads(output: str, lines: int = 15) -> str:
    """The first ``lines`` frames of each thread in a faulthandler dump (most recent call first)."""
    dump = output[output.find("Fatal Python error") :] if "Fatal Python error" in output else output[-6000:]
    return "\n\n".join("\n".join(block.splitlines()[: lines + 1]) for block in dump.split("\n\n"))


def wait_until_running(engine: Engine, instance_id: str, command: str, proc: subprocess.Popen[bytes]) -> None:
    """Until the agent container of ``instance_id`` runs ``command`` (what ``docker top`` lists)."""
    for _ in range(1800):
        if proc.poll() is not None:
            said = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"the session ended before {instance_id} ran {command!r}: {said}")
        boxes = engine.labelled({LABEL_INSTANCE: instance_id, LABEL_ROLE: "agent"})
        if any(command in line for box in boxes for line in engine.processes(box.id)):
            return
        time.sleep(0.1)
    raise AssertionError(f"the agent container of {instance_id} never ran {command!r}")


def instance_filter(*names: str) -> str:
    return "--pb-instance=pbselftest__(" + "|".join(names) + r")\."


def session_options(clones: dict[str, Any], out: Path) -> list[str]:
    """The clones as the task set, results (and a JSON report) in ``out``."""
    return [
        f"--pb-tasks-dir={clones['tasks']}",
        f"--pb-blob-dir={clones['blobs']}",
        "--pb-pull=never",
        f"--pb-cpus={CPUS}",
        f"--pb-output={out}",
        f"--pb-report={out / 'report.json'}",
    ]


def agent_session(
    pytester: pytest.Pytester, clones: dict[str, Any], out: Path, *args: str
) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    return pytester.runpytest_subprocess(
        *session_options(clones, out), f"--junitxml={out / 'junit.xml'}", *args
    )


def rows_of(out: Path) -> dict[str, dict[str, Any]]:
    return {r["instance_id"]: r for r in json.loads((out / "report.json").read_text())["instances"]}


def properties(element: Any) -> dict[str, str]:
    """The <properties> of a junitparser suite or case, as a dict."""
    return {
        p.name: p.value for group in element.iterchildren(Properties) for p in group.iterchildren(Property)
    }


@pytest.mark.pytest_surface
@pytest.mark.parametrize("processes", [["-p", "no:xdist"], ["-n", "2"]], ids=["n0", "n2"])
def test_reports_of_an_agent_run(
    pytester: pytest.Pytester, clones: dict[str, Any], engine: Engine, processes: list[str]
) -> None:
    ids = clones["ids"]
    out = pytester.path / "out"
    result = agent_session(pytester, clones, out, instance_filter(*NAMES), *processes)
    assert result.parseoutcomes() == {"resolved": 1, "partial": 1, "zero": 1, "errors": 1}

    # Terminal: a row per instance, aggregates, the overall line, errors apart with their cause.
    result.stdout.fnmatch_lines(
        [
            "*= ProgramBench =*",
            "instance * lang * diff * score * passed * steps * cost * time * outcome",
            f"{ids['broken']} * c * easy * 0.00 * 0/18 * 6 * $0.50 * zero  (score 0.00 (0/18 hidden tests)"
            " < 1.00: compile_failed)",
            f"{ids['crash']} * c * easy * - * - * error  (agent_crashed)",
            f"{ids['good']} * c * easy * 1.00 * 18/18 * 4 * $0.50 * resolved",
            f"{ids['half']} * c * easy * 0.83 * 15/18 * 4 * $0.50 * partial  (score 0.83 (15/18 hidden*",
            "language c * 4 instance(s)  mean 0.458  resolved 1  almost 0  errors 1",
            "difficulty easy * 4 instance(s)  mean 0.458  resolved 1  almost 0  errors 1",
            "mean score 0.458 over 4 item(s); 1 resolved, 1 partial, 1 zero, 1 error",
            "errors count as score 0 in the mean (the official rule); their causes:",
            f"  {ids['crash']}: the agent raised on {ids['crash']}: RuntimeError: the model went away*",
        ]
    )

    # JSON report.
    rows = rows_of(out)
    assert {i: (r["score"], r["n_resolved"], r["n_tests"], r["outcome"]) for i, r in rows.items()} == {
        ids["good"]: (1.0, 18, 18, "resolved"),
        ids["half"]: (15 / 18, 15, 18, "partial"),
        ids["broken"]: (0.0, 0, 18, "zero"),
        ids["crash"]: (0.0, 0, 0, "error"),
    }
    assert rows[ids["good"]]["agent_steps"] == 4 and rows[ids["good"]]["agent_cost"] == 0.5
    # Honest agents: the integrity audit has nothing to say about any of them.
    assert {i: r.get("findings", []) for i, r in rows.items()} == {i: [] for i in rows}
    document = json.loads((out / "report.json").read_text())
    assert document["summary"]["by_language"]["c"] == {
        "instances": 4,
        "items": 4,
        "mean_score": pytest.approx(33 / 72),
        "resolved": 1,
        "almost": 0,
        "errors": 1,
    }
    assert document["versions"]["programbench"].startswith("1.2.")
    assert document["options"]["threshold"] == 1.0

    # JUnit, parsed: per-testcase and suite-level properties, the latter from the controller.
    xml = JUnitXml.fromfile(str(out / "junit.xml"))
    [suite] = list(xml)
    suite_props = properties(suite)
    assert suite_props["pb_mean_score"] == str(round(33 / 72, 6))
    assert (suite_props["pb_resolved"], suite_props["pb_error"], suite_props["pb_language_c_instances"]) == (
        "1",
        "1",
        "4",
    )
    cases = {case.name: properties(case) for case in suite}
    good = cases[f"instance[{ids['good']}]"]
    assert (good["pb_score"], good["pb_passed"], good["pb_total"], good["pb_outcome"]) == (
        "1.0",
        "18",
        "18",
        "resolved",
    )
    assert float(good["pb_agent_seconds"]) > 0 and float(good["pb_eval_seconds"]) > 0
    assert good["pb_agent_steps"] == "4" and good["pb_agent_cost"] == "0.5"
    assert cases[f"instance[{ids['crash']}]"]["pb_error_code"] == "agent_crashed"
    assert cases[f"instance[{ids['broken']}]"]["pb_error_code"] == "compile_failed"

    # The status file a user follows with tail -f.
    progress = (out / "progress.log").read_text()
    for phase in ("agent behaviour started", "scoring: compiling the submission", "testing branch 2/2"):
        assert phase in progress
    assert engine.labelled({LABEL_RUN: document["run_id"]}) == []


@pytest.mark.pytest_surface
def test_replay_reports_and_attempts(pytester: pytest.Pytester, clones: dict[str, Any]) -> None:
    ids = clones["ids"]
    runs = pytester.path / "runs"
    selftest.write_submission("correct", runs / ids["good"])
    selftest.write_submission("partial", runs / ids["half"])
    out = pytester.path / "out"
    result = pytester.runpytest_subprocess(
        f"--pb-tasks-dir={clones['tasks']}",
        f"--pb-blob-dir={clones['blobs']}",
        f"--pb-submissions={runs}",
        instance_filter("good", "half"),
        "--pb-attempts=2",
        "--pb-pull=never",
        f"--pb-cpus={CPUS}",
        f"--pb-output={out}",
        f"--pb-report={out / 'report.json'}",
        "-n",
        "2",
    )
    assert result.parseoutcomes() == {"resolved": 2, "partial": 2}
    result.stdout.fnmatch_lines(
        [
            "per instance over attempts:",
            f"  {ids['good']}  mean 1.000 over 2  pass@2 yes",
            f"  {ids['half']}  mean 0.833 over 2  pass@2 no",
        ]
    )
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["pass@2"] == 0.5
    for attempt in (1, 2):
        assert (out / f"attempt-{attempt}" / ids["half"] / f"{ids['half']}.eval.json").is_file()


def agent_started(instance_id: str) -> str:
    """The progress.log line of an agent start, whatever the elapsed seconds say."""
    return rf"{re.escape(instance_id)} \+\d+s agent \S+ started$"


def test_an_interrupted_run_resumes_without_redoing_finished_work(
    pytester: pytest.Pytester, engine: Engine, base_image: str, selftest_image: str, tmp_path: Path
) -> None:
    # Images of this test's own: the engine's event log below must not see another test's containers.
    names = ["good", "half", "slow", "broken"]
    tasks, blobs, own_ids = clone_selftest(engine, tmp_path, [f"resumed_{n}" for n in names])
    clones = {"tasks": tasks, "blobs": blobs}
    ids = dict(zip(names, own_ids, strict=True))

    def options(out: Path, agent_timeout: int = 5) -> list[str]:
        selection = instance_filter(*(f"resumed-{n}" for n in names))
        timeout = f"--pb-agent-timeout={agent_timeout}"
        return [*session_options(clones, out), "-p", "no:cacheprovider", timeout, selection]

    out = pytester.path / "out"
    pytester.makeconftest(CONFTEST)
    # Ctrl-C while the last instance's agent (slow) works; broken, good and half are finished by then.
    # Its agent sleeps for 600 s under a 600 s limit here, so it is still at work however late the
    # signal comes. The signal waits for the agent's own word that it started (slow.pid) and for its
    # container to run the `sleep 600` (the engine's process list), no clock.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *options(out, agent_timeout=600)],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # As from a terminal. In the full suite the xdist worker running this test has SIGINT
        # ignored by then (faulthandler showed the session polling its agent, the signal never
        # seen), and a child inherits an ignored signal: Python then installs no handler.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(pytester.path / "slow.pid", proc=proc)
        wait_until_running(engine, ids["slow"], "sleep 600", proc)
        proc.send_signal(signal.SIGINT)
        try:
            output = proc.communicate(timeout=120)[0].decode()
        except subprocess.TimeoutExpired:
            # Still running: SIGABRT makes pytest's faulthandler print every thread's stack.
            proc.send_signal(signal.SIGABRT)
            said = proc.communicate(timeout=30)[0].decode()
            raise AssertionError(f"the session did not stop after Ctrl-C:\n{stack_heads(said)}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    rows = rows_of(out)
    assert sorted(rows) == sorted(ids.values())
    # The instance cut short is counted: an error with its cause, never silently dropped.
    assert (rows[ids["slow"]]["outcome"], rows[ids["slow"]]["error_code"]) == ("not_run", "not_run")
    assert "interrupted" in rows[ids["slow"]]["message"]
    assert not (out / ids["slow"] / "programbench.json").exists()
    assert engine.labelled({LABEL_RUN: json.loads((out / "report.json").read_text())["run_id"]}) == []

    # Resume: good and half are reused (no container, no agent call); broken's compile_failed is
    # compiled again, as programbench eval would (no branch runs); slow runs again.
    (pytester.path / "agent-calls.log").unlink()
    with CreationWatch(engine, base_image) as created:
        resumed = pytester.runpytest_subprocess(*options(out))
    assert resumed.parseoutcomes() == {"resolved": 1, "partial": 1, "zero": 2}
    resumed.stdout.fnmatch_lines(
        ["verdicts from the run directory: 2 reused, 0 re-scored in part, 1 re-scored in full"]
    )
    assert (pytester.path / "agent-calls.log").read_text().split() == [ids["slow"]]
    for name in ("good", "half"):
        assert created.of(ids[name]) == {"task": 0, "branches": 0}, name
    assert created.of(ids["broken"]) == {"task": 1, "branches": 0}  # its compile
    assert created.of(ids["slow"])["task"] == 2  # its sandbox, its compile
    resumed_rows = rows_of(out)
    assert resumed_rows[ids["good"]]["reused"] and not resumed_rows[ids["slow"]]["reused"]

    # The final results equal those of a run nobody interrupted.
    fresh = pytester.runpytest_subprocess(*options(pytester.path / "fresh"))
    assert fresh.parseoutcomes() == resumed.parseoutcomes()
    keep = ("score", "n_resolved", "n_tests", "outcome", "error_code", "agent_steps", "agent_timed_out")
    assert {i: {k: r[k] for k in keep} for i, r in resumed_rows.items()} == {
        i: {k: r[k] for k in keep} for i, r in rows_of(pytester.path / "fresh").items()
    }


@pytest.mark.pytest_surface
def test_a_killed_worker_loses_nothing_and_leaks_nothing(
    pytester: pytest.Pytester, clones: dict[str, Any], engine: Engine
) -> None:
    ids = clones["ids"]
    out = pytester.path / "out"
    args = [
        instance_filter("good", "half", "slow", "broken"),
        "--pb-agent-timeout=5",
        "-p",
        "no:cacheprovider",
    ]
    pytester.makeconftest(CONFTEST)
    pidfile = pytester.path / "slow.pid"
    options = session_options(clones, out)
    junit = f"--junitxml={out / 'junit.xml'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *options, *args, junit, "-n", "2", "--max-worker-restart=1"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(out / "progress.log", agent_started(ids["slow"]))
        # The agent runs in a child of the worker and writes the pid once it is up.
        wait_for(pidfile, r"^\d+$")
        os.kill(int(pidfile.read_text()), signal.SIGKILL)  # the xdist worker running the slow agent
        output = proc.communicate(timeout=300)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "crashed while running" in output, output
    assert "removed 1 container(s) and image(s) a crashed worker or an interruption left behind" in output
    # The lost instance counts as 0 in all three reports (mean 2/4 + 15/18/4), with its cause.
    report = json.loads((out / "report.json").read_text())
    lost = next(r for r in report["instances"] if r["instance_id"] == ids["slow"])
    assert (lost["outcome"], lost["error_code"], lost["score"]) == ("error", "worker_crashed", 0.0)
    mean = (1 + 15 / 18) / 4
    assert (report["summary"]["n_items"], report["summary"]["error"]) == (4, 1)
    assert report["summary"]["mean_score"] == pytest.approx(mean)
    suite = properties(next(iter(JUnitXml.fromfile(str(out / "junit.xml")))))
    assert (suite["pb_items"], suite["pb_error"]) == ("4", "1")
    assert float(suite["pb_mean_score"]) == pytest.approx(mean, abs=1e-6)
    assert f"mean score {mean:.3f} over 4 item(s); 1 resolved, 1 partial, 1 zero, 1 error" in output
    assert f"{ids['slow']}: worker 'gw" in output
    run_id = report["run_id"]
    assert engine.labelled({LABEL_RUN: run_id}) == []
    assert not (out / ids["slow"] / "programbench.json").exists()

    (pytester.path / "agent-calls.log").unlink()
    resumed = pytester.runpytest_subprocess(*options, *args)
    assert resumed.parseoutcomes() == {"resolved": 1, "partial": 1, "zero": 2}
    resumed.stdout.fnmatch_lines(
        ["verdicts from the run directory: 2 reused, 0 re-scored in part, 1 re-scored in full"]
    )
    assert (pytester.path / "agent-calls.log").read_text().split() == [ids["slow"]]


def test_force_rescores_and_force_agent_reruns_the_agent(
    pytester: pytest.Pytester, clones: dict[str, Any]
) -> None:
    out = pytester.path / "out"
    iid = clones["ids"]["good"]
    first = agent_session(pytester, clones, out, instance_filter("good"))
    assert first.parseoutcomes() == {"resolved": 1}
    again = agent_session(pytester, clones, out, instance_filter("good"))
    assert again.parseoutcomes() == {"resolved": 1}
    assert rows_of(out)[iid]["reused"] is True
    forced = agent_session(pytester, clones, out, instance_filter("good"), "--pb-force")
    assert forced.parseoutcomes() == {"resolved": 1}
    row = rows_of(out)[iid]
    assert (row["reused"], row["rescored"], row["rescore_reason"]) == (False, "full", "--pb-force")
    assert row["agent_steps"] == 4  # the agent's figures from its first run, which is not repeated
    assert (pytester.path / "agent-calls.log").read_text().split() == [iid]
    rerun = agent_session(pytester, clones, out, instance_filter("good"), "--pb-force-agent")
    assert rerun.parseoutcomes() == {"resolved": 1}
    assert (pytester.path / "agent-calls.log").read_text().split() == [iid] * 2


def test_a_changed_submission_is_scored_again(pytester: pytest.Pytester, clones: dict[str, Any]) -> None:
    ids = clones["ids"]
    runs = pytester.path / "runs"
    selftest.write_submission("partial", runs / ids["half"])
    args = [
        f"--pb-tasks-dir={clones['tasks']}",
        f"--pb-blob-dir={clones['blobs']}",
        f"--pb-submissions={runs}",
        instance_filter("half"),
        "--pb-pull=never",
        f"--pb-cpus={CPUS}",
        f"--pb-output={pytester.path / 'out'}",
        f"--pb-report={pytester.path / 'out' / 'report.json'}",
    ]
    assert pytester.runpytest_subprocess(*args).parseoutcomes() == {"partial": 1}
    selftest.write_submission("correct", runs / ids["half"])
    assert pytester.runpytest_subprocess(*args).parseoutcomes() == {"resolved": 1}
    assert rows_of(pytester.path / "out")[ids["half"]]["reused"] is False


@pytest.mark.pytest_surface
def test_last_failed_reruns_exactly_the_failures_and_errors(
    pytester: pytest.Pytester, clones: dict[str, Any]
) -> None:
    pytester.makeconftest(CONFTEST)
    args = [
        f"--pb-tasks-dir={clones['tasks']}",
        f"--pb-blob-dir={clones['blobs']}",
        "--pb-pull=never",
        f"--pb-cpus={CPUS}",
        instance_filter(*NAMES),
    ]
    first = pytester.runpytest_subprocess(*args, "-n", "2")
    assert first.parseoutcomes() == {"resolved": 1, "partial": 1, "zero": 1, "errors": 1}
    (pytester.path / "agent-calls.log").unlink()
    again = pytester.runpytest_subprocess(*args, "--lf")
    again.stdout.fnmatch_lines(["run-last-failure: rerun previous 3 failures*"])
    assert again.parseoutcomes() == {"partial": 1, "zero": 1, "errors": 1, "deselected": 1}
    ids = clones["ids"]
    assert sorted((pytester.path / "agent-calls.log").read_text().split()) == sorted(
        [ids["half"], ids["broken"], ids["crash"]]
    )
