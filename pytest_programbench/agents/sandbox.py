"""Sandbox: the task container an agent works in, and the only door agents get into it.

The container starts from the task image with ``/workspace`` as its working directory,
an init that reaps orphans as PID 1, no network unless asked, the image's ``agent`` user
when it has one, SYS_PTRACE dropped, no-new-privileges, CPU/memory/pids/disk limits and
our labels. Agents reach it only through :class:`Sandbox`: commands with a timeout (and
bounded output), file reads and writes inside the container, all as the agent's user.
Nothing here touches the host's filesystem except :meth:`Sandbox.pack_workspace`, which
reads ``/workspace`` through the engine (packing.py) into the run directory. The hidden
tests never enter. At the end of a session the controller sweeps whatever a killed
worker left running.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import posixpath
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_programbench.agents.packing import Packed, PackLimit, pack_stream
from pytest_programbench.engine.containers import (
    KEPT_PREFIX,
    LABEL_INSTANCE,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_WORKER,
    Engine,
    ExecResult,
    RawResult,
    stream_errors,
)
from pytest_programbench.errors import (
    DiskLimitExceeded,
    PackTimedOut,
    ProgramBenchError,
    RunDirUnwritable,
    SubmissionTooLarge,
    WorkspaceUnpackable,
)
from pytest_programbench.model import clean_cost, clean_steps

if TYPE_CHECKING:
    from docker.models.containers import Container

WORKSPACE = "/workspace"
AGENT_USER = "agent"
# Enough for parallel builds (cargo, go, make -j), low enough that a fork bomb cannot take the host.
PIDS_LIMIT = 4096
#: Default of --pb-max-submission: a packed workspace larger than this is not source code.
MAX_SUBMISSION_BYTES = 1 << 30
#: Packing reads at disk speed; a workspace that takes this long holds something pathological.
PACK_TIMEOUT_SECONDS = 30 * 60
#: How often the disk watchdog asks the engine for the writable layer's size.
DISK_POLL_SECONDS = 2.0
#: Largest file read_file returns unless given a larger ``max_bytes``: it is held in memory whole.
MAX_FILE_BYTES = 64 << 20
#: How long one read_file or write_file may take (a fifo in place of a file would block it).
FILE_TIMEOUT_SECONDS = 300.0

# read_file and write_file run these as the agent's user, inside the container: the kernel then
# checks every path as it checks the agent's own commands (`..`, absolute paths, symlinks to
# anywhere), and nothing is resolved by the harness first, so there is nothing to race. The
# checks before `cat` only choose the error; whatever an agent swaps in meanwhile, the I/O is its own.
_READ = """
if [ -d "$1" ]; then echo "$1: Is a directory" >&2; exit 1; fi
if [ -e "$1" ] && [ ! -f "$1" ]; then exit 3; fi
exec cat -- "$1"
"""
_NOT_REGULAR = 3
# Written beside the target and renamed over it; the data is sent only once the temporary file
# exists (the READY byte), so a refusal comes back as the container's own message.
_WRITE = """
if [ -d "$1" ]; then echo "$1: Is a directory" >&2; exit 1; fi
tmp=$(mktemp "${1%/*}/.pb-write.XXXXXX") || exit 1
printf R
if head -c "$2" > "$tmp" && [ "$(wc -c < "$tmp")" -eq "$2" ] && chmod "$3" "$tmp" && mv -f "$tmp" "$1"; then
  exit 0
fi
rm -f "$tmp"
exit 1
"""
_READY = b"R"
_FILE_ENV = {"LC_ALL": "C"}  # the tools' messages in English, to read errno from them
_ERRNO_OF = {os.strerror(code): code for code in sorted(errno.errorcode)}

# Which user each image runs agents as, found once per image per process.
_users: dict[str, tuple[str, int]] = {}
_users_lock = threading.Lock()


class AgentTimedOut(Exception):
    """Raised by every sandbox call once the agent's time is up."""


class AgentReportWarning(UserWarning):
    """An agent reported a value the harness cannot use; it was dropped or stored as text."""


class SubmissionWarning(UserWarning):
    """Something in /workspace could not go into the submission (fifos, devices)."""


@dataclass(frozen=True)
class Limits:
    """What the agent container may use."""

    cpus: int = 1
    memory: str = ""  # docker size ("8g"); empty: unlimited
    network: bool = False
    pids: int = PIDS_LIMIT
    disk: int = 0  # bytes of the writable layer; 0: unlimited
    reference: str = "readable"  # or "exec-only" (--pb-reference, see protect_reference)


@dataclass
class AgentRecord:
    """What an agent reported about its run: steps, cost, exit status, trajectory."""

    steps: int | None = None
    cost: float | None = None
    exit_status: str = ""
    trajectory: str | None = None  # the text of <id>.traj.json (see trajectory_json)
    extra: dict[str, Any] = field(default_factory=dict)


class Sandbox:
    """A live task container, as an agent sees it.

    ``exec`` runs a shell command in ``/workspace`` (as the image's ``agent`` user when it
    has one); ``read_file``/``write_file`` move bytes in and out of the container as that
    same user, with the same permissions. Relative paths are relative to ``/workspace``.
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
        #: Why the harness stopped the agent early (the disk watchdog), if it did.
        self.stopped_by: ProgramBenchError | None = None
        #: Set when a limit made the harness keep the container: it holds the only full workspace.
        self.kept_as: str | None = None
        #: Told of each step the agent reports (the harness sets it to the item's progress).
        self.progress: Callable[[str], object] | None = None
        #: In an agent's own process: reports go to the harness through this instead.
        self.forward: Callable[[dict[str, Any]], object] | None = None
        #: What the agent can do with ./executable (protect_reference): exec-only, readable, ...
        self.reference_access = ""

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
        """Run ``command`` under bash in ``/workspace``; kill its whole process tree after ``timeout`` s.

        The output keeps its first and last MiB; ``cut_bytes`` says how much of the middle was dropped.
        """
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

    def read_file(
        self, path: str, *, max_bytes: int = MAX_FILE_BYTES, timeout: float = FILE_TIMEOUT_SECONDS
    ) -> bytes:
        """The bytes of a regular file in the container, read as the agent's user.

        What the agent may not read is an ``OSError`` (``PermissionError``,
        ``FileNotFoundError``, ``IsADirectoryError``, ...; errno ``EFBIG`` past ``max_bytes``,
        ``TimeoutError`` past ``timeout``), whichever path leads to it.
        """
        self._check()
        target = self._path(path)
        result = self._engine.exec_raw(
            self._container,
            ["sh", "-c", _READ, "sh", target],
            user=self.user,
            max_stdout=max_bytes,
            timeout=timeout,
            env=_FILE_ENV,
        )
        if result.overflowed:
            raise OSError(errno.EFBIG, f"larger than max_bytes={max_bytes}; pass a larger max_bytes", target)
        if result.returncode == _NOT_REGULAR:
            raise OSError(errno.EINVAL, "not a regular file (a fifo, socket or device)", target)
        if result.timed_out or result.returncode != 0:
            raise self._file_error(target, result, timeout)
        return result.stdout

    def write_file(
        self, path: str, data: bytes | str, mode: int = 0o644, *, timeout: float = FILE_TIMEOUT_SECONDS
    ) -> None:
        """Create or replace a file in the container as the agent's user (parents must exist).

        The file is written beside ``path`` and renamed over it, so a reader never sees half
        of it and a symlink at ``path`` is replaced, not followed; it gets ``mode`` and the
        agent's uid. Where the agent may not write, an ``OSError`` as for :meth:`read_file`.
        """
        self._check()
        target = self._path(path)
        payload = data.encode() if isinstance(data, str) else data
        result = self._engine.exec_raw(
            self._container,
            ["sh", "-c", _WRITE, "sh", target, str(len(payload)), format(mode & 0o7777, "o")],
            user=self.user,
            max_stdout=1 << 10,
            timeout=timeout,
            stdin=payload,
            ready=_READY,
            env=_FILE_ENV,
        )
        if result.timed_out or result.returncode != 0:
            raise self._file_error(target, result, timeout)

    def report(self, *, steps: Any = None, cost: Any = None, **extra: Any) -> None:
        """Record progress (steps, cost, exit_status, trajectory, ...); kept even if the agent times out.

        ``steps`` must be an int >= 0 and ``cost`` a finite number >= 0, and a trajectory
        JSON-serialisable; anything else is dropped (or kept as its repr) with a warning,
        so nothing an agent says can break the reports.
        """
        fields = {"steps": steps, "cost": cost, **extra}
        if self.forward is not None:
            self.forward(fields)
            return
        self.apply_report(fields)

    def apply_report(self, fields: dict[str, Any]) -> None:
        """Check and record one report (the harness's side of :meth:`report`)."""
        steps, cost = fields.pop("steps", None), fields.pop("cost", None)
        if steps is not None and clean_steps(steps) is None:
            _warn(f"steps={_short_repr(steps)} is not a whole number >= 0; dropped")
        if cost is not None and clean_cost(cost) is None:
            _warn(f"cost={_short_repr(cost)} is not a finite number of dollars >= 0; dropped")
        steps, cost = clean_steps(steps), clean_cost(cost)
        if steps is not None and steps != self.record.steps and self.progress is not None:
            self.progress(f"agent step {steps}" + (f" (${cost:.2f})" if cost is not None else ""))
        if steps is not None:
            self.record.steps = steps
        if cost is not None:
            self.record.cost = cost
        if "exit_status" in fields:
            self.record.exit_status = str(fields.pop("exit_status"))[:200]
        if TRAJECTORY_TEXT in fields:  # made in the agent's own process, already bounded
            self.record.trajectory = str(fields.pop(TRAJECTORY_TEXT))[: 2 * TRAJECTORY_MAX_CHARS]
        if "trajectory" in fields:
            self.record.trajectory = trajectory_json(fields.pop("trajectory"))
        self.record.extra.update({k: v for k, v in fields.items() if isinstance(k, str)})

    # -- what the harness does --------------------------------------------------

    def on_expire(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` when the agent's time ends (e.g. kill a host process driving the container)."""
        self._on_expire.append(callback)

    def expire(self) -> None:
        """End the agent's time: later calls raise AgentTimedOut and every process dies.

        The container itself is killed (its init, so every process, daemons and fork bombs
        included); its filesystem stays, and packing reads it from the outside.
        """
        self._expired.set()
        for callback in self._on_expire:
            with contextlib.suppress(Exception):
                callback()
        self._engine.kill(self._container)

    @property
    def expired(self) -> bool:
        return self._expired.is_set()

    def handle(self) -> SandboxHandle:
        """What another process needs to reach this container as this sandbox does."""
        return SandboxHandle(
            host=self._engine.host,
            container_id=self.container_id,
            user=self.user,
            uid=self.uid,
            env=tuple(sorted(self.env.items())),
            instance_id=self.instance_id,
        )

    def watch_disk(self, limit: int, interval: float = DISK_POLL_SECONDS) -> None:
        """Stop the agent once the container's writable layer passes ``limit`` bytes.

        For engines that cannot cap it (overlay2 off xfs): a thread asks the engine for
        the layer's size until the sandbox expires.
        """

        def watch() -> None:
            pause = interval
            while not self._expired.wait(pause):
                asked = time.monotonic()
                try:
                    used = self._engine.writable_size(self._container)
                except Exception:  # the engine is busy or the container is going: ask again
                    continue
                # The engine walks the whole layer to answer: with a million files that takes a
                # while, and asking back to back would keep it busy doing nothing else.
                pause = max(interval, 4 * (time.monotonic() - asked))
                if used > limit and not self._expired.is_set():
                    self.stopped_by = DiskLimitExceeded(self.instance_id, used, limit)
                    self.expire()

        threading.Thread(target=watch, name=f"pb-disk-{self.instance_id}", daemon=True).start()

    def pack_workspace(
        self, dest: Path, *, max_bytes: int = MAX_SUBMISSION_BYTES, timeout: float = PACK_TIMEOUT_SECONDS
    ) -> Path:
        """Pack ``/workspace`` (as ``programbench eval`` expects) into ``dest``; see :meth:`pack`."""
        return self.pack(dest, max_bytes=max_bytes, timeout=timeout).path

    def pack(
        self, dest: Path, *, max_bytes: int = MAX_SUBMISSION_BYTES, timeout: float = PACK_TIMEOUT_SECONDS
    ) -> Packed:
        """Read ``/workspace`` through the engine and gzip it on the host into ``dest``.

        Nothing runs in the container, so whatever the agent left there (a full pids
        table, a fifo, a symlink) cannot stop it; special files are skipped and listed.
        Over ``max_bytes`` packed or ``timeout`` seconds, the container is kept under a
        name the session's sweep spares, and the error says where the workspace is.
        """
        broken: tuple[type[Exception], ...] = (*stream_errors(), OSError, EOFError)
        try:
            with self._engine.archive_stream(self._container, WORKSPACE) as chunks:
                return pack_stream(
                    chunks, dest, root=WORKSPACE.strip("/"), max_bytes=max_bytes, timeout=timeout
                )
        except PackLimit as exc:
            where = self._keep_for_inspection()
            if exc.kind == "size":
                raise SubmissionTooLarge(
                    f"the packed /workspace of {self.instance_id}", max_bytes, where
                ) from None
            raise PackTimedOut(self.instance_id, timeout, where) from None
        except broken as exc:
            if isinstance(exc, OSError) and _written_on_host(exc, dest):
                where = self._keep_for_inspection()  # the run directory failed, not the workspace
                raise RunDirUnwritable(
                    str(os.fsdecode(exc.filename or dest)), exc.strerror or str(exc), str(dest.parent), where
                ) from None
            raise WorkspaceUnpackable(self.instance_id, str(exc) or type(exc).__name__) from None

    def _keep_for_inspection(self) -> str:
        name = f"{KEPT_PREFIX}{self.container_id[:12]}"
        try:
            self._engine.rename(self._container, name)
        except Exception as exc:
            return f"the container could not be kept ({exc})"
        self.kept_as = name
        return (
            f"the workspace is kept in the stopped container {name} (`docker cp {name}:/workspace DIR` to "
            f"copy it out, `docker rm -f {name}` when done)"
        )

    def _check(self) -> None:
        if self._expired.is_set():
            raise AgentTimedOut("the agent's time is up; the sandbox no longer accepts calls")

    @staticmethod
    def _path(path: str) -> str:
        # Only joined and normalised as text (`src/../x` is `x` even without src): where it leads,
        # and whether the agent may go there, the kernel decides as the agent's user.
        if "\0" in path:
            raise ValueError(f"embedded null byte in path {path!r}")
        return posixpath.normpath(posixpath.join(WORKSPACE, path))

    def _file_error(self, target: str, result: RawResult, timeout: float) -> OSError:
        """The OSError the agent would have got: errno from the container's own message."""
        if result.timed_out:
            return TimeoutError(errno.ETIMEDOUT, f"took longer than {timeout:g} s", target)
        said = (result.stderr.strip().splitlines() or [""])[-1]
        code = _ERRNO_OF.get(said.rsplit(": ", 1)[-1].strip())
        if code is not None:
            return OSError(code, f"{os.strerror(code)} (as user {self.user})", target)
        return OSError(errno.EIO, said or f"failed with exit code {result.returncode}", target)


def _written_on_host(exc: OSError, dest: Path) -> bool:
    """A write into the run directory failed (read-only, full), as opposed to the engine's read."""
    from pytest_programbench.files import WRITE_FAILURES

    if exc.errno not in WRITE_FAILURES:
        return False
    return not exc.filename or dest.parent in Path(os.fsdecode(exc.filename)).parents


@dataclass(frozen=True)
class SandboxHandle:
    """A sandbox as builtins, so it crosses into an agent's own process (see agents.run_agent)."""

    host: str
    container_id: str
    user: str
    uid: int
    env: tuple[tuple[str, str], ...]
    instance_id: str

    def open(self) -> Sandbox:
        """A Sandbox on the same container, over a connection of this process's own."""
        engine = Engine(self.host)
        return Sandbox(
            engine,
            engine.get(self.container_id),
            user=self.user,
            uid=self.uid,
            env=dict(self.env),
            instance_id=self.instance_id,
        )


#: A reported trajectory whose JSON text is longer than this is saved as its first and last
#: half of that text (and the count of what was cut): an agent's 300 MB report cost the
#: harness 912 MB and the run directory 300 MB.
TRAJECTORY_MAX_CHARS = 16 << 20
#: The report field a trajectory crosses from an agent's own process in, as text already.
TRAJECTORY_TEXT = "pb_trajectory_json"


def trajectory_json(value: Any) -> str:
    """The text of ``<id>.traj.json`` for a reported trajectory: JSON, at most about
    TRAJECTORY_MAX_CHARS of it (with a warning when cut), its repr when it is not JSON."""
    try:
        compact = json.dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        _warn(f"trajectory is not JSON-serialisable ({exc}); saved as its repr")
        return json.dumps(_short_repr(value, TRAJECTORY_MAX_CHARS))
    if len(compact) <= TRAJECTORY_MAX_CHARS:
        return json.dumps(value, indent=2)
    half = TRAJECTORY_MAX_CHARS // 2
    cut = len(compact) - 2 * half
    _warn(f"trajectory is {len(compact)} characters of JSON; saved as its first and last {half} ({cut} cut)")
    return json.dumps(
        {
            "pb_trajectory_cut": {
                "characters": len(compact),
                "cut": cut,
                "kept_head": half,
                "kept_tail": half,
            },
            "head": compact[:half],
            "tail": compact[-half:],
        },
        indent=2,
    )


def json_safe(value: Any, what: str) -> Any:
    """``value`` if it is JSON-serialisable, else its repr (with a warning)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        _warn(f"{what} is not JSON-serialisable ({exc}); saved as its repr")
        return _short_repr(value, 10_000_000)
    return value


def _short_repr(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} with a broken repr>"
    return text if len(text) <= limit else text[:limit] + "..."


def _warn(message: str) -> None:
    warnings.warn(AgentReportWarning(f"agent report: {message}"), stacklevel=3)


def agent_user(engine: Engine, image: str, container: Container) -> tuple[str, int]:
    """The image's ``agent`` user and uid, or root when the image has none (cached per image)."""
    with _users_lock:
        if image in _users:
            return _users[image]
    # Asked as the agent itself (the engine refuses a user the image lacks): nothing runs as root.
    result = engine.exec(container, "id -u", user=AGENT_USER, workdir="/", interpreter=("sh", "-c"))
    uid = result.output.strip()
    found = (AGENT_USER, int(uid)) if result.returncode == 0 and uid.isdigit() else ("0", 0)
    with _users_lock:
        _users[image] = found
    return found


#: Makes an ELF ./executable root-owned 0111 and says what it did. The kernel runs such a file
#: for anyone (a script needs its interpreter to read it, so a script is left readable), and
#: a process it starts is not dumpable, so /proc/<pid>/mem and ptrace cannot read it either.
_EXEC_ONLY = """f=/workspace/executable
if [ ! -f "$f" ]; then echo none
elif [ "$(head -c 4 "$f")" = "$(printf '\\177ELF')" ]; then
    chown 0:0 "$f" && chmod 0111 "$f" && echo exec-only
else echo script; fi"""


def protect_reference(engine: Engine, container: Container, mode: str) -> str:
    """Apply ``--pb-reference`` to the task's ./executable; returns what the agent gets (for its row).

    ``exec-only``, ``readable``, ``readable (a script; exec-only needs an ELF binary)`` or
    ``none`` (the image has no ./executable).
    """
    if mode != "exec-only":
        return "readable"
    done = engine.exec(container, _EXEC_ONLY, user="0", workdir="/", interpreter=("sh", "-c"), timeout=120)
    said = done.output.strip().splitlines()[-1:] or [""]
    if done.returncode != 0 or said[0] not in ("exec-only", "script", "none"):
        raise ProgramBenchError(f"--pb-reference exec-only could not be applied: {done.output.strip()[:300]}")
    return {"script": "readable (a script; exec-only needs an ELF binary)"}.get(said[0], said[0])


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
        # The engine's init as PID 1 reaps orphans and killed commands; `sleep infinity` never
        # did, and 4096 zombies later the sandbox could not fork.
        "init": True,
    }
    if limits.memory:
        options["mem_limit"] = limits.memory
        options["memswap_limit"] = limits.memory
    quota = bool(limits.disk) and engine.supports_disk_quota(image)
    if quota:
        options["storage_opt"] = {"size": str(limits.disk)}
    labels = {LABEL_RUN: run_id, LABEL_WORKER: worker, LABEL_INSTANCE: instance_id, LABEL_ROLE: "agent"}
    sandbox: Sandbox | None = None

    def keep_it() -> bool:
        return keep or (sandbox is not None and sandbox.kept_as is not None)

    with engine.container(image, labels=labels, keep=keep_it, **options) as container:
        user, uid = agent_user(engine, image, container)
        sandbox = Sandbox(engine, container, user=user, uid=uid, env=env, instance_id=instance_id)
        sandbox.reference_access = protect_reference(engine, container, limits.reference)
        if limits.disk and not quota:
            sandbox.watch_disk(limits.disk)
        try:
            yield sandbox
        finally:
            if not sandbox.expired:  # stop the watchdog and whatever still runs
                sandbox.expire()
