"""Preflight: the problems of a whole session, found once before any container starts.

Without it a missing engine or a mistyped agent surfaces N times, once per item, each
after its fixtures ran (33 errors and ~2,200 lines for one missing engine). Each check
here either passes or raises :class:`pytest.UsageError` with one line saying what to do;
pytest then ends the session with exit code 4 before its header.

Checked: the Docker engine answers; something produces submissions (a ``--pb-agent``,
a conftest hook or fixture, or ``--pb-submissions``); the named agent loads (its module
imports, the ``command`` agent's program exists, mini-swe-agent is installed, has a model
and that model's API key is set). Nothing here makes a paid call or starts a container.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_programbench.errors import ProgramBenchError
from pytest_programbench.selection.settings import Settings

#: How long the model-key check may take (a subprocess importing litellm).
KEY_CHECK_SECONDS = 60


def run(config: pytest.Config, settings: Settings, engines: tuple[str | None, ...] = (None,)) -> None:
    """Raise pytest.UsageError for the first session-wide problem found; ``engines``: hosts to reach."""
    overridden = overridden_fixtures(config)
    try:
        if "pb_outcome" not in overridden:  # a conftest that scores by itself needs no engine of ours
            for host in engines:
                check_engine(host)
        if not settings.submissions_dir and not settings.gold and not overridden & SUBMISSION_FIXTURES:
            check_agent(config, settings)
    except ProgramBenchError as exc:
        raise pytest.UsageError(f"programbench: {exc}") from None


#: Fixtures on the path from agent to score: overriding any of them replaces the agent.
SUBMISSION_FIXTURES = frozenset({"pb_agent", "pb_agent_run", "pb_submission", "pb_outcome"})
_OURS = ("pytest_programbench.plugin", "pytest_programbench.fixtures")


def check_engine(host: str | None = None) -> None:
    from pytest_programbench.engine.containers import Engine

    with Engine(host, timeout=30):
        pass


def check_agent(config: pytest.Config, settings: Settings) -> None:
    from pytest_programbench.errors import NoAgent

    hooks = config.pluginmanager.hook.pytest_programbench_agent.get_hookimpls()
    if any(getattr(impl.plugin, "__name__", "") not in _OURS for impl in hooks):
        return  # a conftest decides per instance; its answers are checked when they are used
    if not settings.agent:
        raise NoAgent()
    if settings.agent in ("none", "selftest"):
        return
    if settings.agent == "command":
        check_command(settings.agent_cmd)
    elif settings.agent == "mini-swe-agent":
        check_mini(settings)
    else:
        from pytest_programbench.agents.agent import load

        load(settings.agent)


def overridden_fixtures(config: pytest.Config) -> set[str]:
    """Our fixtures that a conftest.py (or another plugin) loaded so far defines again."""
    # Private: pytest has no public way to ask which fixture functions a plugin defines, and the
    # FixtureManager does not exist yet this early (it is made in pytest's own sessionstart).
    from _pytest.fixtures import getfixturemarker

    found = set()
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__name__", "") in _OURS:
            continue
        for name, obj in list(getattr(plugin, "__dict__", {}).items()):
            try:
                marker = getfixturemarker(obj)
            except Exception:  # an attribute that cannot be inspected is not a fixture
                continue
            if marker is not None and str(marker.name or name).startswith("pb_"):
                found.add(str(marker.name or name))
    return found


def check_command(command: str) -> None:
    from pytest_programbench.errors import AgentUnavailable

    try:
        program = shlex.split(command)[0]
    except (ValueError, IndexError):
        raise AgentUnavailable("command", f"--pb-agent-cmd {command!r} is not a command line") from None
    if shutil.which(program) is None and not (os.sep in program and Path(program).is_file()):
        raise AgentUnavailable(
            "command",
            f"its program {program!r} is neither on PATH nor a file",
            "Check --pb-agent-cmd (a relative path is relative to where pytest starts)",
        )


def check_mini(settings: Settings) -> None:
    """mini-swe-agent is installed, its config names a model, and that model's keys are set."""
    from pytest_programbench.agents.mini_agent import load_config

    config = load_config(settings)  # raises AgentUnavailable: not installed, no model, bad class
    model = config.get("model", {})
    name = model.get("model_name") or os.environ.get("MSWEA_MODEL_NAME", "")
    if model.get("model_class", "litellm") not in ("", "litellm", "litellm_textbased", "litellm_response"):
        return  # another provider's client; its own checks apply when it starts
    missing = missing_keys(name)
    if missing:
        from pytest_programbench.errors import AgentUnavailable

        raise AgentUnavailable(
            "mini-swe-agent",
            f"model {name} needs {', '.join(missing)}, which is not set",
            f"Export it, or store it with `mini-extra config set {missing[0]} <value>`",
        )


def missing_keys(model: str) -> list[str]:
    """The API keys litellm says ``model`` needs and the environment lacks; no call is made.

    In a subprocess: importing litellm fetches its model cost map from the network unless
    told not to (about 14 s offline), and this session's agents should see litellm as it
    would load for them, so the local map is chosen only there.
    """
    code = (
        "import json, sys, litellm; "
        "print(json.dumps(litellm.validate_environment(model=sys.argv[1]).get('missing_keys') or []))"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, model],
            capture_output=True,
            text=True,
            env=env,
            timeout=KEY_CHECK_SECONDS,
            check=False,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return []  # the check itself failed: the agent's first call will say what is wrong
    return [str(k) for k in found] if isinstance(found, list) else []
