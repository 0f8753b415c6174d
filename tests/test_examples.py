"""Every directory in conftest_examples/ works as its README says, on the real engine.

Each test copies one example into a fresh directory, runs a whole session there on the self-test
task (``--pb-selftest`` selects it and supplies its scripted agent only when the example
configures none, so the example's own agent runs) and checks the score and that the example's
settings, not defaults, did the work. The mini-swe-agent example keeps its ini file but gets
mini's DeterministicModel through ``--pb-agent-config`` on the command line, so no model is called.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import assert_no_container_left, deterministic_config, solving_commands, write_yaml

from pytest_programbench import selftest
from pytest_programbench.engine.containers import Engine

EXAMPLES = Path(__file__).resolve().parent.parent / "conftest_examples"
TESTED = {"mini_swe_agent", "command_agent", "python_agent", "replay"}
INSTANCE = selftest.INSTANCE_ID


def run_example(pytester: pytest.Pytester, name: str, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    """Copy the example into pytester's directory and run a self-test session there."""
    shutil.copytree(EXAMPLES / name, pytester.path, dirs_exist_ok=True)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--pb-selftest",
        f"--pb-output={pytester.path / 'run'}",
        f"--pb-report={report}",
        *args,
    )
    return result, json.loads(report.read_text())


def resolved_row(result: pytest.RunResult, document: dict[str, Any]) -> dict[str, Any]:
    """The one item's row, after checking it scored 18/18."""
    result.stdout.fnmatch_lines([f"*{INSTANCE}*1.00*18/18*resolved*", "*= 1 resolved in *"])
    assert result.ret == pytest.ExitCode.OK
    rows = document["instances"]
    assert [(r["instance_id"], r["score"], r["n_resolved"], r["n_tests"]) for r in rows] == [
        (INSTANCE, 1.0, 18, 18)
    ]
    return dict(rows[0])


def test_every_example_has_a_readme_and_a_test() -> None:
    found = {p.name for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert found == TESTED
    for name in found:
        readme = (EXAMPLES / name / "README.md").read_text()
        assert f"cd conftest_examples/{name}\npytest " in readme, (
            f"{name}/README.md shows no command to run it"
        )


def test_python_agent(pytester: pytest.Pytester, selftest_image: str, engine: Engine) -> None:
    result, document = run_example(pytester, "python_agent")
    row = resolved_row(result, document)
    # The hook's function ran, not --pb-selftest's scripted agent.
    assert (row["agent"], row["agent_exit_status"], row["agent_steps"]) == ("rpncalc_agent", "Submitted", 3)
    assert document["options"]["agent"] == "selftest"  # what --pb-agent would have been
    assert_no_container_left(engine, document)


def test_command_agent(
    pytester: pytest.Pytester, selftest_image: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The copy is out of the checkout, so agent.sh cannot find ../../images/selftest on its own.
    monkeypatch.setenv("RPNCALC_SOURCE", str(selftest.image_context() / "rpncalc.c"))
    result, document = run_example(pytester, "command_agent")
    row = resolved_row(result, document)
    assert (row["agent"], row["agent_exit_status"]) == ("command", "Submitted")
    assert (document["options"]["agent_cmd"], document["options"]["agent_timeout"]) == ("sh agent.sh", 600)
    log = (pytester.path / "run" / INSTANCE / "agent.log").read_text().splitlines()
    assert log[0].startswith(f"instance {INSTANCE}, container ") and log[0].endswith(", user agent")
    assert log[1] == "task: Rebuild a program from its behaviour."
    assert log[-2:] == ["5", "built and checked; submitting"]
    assert_no_container_left(engine, document)


def test_mini_swe_agent_ini_names_the_example_config(pytester: pytest.Pytester) -> None:
    # Collection only: nothing calls the model, and the report still records the settings.
    result, document = run_example(pytester, "mini_swe_agent", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    options = document["options"]
    assert (options["agent"], options["model"]) == ("mini-swe-agent", "anthropic/claude-sonnet-4-5")
    assert options["agent_config"] == str(pytester.path / "agent.yaml")
    assert options["agent_timeout"] == 2 * 3600


def test_mini_swe_agent(
    pytester: pytest.Pytester, selftest_image: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSWEA_MODEL_NAME", raising=False)
    monkeypatch.setenv("MSWEA_GLOBAL_CONFIG_DIR", str(pytester.path / "mini-config"))
    # The example's agent.yaml with the model swapped for scripted answers, given on the command
    # line: it must beat the ini's pb_agent_config, while the ini's pb_agent and pb_model still apply.
    example_config = yaml.safe_load((EXAMPLES / "mini_swe_agent" / "agent.yaml").read_text())
    scripted = write_yaml(
        pytester.path / "scripted.yaml", deterministic_config(solving_commands(), **example_config)
    )
    result, document = run_example(pytester, "mini_swe_agent", f"--pb-agent-config={scripted}")

    row = resolved_row(result, document)
    assert (row["agent"], row["agent_exit_status"], row["agent_steps"]) == ("mini-swe-agent", "Submitted", 4)
    assert document["options"]["agent_config"] == str(scripted)
    info = json.loads((pytester.path / "run" / INSTANCE / f"{INSTANCE}.traj.json").read_text())["info"]
    assert info["config"]["model_type"] == "minisweagent.models.test_models.DeterministicModel"
    # pb_model from the ini is merged over the YAML's model name, as `mini-extra programbench -m` does.
    assert info["config"]["model"]["model_name"] == "anthropic/claude-sonnet-4-5"
    agent, environment = info["config"]["agent"], info["config"]["environment"]
    assert (agent["step_limit"], agent["cost_limit"]) == (
        example_config["agent"]["step_limit"],
        example_config["agent"]["cost_limit"],
    )
    assert environment["timeout"] == example_config["environment"]["timeout"]
    assert_no_container_left(engine, document)


def test_replay(pytester: pytest.Pytester, selftest_image: str) -> None:
    selftest.write_submission("correct", pytester.path / "runs" / INSTANCE)
    junit = pytester.path / "results.xml"
    result, document = run_example(pytester, "replay", "-n", "2", f"--junitxml={junit}")

    row = resolved_row(result, document)
    assert row["agent"] is None  # scored as found, no agent ran
    result.stdout.fnmatch_lines([f"programbench: replaying submissions from {pytester.path / 'runs'}"])
    case = ET.parse(junit).find(".//testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert (props["pb_score"], props["pb_outcome"]) == ("1.0", "resolved")
