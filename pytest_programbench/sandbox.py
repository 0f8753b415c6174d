"""Sandbox: the task container an agent works in, and the only door agents get into it.

The container starts from the task image with ``/workspace`` as its working directory,
no network unless asked, the image's ``agent`` user when it has one, SYS_PTRACE dropped,
no-new-privileges, CPU/memory/pids limits and our labels. Agents reach it only through
:class:`Sandbox`: commands with a timeout, file reads and writes inside the container.
Nothing here touches the host's filesystem except :meth:`Sandbox.pack_workspace`, which
writes the submission archive into the run directory. The hidden tests never enter.
At the end of a session the controller sweeps whatever a killed worker left running.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_programbench import files
from pytest_programbench.containers import (
    LABEL_INSTANCE,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_WORKER,
    Engine,
    ExecResult,
)
from pytest_programbench.errors import WorkspaceUnpackable

if TYPE_CHECKING:
    from docker.models.containers import Container

WORKSPACE = "/workspace"
AGENT_USER = "agent"
# Enough for parallel builds (cargo, go, make -j), low enough that a fork bomb cannot take the host.
PIDS_LIMIT = 4096
_PACK_PATH = "/tmp/.pb-submission.tar.gz"

# Which user each image runs agents as, found once per image per process.
_users: dict[str, tuple[str, int]] = {}
_users_lock = threading.Lock()


class AgentTimedOut(Exception):
    """Raised by every sandbox call once the agent's time is up."""


@dataclass(frozen=True)
class Limits:
    """What the agent container may use."""

    cpus: int = 1
    memory: str = ""  # docker size ("8g"); empty: unlimited
    network: bool = False
    pids: int = PIDS_LIMIT


@dataclass
class AgentRecord:
    """What an agent reported about its run: steps, cost, exit status, trajectory."""

    steps: int | None = None
    cost: float | None = None
    exit_status: str = ""
    trajectory: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class Sandbox:
    """A live task container, as an agent sees it.

    ``exec`` runs a shell command in ``/workspace`` (as the image's ``agent`` user when it
    has one); ``read_file``/``write_file`` move bytes in and out of the container.
    Relative paths are relative to ``/workspace``.
    """

    def __init__(
        self,
        engine: Engine,
        container: Container,
        *,
        user: str,
        uid: int,
        env: Mapping[str, str] | None = None,
        instance_id: str = "",
    ) -> None:
        self._engine = engine
        self.instance_id = instance_id
        self._container = container
        self.user = user
        self.uid = uid
        self.env = dict(env or {})
        self.workspace = WORKSPACE
        self.record = AgentRecord()
        self._expired = threading.Event()
        self._on_expire: list[Callable[[], object]] = []
        #: Told of each step the agent reports (the harness sets it to the item's progress).
        self.progress: Callable[[str], object] | None = None

    # -- what agents may know ---------------------------------------------------

    @property
    def container_id(self) -> str:
        return str(self._container.id)

    @property
    def docker_host(self) -> str:
        return self._engine.host

    # -- what agents may do -----------------------------------------------------

    def exec(
        self,
        command: str,
        timeout: float | None = None,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        interpreter: tuple[str, ...] = ("bash", "-c"),
    ) -> ExecResult:
        """Run ``command`` under bash in ``/workspace``; kill its whole process tree after ``timeout`` s."""
        self._check()
        return self._engine.exec(
            self._container,
            command,
            workdir=self._path(cwd) if cwd else WORKSPACE,
            user=self.user,
            env={**self.env, **(env or {})},
            timeout=timeout,
            interpreter=interpreter,
        )

    def read_file(self, path: str) -> bytes:
        """The bytes of a regular file in the container."""
        self._check()
        return self._engine.read_file(self._container, self._path(path))

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Create or replace a file in the container, owned by the agent user (parents must exist)."""
        self._check()
        payload = data.encode() if isinstance(data, str) else data
        self._engine.put_file(self._container, self._path(path), payload, mode=mode, owner=self.uid)

    def report(self, *, steps: int | None = None, cost: float | None = None, **extra: Any) -> None:
        """Record progress (steps, cost, exit_status, trajectory, ...); kept even if the agent times out."""
        if steps is not None and steps != self.record.steps and self.progress is not None:
            self.progress(f"agent step {steps}" + (f" (${cost:.2f})" if cost is not None else ""))
        if steps is not None:
            self.record.steps = steps
        if cost is not None:
            self.record.cost = cost
        if "exit_status" in extra:
            self.record.exit_status = str(extra.pop("exit_status"))
        if "trajectory" in extra:
            self.record.trajectory = extra.pop("trajectory")
        self.record.extra.update(extra)

    # -- what the harness does --------------------------------------------------

    def on_expire(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` when the agent's time ends (e.g. kill a host process driving the container)."""
        self._on_expire.append(callback)

    def expire(self) -> None:
        """End the agent's time: later calls raise AgentTimedOut and every process dies."""
        self._expired.set()
        for callback in self._on_expire:
            with contextlib.suppress(Exception):
                callback()
        self._engine.kill_all(self._container)

    @property
    def expired(self) -> bool:
        return self._expired.is_set()

    def pack_workspace(self, dest: Path) -> Path:
        """Pack ``/workspace`` inside the container (as ``programbench eval`` expects) into ``dest``."""
        # As root, so files the agent made unreadable are still archived; ownership is kept in the tar.
        result = self._engine.exec(
            self._container,
            f"tar -czf {_PACK_PATH} -C {WORKSPACE} . && echo packed",
            user="0",
            workdir="/",
            interpreter=("sh", "-c"),
        )
        # GNU tar exits 1 when a file changed while being read: the archive is still complete.
        if "packed" not in result.output and result.returncode != 1:
            detail = result.output.strip().splitlines()[-1:] or [f"tar exited {result.returncode}"]
            raise WorkspaceUnpackable(self.instance_id, detail[0])
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = files.partial_path(dest)
        self._engine.copy_out(self._container, _PACK_PATH, partial)
        partial.replace(dest)  # never a half-copied archive under the final name
        return dest

    def _check(self) -> None:
        if self._expired.is_set():
            raise AgentTimedOut("the agent's time is up; the sandbox no longer accepts calls")

    @staticmethod
    def _path(path: str) -> str:
        return posixpath.normpath(posixpath.join(WORKSPACE, path))


def agent_user(engine: Engine, image: str, container: Container) -> tuple[str, int]:
    """The image's ``agent`` user and uid, or root when the image has none (cached per image)."""
    with _users_lock:
        if image in _users:
            return _users[image]
    result = engine.exec(container, f"id -u {AGENT_USER}", user="0", workdir="/", interpreter=("sh", "-c"))
    found = (AGENT_USER, int(result.output.strip())) if result.returncode == 0 else ("0", 0)
    with _users_lock:
        _users[image] = found
    return found


@contextlib.contextmanager
def open_sandbox(
    engine: Engine,
    image: str,
    *,
    run_id: str,
    worker: str,
    instance_id: str,
    limits: Limits,
    keep: bool = False,
    env: Mapping[str, str] | None = None,
) -> Iterator[Sandbox]:
    """Start the agent container for one instance; removed on exit unless ``keep``."""
    options: dict[str, Any] = {
        "working_dir": WORKSPACE,
        "network_mode": "bridge" if limits.network else "none",
        "cap_drop": ["SYS_PTRACE"],
        "security_opt": ["no-new-privileges"],
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": limits.pids,
    }
    if limits.memory:
        options["mem_limit"] = limits.memory
        options["memswap_limit"] = limits.memory
    # PID 1 is `sleep infinity`, as in mini-swe-agent's container: `kill -9 -1` (expire) spares it,
    # so the container outlives the agent's processes and can still be packed.
    labels = {LABEL_RUN: run_id, LABEL_WORKER: worker, LABEL_INSTANCE: instance_id, LABEL_ROLE: "agent"}
    with engine.container(image, labels=labels, keep=keep, **options) as container:
        user, uid = agent_user(engine, image, container)
        yield Sandbox(engine, container, user=user, uid=uid, env=env, instance_id=instance_id)


class LeftoverSweep:
    """Controller-only: at the end, remove agent containers a killed xdist worker could not.

    A worker removes its sandbox when the item ends; one that dies mid-item (OOM, kill -9)
    leaves it running. Every worker is gone by the controller's sessionfinish, so anything
    still labelled with this run is a leftover.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if session.testscollected == 0:
            return
        from pytest_programbench.errors import EngineUnavailable

        try:
            with Engine() as engine:
                removed = engine.sweep({LABEL_RUN: self.run_id})
        except EngineUnavailable:
            return
        if removed:
            reporter = session.config.pluginmanager.getplugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(
                    f"programbench: removed {removed} container(s) a crashed worker left behind"
                )
