"""Agents: what turns a task container into a submission, and how one is run.

An agent is a callable ``agent(instance, sandbox)`` or an object with
``run(instance, sandbox)``. It works in ``sandbox`` (commands, files) and leaves its
work in ``/workspace``. It may return, or report as it goes through
``sandbox.report(...)``, its steps, cost, exit status and trajectory.

Which agent an item gets, first answer wins: a ``pb_agent`` fixture overridden in
conftest.py, then a ``pytest_programbench_agent`` hook in conftest.py, then
``--pb-agent`` (built-ins: ``none``, ``command``, ``mini-swe-agent``; or ``module:attr``).

:func:`run_agent` gives the agent a wall-clock budget. The agent runs in its own
thread; when time is up the sandbox stops accepting calls and every process in the
container dies, so the workspace can be packed and scored as the agent left it.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_programbench import files
from pytest_programbench.errors import AgentUnavailable, NoAgent
from pytest_programbench.model import AgentRun, Instance
from pytest_programbench.sandbox import AgentTimedOut, Sandbox
from pytest_programbench.settings import Settings

# How long a timed-out agent's thread gets to notice (its next sandbox call raises) and finish.
EXPIRE_GRACE_SECONDS = 10.0

Agent = Callable[[Instance, Sandbox], Any]


def resolve(settings: Settings, instance_dir: Path) -> Agent:
    """The agent ``--pb-agent`` names, ready to call for one instance."""
    name = settings.agent
    if not name:
        raise NoAgent()
    if name == "none":
        return none_agent
    if name == "selftest":
        from pytest_programbench.selftest import scripted_agent

        return scripted_agent
    if name == "command":
        return CommandAgent(settings.agent_cmd, instance_dir).run
    if name == "mini-swe-agent":
        from pytest_programbench.mini_agent import MiniSweAgent

        return MiniSweAgent(settings, instance_dir).run
    return load(name)


def load(spec: str) -> Agent:
    """Import ``module:attr``; a class with ``run`` is instantiated without arguments."""
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except ImportError as exc:
        raise AgentUnavailable(spec, f"importing {module_name} failed ({exc})") from None
    except AttributeError:
        raise AgentUnavailable(spec, f"{module_name} has no attribute {attr}") from None
    return as_callable(target, spec)


def as_callable(target: Any, name: str = "agent") -> Agent:
    if inspect.isclass(target) and callable(getattr(target, "run", None)):
        target = target()
    if callable(getattr(target, "run", None)):
        return target.run  # type: ignore[no-any-return]
    if callable(target):
        return target  # type: ignore[no-any-return]
    raise AgentUnavailable(
        name,
        f"{target!r} is neither callable nor has run(instance, sandbox)",
        "Point it at a function or agent",
    )


def agent_name(agent: Any) -> str:
    owner = getattr(agent, "__self__", None)
    target = owner if owner is not None else agent
    name = getattr(target, "agent_name", None) or getattr(target, "__qualname__", None)
    return str(name or type(target).__qualname__)


def run_agent(
    agent: Agent, instance: Instance, sandbox: Sandbox, *, timeout: float
) -> tuple[AgentRun, BaseException | None]:
    """Run ``agent`` at most ``timeout`` seconds; returns what it did and what it raised (if it crashed)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = agent(instance, sandbox)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"pb-agent-{instance.param_id}", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout)
    timed_out = worker.is_alive()
    seconds = time.monotonic() - started
    # Time up or not, the agent is done: nothing may keep writing while the workspace is packed.
    sandbox.expire()
    if timed_out:
        worker.join(EXPIRE_GRACE_SECONDS)
    _take_returned(sandbox, box.get("value"))
    error = box.get("error")
    if timed_out or isinstance(error, AgentTimedOut):
        error = None
    record = sandbox.record
    run = AgentRun(
        name=agent_name(agent),
        seconds=round(seconds, 3),
        timed_out=timed_out,
        exit_status=record.exit_status
        or ("TimedOut" if timed_out else type(error).__name__ if error else ""),
        steps=record.steps,
        cost=record.cost,
    )
    return run, error


def _take_returned(sandbox: Sandbox, value: Any) -> None:
    if isinstance(value, dict):
        sandbox.report(**value)
    elif value is not None and hasattr(value, "__dict__"):
        sandbox.report(**{k: v for k, v in vars(value).items() if not k.startswith("_")})


def save_trajectory(sandbox: Sandbox, path: Path) -> None:
    """Write a trajectory the agent handed over, unless the agent wrote the file itself."""
    trajectory = sandbox.record.trajectory
    if trajectory is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(path, json.dumps(trajectory, indent=2, default=str))


# -- built-ins -------------------------------------------------------------------------


def none_agent(instance: Instance, sandbox: Sandbox) -> dict[str, Any]:
    """Leave the workspace as the image has it: the baseline, which must score 0."""
    return {"steps": 0, "exit_status": "Submitted"}


none_agent.agent_name = "none"  # type: ignore[attr-defined]


class CommandAgent:
    """A host program that drives the container itself (``--pb-agent-cmd``).

    Its environment names the container and engine; its output goes to
    ``<id>/agent.log``; at the timeout its whole process group is killed.
    """

    agent_name = "command"

    def __init__(self, command: str, instance_dir: Path) -> None:
        self.command = command
        self.instance_dir = instance_dir

    def run(self, instance: Instance, sandbox: Sandbox) -> dict[str, Any]:
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        prompt_file = self.instance_dir / "prompt.md"
        prompt_file.write_text(instance.prompt)
        env = {
            **os.environ,
            "PB_CONTAINER_ID": sandbox.container_id,
            "DOCKER_HOST": sandbox.docker_host,
            "PB_INSTANCE_ID": instance.instance_id,
            "PB_WORKSPACE": sandbox.workspace,
            "PB_PROMPT_FILE": str(prompt_file),
            "PB_AGENT_USER": sandbox.user,
        }
        with (self.instance_dir / "agent.log").open("wb") as log:
            proc = subprocess.Popen(
                self.command,
                shell=True,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so the timeout kills all of it
            )
            sandbox.on_expire(lambda: _kill_group(proc))
            try:
                code = proc.wait()
            finally:
                _kill_group(proc)
        return {"exit_status": "Submitted" if code == 0 else f"exit {code}"}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
