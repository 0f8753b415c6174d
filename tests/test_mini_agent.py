"""The ``mini-swe-agent`` built-in on the real engine, driven by mini-swe-agent's own DeterministicModel.

Whole pytest sessions solve the self-test task with scripted model outputs (heredocs that write
rpncalc.c and compile.sh, a build, mini's submit command), so mini's real loop, templates and
trajectory writer run against our sandbox with no network and no model bill. The tests check the
score, mini's trajectory file, the steps and cost in the report, that the run leaves no container
behind, the error for a missing model, and a command that overruns ``environment.timeout``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
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
from pytest_programbench.engine.containers import Engine

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
    assert info["config"]["environment_type"] == "pytest_programbench.agents.mini_agent.SandboxEnvironment"
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
    args = ["--pb-selftest", "--pb-agent=mini-swe-agent", f"--pb-output={pytester.path / 'run'}"]
    if config is not None:
        args.append(f"--pb-agent-config={write_yaml(pytester.path / 'agent.yaml', config)}")
    result = pytester.runpytest_subprocess(*args)

    # Found by the preflight, once, before any container: one line and a usage error.
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = [x for x in result.errlines if x.startswith("ERROR:")]
    assert line.startswith("ERROR: programbench: agent 'mini-swe-agent' cannot be loaded: no model is set")
    assert "--pb-model" in line
    assert not (pytester.path / "run" / INSTANCE).exists()


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


def test_the_tool_call_path_loads_and_a_missing_key_is_not_retried(tmp_path: Path) -> None:
    """litellm imports its MCP handler whenever a call carries tools (mini's always do); that
    import needs ``mcp``, which only litellm's ``mcp`` extra brings (our ``mini`` extra asks for
    it). Without it every call raised ModuleNotFoundError, which mini retries for minutes.

    A fresh interpreter, no key, the cost map from the package: no network, no paid call.
    """
    script = textwrap.dedent(
        """
        import logging, sys
        import litellm.responses.mcp.chat_completions_handler  # the import that needed mcp
        from minisweagent.models.litellm_model import LitellmModel
        logging.getLogger("litellm_model").addHandler(logging.StreamHandler(sys.stdout))
        try:
            LitellmModel(model_name="anthropic/claude-sonnet-4-5").query([{"role": "user", "content": "hi"}])
        except Exception as exc:
            print("raised", type(exc).__name__)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", MSWEA_SILENT_STARTUP="1", HOME=str(tmp_path))
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "raised AuthenticationError", done.stdout + done.stderr
    assert "Retrying" not in done.stdout  # mini aborts at once on a missing key


class _Box:
    """The one Sandbox attribute the retry handler uses."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.progress = self.lines.append


def test_model_retries_are_progress_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """mini's real retry loop (tenacity, its module logger) around a model call that keeps failing."""
    import time

    from minisweagent.models.litellm_model import LitellmModel

    from pytest_programbench.agents.mini_agent import retries_shown

    monkeypatch.setenv("MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT", "3")
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # tenacity's waits, not what is tested
    model = LitellmModel(model_name="anthropic/claude-sonnet-4-5")

    def overloaded(messages: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the model is overloaded")

    monkeypatch.setattr(model, "_query", overloaded)
    box = _Box()
    with retries_shown(model, box), pytest.raises(RuntimeError):  # type: ignore[arg-type]
        model.query([{"role": "user", "content": "hi"}])
    assert [line.split(" in ")[0] for line in box.lines] == [
        "model call failed (RuntimeError: the model is overloaded); retry 1",
        "model call failed (RuntimeError: the model is overloaded); retry 2",
    ]
    # The handler goes with the block.
    handlers = logging.getLogger("litellm_model").handlers
    assert not [h for h in handlers if type(h).__name__ == "_RetryProgress"]


OVERLOADED_MODEL = """
from minisweagent.models.litellm_model import LitellmModel


class OverloadedModel(LitellmModel):
    '''mini's real model class and retry loop; only the provider's answer is made up.'''

    def _query(self, messages, **kwargs):
        raise RuntimeError("the model is overloaded")
"""


def test_a_failing_model_shows_its_retries_in_the_progress_log(
    pytester: pytest.Pytester,
    selftest_image: str,
    engine: Engine,
    clean_model_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(overloaded_model=OVERLOADED_MODEL)
    monkeypatch.setenv("MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT", "2")  # one retry: mini waits 4 s first
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    config = write_yaml(
        pytester.path / "overloaded.yaml",
        {"model": {"model_class": "overloaded_model.OverloadedModel", "model_name": "anthropic/claude-x"}},
    )
    result, document = run_session(
        pytester, "--pb-selftest", "--pb-agent=mini-swe-agent", f"--pb-agent-config={config}", "-n", "2"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    row = only_row(document)
    assert (row["outcome"], row["error_code"]) == ("error", "agent_crashed"), row
    assert "RuntimeError: the model is overloaded" in row["message"], row
    log = (pytester.path / "run" / "progress.log").read_text()
    retry = re.escape("model call failed (RuntimeError: the model is overloaded); retry 1 in ")
    assert re.search(rf"{re.escape(INSTANCE)} \+\d+s {retry}\d+s$", log, re.MULTILINE), log
    assert "retry 2" not in log, log
    assert_no_container_left(engine, document)
