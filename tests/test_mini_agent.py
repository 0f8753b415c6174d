"""The ``mini-swe-agent`` built-in on the real engine, driven by mini-swe-agent's own DeterministicModel.

Whole pytest sessions solve the self-test task with scripted model outputs (heredocs that write
rpncalc.c and compile.sh, a build, mini's submit command), so mini's real loop, templates and
trajectory writer run against our sandbox with no network and no model bill. The tests check the
score, mini's trajectory file, the steps and cost in the report, that the run leaves no container
behind, the error for a missing model, and a command that overruns ``environment.timeout``.
"""

from __future__ import annotations

import json
import tarfile
from typing import Any

import pytest
from support import (
    COST_PER_STEP,
    SUBMIT,
    assert_no_container_left,
    deterministic_config,
    solving_commands,
    write_yaml,
)

from pytest_programbench import selftest
from pytest_programbench.containers import Engine

INSTANCE = selftest.INSTANCE_ID


def run_session(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    """A whole session in a subprocess; returns its result and the --pb-report document."""
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--pb-output={pytester.path / 'run'}",
        f"--pb-report={report}",
        *args,
    )
    return result, json.loads(report.read_text())


def only_row(document: dict[str, Any]) -> dict[str, Any]:
    rows = document["instances"]
    assert [r["instance_id"] for r in rows] == [INSTANCE]
    return dict(rows[0])


def trajectory(pytester: pytest.Pytester) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (pytester.path / "run" / INSTANCE / f"{INSTANCE}.traj.json").read_text()
    )
    return data


@pytest.fixture
def clean_model_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """No model may leak in from the machine: mini reads MSWEA_MODEL_NAME and its global .env."""
    monkeypatch.delenv("MSWEA_MODEL_NAME", raising=False)
    monkeypatch.setenv("MSWEA_GLOBAL_CONFIG_DIR", str(pytester.path / "mini-config"))


@pytest.mark.parametrize("workers", ["0", "2"])
def test_mini_swe_agent_solves_the_selftest_task(
    pytester: pytest.Pytester, selftest_image: str, engine: Engine, clean_model_env: None, workers: str
) -> None:
    config = write_yaml(pytester.path / "det.yaml", deterministic_config(solving_commands()))
    result, document = run_session(
        pytester, "--pb-selftest", "--pb-agent=mini-swe-agent", f"--pb-agent-config={config}", "-n", workers
    )

    result.stdout.fnmatch_lines([f"*{INSTANCE}*1.00*18/18*resolved*", "*= 1 resolved in *"])
    assert result.ret == pytest.ExitCode.OK
    row = only_row(document)
    assert (row["score"], row["n_resolved"], row["n_tests"], row["outcome"]) == (1.0, 18, 18, "resolved")
    assert (row["agent"], row["agent_exit_status"], row["agent_timed_out"]) == (
        "mini-swe-agent",
        "Submitted",
        False,
    )
    assert row["agent_steps"] == 4
    assert row["agent_cost"] == pytest.approx(4 * COST_PER_STEP)

    traj = trajectory(pytester)
    assert traj["trajectory_format"] == "mini-swe-agent-1.1"
    assert traj["instance_id"] == INSTANCE
    info = traj["info"]
    assert info["exit_status"] == "Submitted"
    assert info["model_stats"]["api_calls"] == 4
    assert info["model_stats"]["instance_cost"] == pytest.approx(4 * COST_PER_STEP)
    assert info["config"]["model_type"] == "minisweagent.models.test_models.DeterministicModel"
    assert info["config"]["environment_type"] == "pytest_programbench.mini_agent.SandboxEnvironment"
    # mini's ProgramBench config is the base the YAML was merged over.
    assert info["config"]["agent"]["step_limit"] == 1000
    roles = [m["role"] for m in traj["messages"]]
    assert roles == ["system", "user", *["assistant", "user"] * 3, "assistant", "exit"]
    assert "./compile.sh" in traj["messages"][1]["content"]  # the task statement mini renders
    build = traj["messages"][7]
    assert build["extra"]["returncode"] == 0
    assert "<output>\n5\n</output>" in build["content"]

    # What was scored is what the agent's heredocs wrote, owned by the image's agent user.
    with tarfile.open(pytester.path / "run" / INSTANCE / "submission.tar.gz") as archive:
        source = archive.extractfile("./rpncalc.c")
        assert source is not None and source.read().decode() == selftest.reference_source()
        script = archive.getmember("./compile.sh")
        assert script.mode & 0o111 and script.uname == "agent"
    assert_no_container_left(engine, document)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(None, id="no-config"),
        # model_class picks a class but mini still needs a model name; this must fail before the
        # container starts, not crash inside it.
        pytest.param({"model": {"model_class": "deterministic", "outputs": []}}, id="class-without-name"),
    ],
)
def test_a_missing_model_is_a_clear_error(
    pytester: pytest.Pytester,
    selftest_image: str,
    engine: Engine,
    clean_model_env: None,
    config: dict[str, Any] | None,
) -> None:
    args = ["--pb-selftest", "--pb-agent=mini-swe-agent"]
    if config is not None:
        args.append(f"--pb-agent-config={write_yaml(pytester.path / 'agent.yaml', config)}")
    result, document = run_session(pytester, *args)

    result.assert_outcomes(errors=1)
    row = only_row(document)
    assert (row["outcome"], row["error_code"], row["score"]) == ("error", "agent_unavailable", 0.0)
    assert row["message"].startswith("agent 'mini-swe-agent' cannot be loaded: no model is set")
    assert "--pb-model" in row["message"]
    result.stdout.fnmatch_lines([f"  {INSTANCE}: agent 'mini-swe-agent' cannot be loaded: no model is set*"])
    assert not (pytester.path / "run" / INSTANCE / f"{INSTANCE}.traj.json").exists()
    assert_no_container_left(engine, document)


def test_a_command_over_the_environment_timeout_is_killed_and_the_agent_goes_on(
    pytester: pytest.Pytester, selftest_image: str, engine: Engine, clean_model_env: None
) -> None:
    # The second command counts surviving `sleep 30`s; the bracket keeps it from counting itself.
    count_sleeps = (
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done | grep -c 'sleep 3[0]'"
    )
    commands = ["sleep 30", f"{count_sleeps}; echo still here", SUBMIT]
    config = write_yaml(
        pytester.path / "det.yaml", deterministic_config(commands, environment={"timeout": 2})
    )
    result, document = run_session(
        pytester, "--pb-selftest", "--pb-agent=mini-swe-agent", f"--pb-agent-config={config}"
    )

    row = only_row(document)
    # Nothing was built, so the evaluator scores 0; the item is a failure, not a harness error.
    assert (row["outcome"], row["error_code"], row["agent_exit_status"]) == (
        "zero",
        "compile_failed",
        "Submitted",
    )
    assert row["agent_steps"] == 3
    assert row["agent_timed_out"] is False
    assert row["agent_seconds"] < 20, "the 30 s sleep was not cut at the 2 s command timeout"
    assert result.ret == pytest.ExitCode.TESTS_FAILED

    messages = trajectory(pytester)["messages"]
    timed_out, after = messages[3], messages[5]
    assert timed_out["extra"]["returncode"] == -1
    assert "timed out after 2 seconds" in timed_out["extra"]["exception_info"]
    assert timed_out["extra"]["exception_type"] == "TimeoutExpired"
    assert "<exception>The command timed out after 2 seconds" in timed_out["content"]
    assert after["extra"]["returncode"] == 0
    assert "<output>\n0\nstill here\n</output>" in after["content"]
    assert messages[-1]["extra"]["exit_status"] == "Submitted"
    assert_no_container_left(engine, document)
