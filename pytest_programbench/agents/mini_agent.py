"""The ``mini-swe-agent`` built-in: mini-swe-agent's own loop, executing in our sandbox.

This is what ``mini-extra programbench`` runs per instance (its ProgramBench config,
its ``ProgramBenchAgent``, the same git identity and template variables, the
trajectory as ``<id>.traj.json``) with one change: commands go through
:class:`~pytest_programbench.agents.sandbox.Sandbox` instead of a ``docker run`` of its own,
so the container gets our limits, labels, timeout and cleanup. The user's
``--pb-agent-config`` YAML is merged over the built-in config and ``--pb-model`` over
both, exactly as ``mini-extra programbench -c ... -m ...`` merges them.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import platform
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pytest_programbench.agents.sandbox import Sandbox
from pytest_programbench.errors import AgentUnavailable
from pytest_programbench.model import Instance
from pytest_programbench.selection.settings import Settings

# The environment keys that mean something here; mini's docker run_args, executable and
# container_timeout are replaced by the sandbox's own limits.
_ENV_KEYS = ("cwd", "env", "forward_env", "timeout", "interpreter")
# mini-extra programbench sets this identity before the agent starts, so the agent's commits carry it.
_GIT_IDENTITY = 'git config user.name "mini-swe-agent" && git config user.email "mini-swe-agent@proton.me"'


def _import_mini() -> Any:
    os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")  # no banner in the middle of pytest's output
    try:
        import minisweagent.run.benchmarks.programbench as bench
    except ImportError as exc:
        raise AgentUnavailable(
            "mini-swe-agent", f"it is not installed ({exc})", "pip install 'pytest-programbench[mini]'"
        ) from None
    return bench


def load_config(settings: Settings) -> dict[str, Any]:
    """mini-swe-agent's ProgramBench config, the user's YAML over it, then --pb-model."""
    bench = _import_mini()
    from minisweagent.config import get_config_from_spec
    from minisweagent.utils.serialize import UNSET, recursive_merge

    configs = [get_config_from_spec(str(bench.DEFAULT_CONFIG_FILE))]
    if settings.agent_config:
        try:
            configs.append(yaml.safe_load(Path(settings.agent_config).read_text()) or {})
        except yaml.YAMLError as exc:
            raise AgentUnavailable(
                "mini-swe-agent", f"{settings.agent_config} is not valid YAML: {exc}"
            ) from None
    configs.append({"model": {"model_name": settings.model or UNSET}})
    config: dict[str, Any] = recursive_merge(*configs)
    model = config.get("model", {})
    # mini's get_model needs a model name even when model_class picks the class; without one it
    # raises only once the agent runs, as a crash inside an already started container.
    name = model.get("model_name") or os.environ.get("MSWEA_MODEL_NAME")
    if not name:
        raise AgentUnavailable(
            "mini-swe-agent",
            "no model is set",
            "Give --pb-model (e.g. anthropic/claude-sonnet-4-5), model.model_name in --pb-agent-config, "
            "or MSWEA_MODEL_NAME",
        )
    if model.get("model_class"):
        from minisweagent.models import get_model_class

        try:
            get_model_class(name, model["model_class"])
        except ValueError as exc:
            raise AgentUnavailable(
                "mini-swe-agent", str(exc), "Fix model.model_class in --pb-agent-config"
            ) from None
    return config


class SandboxEnvironment:
    """mini-swe-agent's Environment protocol over a Sandbox (its DockerEnvironment, minus `docker exec`)."""

    def __init__(self, sandbox: Sandbox, image: str, **config: Any) -> None:
        from minisweagent.environments.docker import DockerEnvironmentConfig

        known = {k: v for k, v in config.items() if k in _ENV_KEYS}
        self.config = DockerEnvironmentConfig(image=image, **known)
        self.sandbox = sandbox

    def execute(self, action: dict[str, Any], cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        from minisweagent.environments.docker import DockerEnvironment

        limit = timeout or self.config.timeout
        env = {k: v for k, v in ((k, os.getenv(k)) for k in self.config.forward_env) if v is not None}
        result = self.sandbox.exec(
            action.get("command", ""),
            timeout=limit,
            cwd=cwd or self.config.cwd,
            env={**env, **self.config.env},
            interpreter=tuple(self.config.interpreter),
        )
        output: dict[str, Any] = {
            "output": result.output,
            "returncode": result.returncode,
            "exception_info": "",
        }
        if result.timed_out:
            output["returncode"] = -1
            output["exception_info"] = (
                f"The command timed out after {limit} seconds; it and every process it started were killed."
            )
            output["extra"] = {"exception_type": "TimeoutExpired"}
        # mini's own rule for "the agent submitted" (raises Submitted). Private mini-swe-agent
        # API, used here only (pinned by the mini extra's <3; tests/unit/test_private_apis.py).
        DockerEnvironment._check_finished(self, output)  # type: ignore[arg-type]
        return output

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        from minisweagent.utils.serialize import recursive_merge

        merged: dict[str, Any] = recursive_merge(self.config.model_dump(), platform.uname()._asdict(), kwargs)
        return merged

    def serialize(self) -> dict[str, Any]:
        return {
            "info": {
                "config": {
                    "environment": self.config.model_dump(mode="json"),
                    "environment_type": f"{type(self).__module__}.{type(self).__name__}",
                    "container_id": self.sandbox.container_id,
                }
            }
        }

    def cleanup(self) -> None:
        """The sandbox's owner removes the container."""


class _Progress:
    """Stands in for mini's batch progress manager: steps go to the sandbox's record."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.agent: Any = None

    def update_instance_status(self, instance_id: str, message: str) -> None:
        # Called as each step starts: the step about to run is number n_calls + 1.
        if self.agent is not None:
            self.sandbox.report(steps=self.agent.n_calls + 1, cost=self.agent.cost)


class _RetryProgress(logging.Handler):
    """mini's model retries as progress lines: tenacity logs each one before it sleeps, and
    without them a model call that keeps failing is minutes of silence before a crash."""

    _TENACITY = re.compile(
        r"Retrying .* in (?P<wait>[\d.]+) seconds as it (?:raised|returned) (?P<cause>.*?)\.?$", re.DOTALL
    )

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(logging.WARNING)
        self.sandbox = sandbox
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith("Retrying") or self.sandbox.progress is None:
            return
        self.retries += 1
        said = self._TENACITY.match(message)
        if said is None:
            line = f"model call retry {self.retries}: {message[:300]}"
        else:
            cause, wait = said["cause"][:300], float(said["wait"])
            line = f"model call failed ({cause}); retry {self.retries} in {wait:.0f}s"
        self.sandbox.progress(line)


@contextlib.contextmanager
def retries_shown(model: Any, sandbox: Sandbox) -> Iterator[None]:
    """While the block runs, each retry of ``model``'s calls is a progress line of ``sandbox``.

    mini's model classes retry through their module's ``logger`` (one per module, not under
    a common parent); a subclass from elsewhere retries through its base's, so the handler
    goes on the logger of every module in the class's ancestry.
    """
    modules = (sys.modules.get(cls.__module__) for cls in type(model).__mro__)
    loggers = {
        id(lg): lg for lg in (getattr(m, "logger", None) for m in modules) if isinstance(lg, logging.Logger)
    }
    handler = _RetryProgress(sandbox)
    for logger in loggers.values():
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers.values():
            logger.removeHandler(handler)


class MiniSweAgent:
    """``--pb-agent mini-swe-agent``: one mini-swe-agent run per instance."""

    agent_name = "mini-swe-agent"

    def __init__(self, settings: Settings, instance_dir: Path) -> None:
        self.config = load_config(settings)
        self.instance_dir = instance_dir

    def run(self, instance: Instance, sandbox: Sandbox) -> dict[str, Any]:
        bench = _import_mini()
        from minisweagent.models import get_model

        config = copy.deepcopy(self.config)
        iid = instance.instance_id
        traj = self.instance_dir / f"{iid}.traj.json"
        traj.unlink(missing_ok=True)
        model = get_model(config=config.get("model", {}))
        env = SandboxEnvironment(sandbox, instance.image_ref, **config.get("environment", {}))
        env.execute({"command": _GIT_IDENTITY})
        agent_config = {**config.get("agent", {}), "output_path": traj}
        progress = _Progress(sandbox)
        agent = bench.ProgramBenchAgent(
            model, env, progress_manager=progress, instance_id=iid, **agent_config
        )
        progress.agent = agent
        agent.extra_template_vars = {"instance": _task_vars(instance)}
        exit_status: str | None = None
        try:
            with retries_shown(model, sandbox):
                info = agent.run()
            exit_status = info.get("exit_status")
        except Exception as exc:
            exit_status = type(exc).__name__
            raise
        finally:
            sandbox.report(steps=agent.n_calls, cost=agent.cost, exit_status=exit_status or "")
            agent.save(traj, {"info": {"exit_status": exit_status}, "instance_id": iid})
        return {"steps": agent.n_calls, "cost": agent.cost, "exit_status": exit_status or ""}


def _task_vars(instance: Instance) -> dict[str, Any]:
    # What mini-extra programbench exposes as {{instance}}: the task.yaml fields plus id and image.
    task_yaml = Path(instance.task_dir) / "task.yaml"
    data = yaml.safe_load(task_yaml.read_text()) if task_yaml.is_file() else {}
    return {**(data or {}), "instance_id": instance.instance_id, "image_name": instance.image}
