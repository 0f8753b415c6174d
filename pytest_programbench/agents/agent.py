"""Agents: what turns a task container into a submission, and how one is run.

An agent is a callable ``agent(instance, sandbox)`` or an object with
``run(instance, sandbox)``. It works in ``sandbox`` (commands, files) and leaves its
work in ``/workspace``. It may return, or report as it goes through
``sandbox.report(...)``, its steps, cost, exit status and trajectory.

Which agent an item gets (the one statement of the rule; the others point here), first
answer wins: a ``pb_agent`` fixture overridden in conftest.py, then a
``pytest_programbench_agent`` hook in conftest.py (None defers), then ``--pb-agent``
(built-ins: ``none``, ``command``, ``mini-swe-agent``; or ``module:attr``) through
:func:`from_settings`, the plugin's own hook implementation, registered last.

:func:`run_agent` gives the agent a wall-clock budget. A Python agent runs in a process
of its own (forked, in its own session), with a sandbox on the same container: when
time is up that process and everything it started are killed, however busy it is, and
the container's processes die with the container's init, so the workspace can be
packed and scored as the agent left it. Only our own built-ins that merely wait on
something killable (``none``, ``command``) run in a thread of the harness.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import multiprocessing
import os
import pickle
import signal
import subprocess
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pytest_programbench import files
from pytest_programbench.agents.sandbox import (
    TRAJECTORY_TEXT,
    AgentReportWarning,
    AgentTimedOut,
    Sandbox,
    SandboxHandle,
    trajectory_json,
)
from pytest_programbench.errors import AgentUnavailable, NoAgent
from pytest_programbench.model import AgentRun, Instance
from pytest_programbench.selection.settings import Settings
from pytest_programbench.text import printable

# How long a timed-out in-thread agent gets to notice (its next sandbox call raises) and finish.
EXPIRE_GRACE_SECONDS = 10.0
#: Every host process an agent starts inherits this variable: the harness kills them all by it,
#: in their own session or not (the host-side twin of containers.EXEC_MARKER).
AGENT_MARKER = "PB_AGENT_MARKER"
# How often the harness looks up from an agent's reports to check its clock and the sandbox.
_POLL_SECONDS = 0.2

Agent = Callable[[Instance, Sandbox], Any]


def from_settings(settings: Settings, instance_dir: Path) -> Agent:
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
        from pytest_programbench.agents.mini_agent import MiniSweAgent

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


class AgentRaised(Exception):
    """An exception an agent raised in its own process, as text (not every exception pickles)."""

    def __init__(self, type_name: str, message: str, details: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.details = details  # the agent process's traceback

    def __str__(self) -> str:
        return str(self.args[0])


def error_name(error: BaseException | None) -> str:
    if isinstance(error, AgentRaised):
        return error.type_name
    return type(error).__name__


def in_thread(agent: Agent) -> bool:
    """Our built-ins that only wait on something killable run in a thread; everything else in a process."""
    owner = getattr(agent, "__self__", agent)
    return bool(getattr(owner, "pb_in_thread", False))


def run_agent(
    agent: Agent, instance: Instance, sandbox: Sandbox, *, timeout: float
) -> tuple[AgentRun, BaseException | None]:
    """Run ``agent`` at most ``timeout`` seconds; returns what it did and what it raised (if it crashed).

    A sandbox the disk watchdog stopped ends the run early; its error is returned.
    """
    started = time.monotonic()
    if in_thread(agent):
        timed_out, error = _run_in_thread(agent, instance, sandbox, timeout)
    else:
        timed_out, error = _run_in_process(agent, instance, sandbox, timeout)
    seconds = time.monotonic() - started
    # Time up or not, the agent is done: nothing may keep writing while the workspace is packed.
    sandbox.expire()
    if sandbox.stopped_by is not None:
        timed_out, error = False, sandbox.stopped_by
    elif timed_out or isinstance(error, AgentTimedOut):
        error = None
    record = sandbox.record
    run = AgentRun(
        name=agent_name(agent),
        seconds=round(seconds, 3),
        timed_out=timed_out,
        exit_status=record.exit_status or ("TimedOut" if timed_out else error_name(error) if error else ""),
        steps=record.steps,
        cost=record.cost,
    )
    return run, error


def _over(sandbox: Sandbox, deadline: float) -> bool:
    return sandbox.expired or time.monotonic() >= deadline


def _run_in_thread(
    agent: Agent, instance: Instance, sandbox: Sandbox, timeout: float
) -> tuple[bool, BaseException | None]:
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            _take_returned(sandbox, agent(instance, sandbox))
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"pb-agent-{instance.param_id}", daemon=True)
    deadline = time.monotonic() + timeout
    worker.start()
    while worker.is_alive() and not _over(sandbox, deadline):
        worker.join(_POLL_SECONDS)
    timed_out = worker.is_alive()
    if timed_out:
        sandbox.expire()
        worker.join(EXPIRE_GRACE_SECONDS)
    return timed_out, box.get("error")


def _run_in_process(
    agent: Agent, instance: Instance, sandbox: Sandbox, timeout: float
) -> tuple[bool, BaseException | None]:
    marker = uuid.uuid4().hex
    # fork: the agent (a closure from a conftest, say) need not pickle, and it starts instantly.
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe(duplex=False)
    process = context.Process(
        target=_agent_process,
        args=(agent, instance, sandbox.handle(), theirs, marker, os.getpid()),
        name=f"pb-agent-{instance.param_id}",
        daemon=False,
    )
    deadline = time.monotonic() + timeout
    process.start()
    theirs.close()
    error: BaseException | None = None
    finished = False
    try:
        while not finished and not _over(sandbox, deadline):
            if not ours.poll(_POLL_SECONDS):
                if not process.is_alive() and not ours.poll(0):
                    error = AgentRaised(
                        "AgentDied", f"the agent process exited with code {process.exitcode}", ""
                    )
                    finished = True
                continue
            try:
                kind, payload = ours.recv()
            except Exception:  # the pipe broke: the process died mid-message
                process.join(EXPIRE_GRACE_SECONDS)
                error = AgentRaised("AgentDied", f"the agent process exited with code {process.exitcode}", "")
                finished = True
                continue
            if kind == "report":
                sandbox.apply_report(payload)
            elif kind == "progress":
                if sandbox.progress is not None:
                    sandbox.progress(str(payload))
            elif kind == "warning":
                warnings.warn(AgentReportWarning(printable(payload)), stacklevel=1)
            elif kind == "error":
                error, finished = AgentRaised(*payload), True
            elif kind == "done":
                finished = True
    finally:
        _kill_process_tree(process, marker)
        ours.close()
    return not finished and not sandbox.expired, error


def _agent_process(
    agent: Agent, instance: Instance, handle: SandboxHandle, conn: Connection, marker: str, harness: int
) -> None:
    """The agent's own process: a new session, marked, with a sandbox of its own on the same container."""
    os.setsid()
    os.environ[AGENT_MARKER] = marker
    _die_with_parent(harness)

    def send(kind: str, payload: Any) -> None:
        try:
            conn.send((kind, payload))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send(("warning", f"a {kind} could not be handed to the harness ({exc}); dropped"))

    def forward(fields: dict[str, Any]) -> None:
        portable = {}
        for key, value in fields.items():
            if not isinstance(key, str):
                continue
            if key == "trajectory":  # serialised (and bounded) here, so the harness never holds it whole
                key, value = TRAJECTORY_TEXT, trajectory_json(value)
            try:
                pickle.dumps(value)
            except Exception:
                value = repr(value)
            portable[key] = value
        send("report", portable)

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, AgentReportWarning):
            send("warning", str(message))  # the harness's session reports it
        else:
            shown(message, category, *args, **kwargs)

    shown, warnings.showwarning = warnings.showwarning, show
    try:
        sandbox = handle.open()
        sandbox.forward = forward
        sandbox.progress = functools.partial(send, "progress")  # a phase line, written by the harness
        _take_returned(sandbox, agent(instance, sandbox))
        send("done", None)
    except BaseException as exc:
        details = traceback.format_exc()
        send("error", (type(exc).__name__, str(exc), details))
    finally:
        conn.close()


def _die_with_parent(harness: int) -> None:
    """SIGKILL this process when the harness process dies (an OOM-killed xdist worker, say).

    A new session shields the agent from the terminal's Ctrl-C, so without this a busy agent
    would outlive a killed worker for good.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != harness:  # it died before we asked
        os._exit(1)


def _kill_process_tree(process: Any, marker: str) -> None:
    """SIGKILL the agent process, its session and every host process carrying its marker."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    kill_marked(marker)
    process.join(EXPIRE_GRACE_SECONDS)


def kill_marked(marker: str, rounds: int = 5) -> int:
    """SIGKILL every host process whose environment holds ``AGENT_MARKER=marker``; returns how many.

    A process that left its process group (``setsid``) keeps its environment; only our
    own user's processes are readable, which is all an agent can start.
    """
    needle = f"{AGENT_MARKER}={marker}".encode()
    ours = _cgroup("self")
    killed: set[int] = set()
    for _ in range(rounds):  # a process forking as we scan needs another look
        found = 0
        for entry in os.scandir("/proc"):
            # Killed in an earlier round and not reaped yet: still listed, nothing new to look for.
            if not entry.name.isdigit() or int(entry.name) in killed or int(entry.name) == os.getpid():
                continue
            # What the agent started is in this process's cgroup (moving out takes a privilege it
            # is not given); a container's processes are not, and the kernel makes a reader of
            # the environ of one thrashing at its memory limit wait as long as the thrash lasts.
            if ours is not None and _cgroup(entry.name) != ours:
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    environ = f.read()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.add(int(entry.name))
                    found += 1
        if not found:
            break
    return len(killed)


def _cgroup(pid: str) -> bytes | None:
    """``/proc/<pid>/cgroup`` (read without the lock a process's memory map holds), None if gone."""
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            return f.read()
    except OSError:
        return None


def _take_returned(sandbox: Sandbox, value: Any) -> None:
    """A returned dict (or object) is a report; keys that are not names are dropped."""
    if isinstance(value, dict):
        fields = value
    elif value is not None and hasattr(value, "__dict__"):
        fields = {k: v for k, v in vars(value).items() if not k.startswith("_")}
    else:
        return
    named = {k: v for k, v in fields.items() if isinstance(k, str)}
    if len(named) != len(fields):
        from pytest_programbench.agents.sandbox import _warn

        _warn(f"dropped {len(fields) - len(named)} returned key(s) that are not strings")
    sandbox.report(**named)


def save_trajectory(sandbox: Sandbox, path: Path) -> None:
    """Write a trajectory the agent handed over, unless the agent wrote the file itself."""
    trajectory = sandbox.record.trajectory
    if trajectory is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(path, trajectory)


# -- built-ins -------------------------------------------------------------------------


def none_agent(instance: Instance, sandbox: Sandbox) -> dict[str, Any]:
    """Leave the workspace as the image has it: the baseline, which must score 0."""
    return {"steps": 0, "exit_status": "Submitted"}


none_agent.agent_name = "none"  # type: ignore[attr-defined]
none_agent.pb_in_thread = True  # type: ignore[attr-defined]


#: What ``<id>/agent.log`` keeps of a ``command`` agent's output: its first and last this many
#: bytes, the cut counted between them (a chatty agent wrote 2.0 GB there).
AGENT_LOG_HEAD_BYTES = AGENT_LOG_TAIL_BYTES = 8 << 20


class BoundedLog:
    """A host program's output into a file: its head written as it comes (``tail -f`` shows
    the start), its tail kept in memory and written at the end, the cut counted between."""

    def __init__(
        self, path: Path, head: int = AGENT_LOG_HEAD_BYTES, tail: int = AGENT_LOG_TAIL_BYTES
    ) -> None:
        self._file = path.open("wb")
        self._head_left, self._tail_limit = head, tail
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._closed = False
        self.cut = 0

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            if self._head_left > 0:
                first, data = data[: self._head_left], data[self._head_left :]
                self._file.write(first)
                self._file.flush()
                self._head_left -= len(first)
            if data:
                self._tail += data
                excess = len(self._tail) - self._tail_limit
                if excess > 0:
                    del self._tail[:excess]
                    self.cut += excess

    def pump(self, fd: int) -> None:
        """Copy from ``fd`` until its writers are gone, then close it; what comes after close() is dropped.

        The fd is the pump's own: a process that escaped the kill may hold the pipe open for
        long after the agent's end, and the thread must never read a number reused since.
        """
        try:
            with contextlib.suppress(OSError):
                for chunk in iter(lambda: os.read(fd, 1 << 16), b""):
                    self.write(chunk)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.cut:
                self._file.write(
                    f"\n[... {self.cut} bytes of output cut by pytest-programbench ...]\n".encode()
                )
            self._file.write(self._tail)
            self._file.close()


class CommandAgent:
    """A host program that drives the container itself (``--pb-agent-cmd``).

    Its environment names the container and engine; its output goes to
    ``<id>/agent.log`` (its first and last 8 MiB); at the timeout its whole process
    group is killed.
    """

    agent_name = "command"
    pb_in_thread = True  # it only waits on a host program, which is killed by its marker

    def __init__(self, command: str, instance_dir: Path) -> None:
        self.command = command
        self.instance_dir = instance_dir

    def run(self, instance: Instance, sandbox: Sandbox) -> dict[str, Any]:
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        prompt_file = self.instance_dir / "prompt.md"
        prompt_file.write_text(instance.prompt)
        marker = uuid.uuid4().hex
        env = {
            **os.environ,
            "PB_CONTAINER_ID": sandbox.container_id,
            "DOCKER_HOST": sandbox.docker_host,
            "PB_INSTANCE_ID": instance.instance_id,
            "PB_WORKSPACE": sandbox.workspace,
            "PB_PROMPT_FILE": str(prompt_file),
            "PB_AGENT_USER": sandbox.user,
            AGENT_MARKER: marker,
        }
        log = BoundedLog(self.instance_dir / "agent.log")
        try:
            proc = subprocess.Popen(
                self.command,
                shell=True,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so the timeout kills all of it
            )
            assert proc.stdout is not None
            own = os.dup(proc.stdout.fileno())
            proc.stdout.close()
            copier = threading.Thread(target=log.pump, args=(own,), name="pb-agent-log", daemon=True)
            copier.start()
            sandbox.on_expire(lambda: _kill_group(proc, marker))
            try:
                code = proc.wait()
            finally:
                _kill_group(proc, marker)  # what it left running (daemons, setsid children) dies too
                # A process that shed the marker (env -i) may hold the pipe open: not waited for.
                copier.join(EXPIRE_GRACE_SECONDS)
        finally:
            log.close()
        return {"exit_status": "Submitted" if code == 0 else f"exit {code}"}


def _kill_group(proc: subprocess.Popen[bytes], marker: str) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    kill_marked(marker)
