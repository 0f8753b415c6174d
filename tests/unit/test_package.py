"""Leaderboard packaging's pure parts: what it fills in, the stats script, and what it refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_programbench.reporting import package

from .support import row, write_task

META = {
    "run_id": "r1",
    "versions": {"pytest-programbench": "0.1.0", "programbench": "1.2.5", "mini-swe-agent": "2.4.1"},
    "options": {
        "agent": "mini-swe-agent",
        "model": "anthropic/claude-x",
        "cpus": 2,
        "memory": "8g",
        "reference": "x",
    },
}


def test_the_system_fields_come_from_the_agent_and_model_of_the_run() -> None:
    assert package.known_system(META, None, []) == {
        "agent": "mini-swe-agent 2.4.1",
        "is_os_scaffold": True,
        "model": "anthropic/claude-x",
        "provider": "anthropic",
    }
    # An agent a conftest hook chose: the name its runs reported; the model from the agent's config.
    meta = {"options": {"agent": "", "model": ""}}
    rows = [row("a__b.1", agent="MyAgent.run"), row("c__d.2", agent="MyAgent.run")]
    assert package.known_system(meta, {"model": {"model_name": "local-llm"}}, rows) == {
        "agent": "MyAgent.run",
        "model": "local-llm",
    }
    assert package.known_system(meta, None, [row("a", agent="A"), row("b", agent="B")]) == {}


def test_hand_edited_manifest_fields_are_kept(tmp_path: Path) -> None:
    manifest = tmp_path / "submission.yaml"
    manifest.write_text(
        yaml.safe_dump({"system": {"agent": "my scaffold", "model": "TODO"}, "submitter": {"name": "Ada"}})
    )
    package._prefill_manifest(manifest, META, None, [])
    data = yaml.safe_load(manifest.read_text())
    assert data["system"]["agent"] == "my scaffold"  # edited by hand: stays
    assert data["system"]["model"] == "anthropic/claude-x"  # was TODO: filled
    assert data["submitter"] == {"name": "Ada"}


def test_secrets_in_the_agent_config_are_redacted() -> None:
    config = {
        "model": {"model_name": "m", "model_kwargs": {"api_key": "sk-1", "temperature": 0}},
        "env": [{"TOKEN": "t"}],
    }
    assert package.redacted(config) == {
        "model": {"model_name": "m", "model_kwargs": {"api_key": "<redacted>", "temperature": 0}},
        "env": [{"TOKEN": "<redacted>"}],
    }


def test_the_run_record_keeps_the_settings_that_change_results() -> None:
    record = package.run_record(
        META, [row("a__b.1", agent_steps=3, agent_cost=0.5, agent_seconds=12.0)], None, []
    )
    assert record["settings"] == {
        "agent": "mini-swe-agent",
        "model": "anthropic/claude-x",
        "cpus": 2,
        "memory": "8g",
        "reference": "x",
    }
    assert record["instances"]["a__b.1"]["agent_steps"] == 3 and record["versions"]["python"]


def test_the_shipped_script_computes_the_stats_from_trajectories_and_the_record(tmp_path: Path) -> None:
    record = package.run_record(
        META,
        [
            row("a__b.1", agent_steps=3, agent_cost=9.0, agent_seconds=12.25),
            row("c__d.2", agent_steps=5, agent_cost=0.25, agent_seconds=3.0),
        ],
        None,
        [],
    )
    (tmp_path / package.RECORD_DIR).mkdir()
    (tmp_path / package.RECORD_DIR / package.RECORD_NAME).write_text(json.dumps(record))
    mini = {
        "trajectory_format": "mini-swe-agent-1.1",
        "info": {"model_stats": {"instance_cost": 1.5, "api_calls": 2}},
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "extra": {"response": {"usage": {"total_tokens": 100}}}},
            {"role": "assistant", "extra": {"response": {"usage": {"total_tokens": 50}}}},
        ],
    }
    (tmp_path / "a__b.1").mkdir()
    (tmp_path / "a__b.1" / "a__b.1.traj.json").write_text(json.dumps(mini))
    script = tmp_path / package.SCRIPT
    script.parent.mkdir()
    script.write_text(package.STATS_SCRIPT)
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    stats = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "_stats").glob("*.json")}
    assert stats == {
        "cost": {"a__b.1": 1.5, "c__d.2": 0.25},  # the trajectory's own figure wins over the reported one
        "calls": {"a__b.1": 2},
        "tokens": {"a__b.1": 150},
        "steps": {"a__b.1": 3, "c__d.2": 5},
        "wall_time": {"a__b.1": 12.25, "c__d.2": 3.0},
    }


def test_the_readme_gets_the_overview_and_the_command_once(tmp_path: Path) -> None:
    from jinja2 import Environment, PackageLoader

    env = Environment(loader=PackageLoader("programbench", "data/templates"), autoescape=False)
    readme = tmp_path / "README.md"
    readme.write_text(env.get_template("README.md.j2").render(submission_id="s"))
    record = package.run_record(META, [], None, [])
    package._fill_readme(readme, record, ["pytest", "--pb-language=c", "-n", "8"])
    text = readme.read_text()
    assert "Agent: mini-swe-agent, model anthropic/claude-x" in text
    assert "```bash\npytest --pb-language=c -n 8\n```" in text
    package._fill_readme(readme, record, ["pytest", "again"])
    assert readme.read_text() == text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pb-gold"], "a --pb-gold run scores references, not submissions"),
        (["--pb-attempts=2"], "one attempt per instance"),
        (["--pb-output=out"], "apart from the run directory"),
    ],
)
def test_what_cannot_be_a_submission_is_refused_at_the_start(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    write_task(pytester.path / "tasks", "x__one.1", "language: c\n")
    package_dir = "out/pkg" if "--pb-output=out" in args else "pkg"
    agent = [] if "--pb-gold" in args else ["--pb-agent=none"]
    with pytest.raises(pytest.UsageError, match=message):
        pytester.parseconfigure(
            f"--pb-tasks-dir={pytester.path / 'tasks'}", f"--pb-package={package_dir}", *agent, *args
        )
