"""Commands in a container: exec with bounded output, exec_raw with bytes and stdin, and the
marker that lets every process a command started be killed on a timeout.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_programbench.engine.client import EngineBase, reaching, short_error, unreachable
from pytest_programbench.errors import EngineUnavailable

if TYPE_CHECKING:
    from docker.models.containers import Container


EXEC_MARKER = "PB_EXEC_MARKER"
KILL_GRACE_SECONDS = 10.0
#: Output of one exec kept in memory: its first and last this many bytes (a build log fits;
#: `cat /dev/urandom` does not take the host's memory with it).
OUTPUT_HEAD_BYTES = OUTPUT_TAIL_BYTES = 1 << 20


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    output: str
    timed_out: bool = False
    cut_bytes: int = 0  # output dropped from the middle (see OUTPUT_HEAD_BYTES)


@dataclass(frozen=True)
class RawResult:
    """What :meth:`Engine.exec_raw` saw: the exit code, stdout as bytes, the start of stderr."""

    returncode: int
    stdout: bytes
    stderr: str
    timed_out: bool = False
    overflowed: bool = False  # stdout passed its limit, so the command was killed


class BoundedOutput:
    """Collects a stream's bytes, keeping only its head and tail; counts what it drops."""

    def __init__(self, head: int = OUTPUT_HEAD_BYTES, tail: int = OUTPUT_TAIL_BYTES) -> None:
        self._head_limit, self._tail_limit = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.cut = 0

    def add(self, chunk: bytes) -> None:
        room = self._head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        excess = len(self.tail) - self._tail_limit
        if excess > 0:
            del self.tail[:excess]
            self.cut += excess

    def text(self) -> str:
        if not self.cut:
            return (bytes(self.head) + bytes(self.tail)).decode(errors="replace")
        note = f"\n[... {self.cut} bytes of output cut by pytest-programbench ...]\n"
        return bytes(self.head).decode(errors="replace") + note + bytes(self.tail).decode(errors="replace")


class Execs(EngineBase):
    """Running commands in a container and killing what they leave behind."""

    @reaching
    def exec(
        self,
        container: Container,
        command: str,
        *,
        workdir: str = "/workspace",
        user: str = "",
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        interpreter: tuple[str, ...] = ("bash", "-c"),
    ) -> ExecResult:
        """Run ``command`` in the container and wait for it, at most ``timeout`` seconds.

        Every process the command starts inherits a marker variable; on timeout all of
        them are killed, daemons that left the process group included, and the result
        says ``timed_out``.
        """
        marker = uuid.uuid4().hex
        api = self._stream_api()
        exec_id = api.exec_create(
            container.id,
            [*interpreter, command],
            user=user,
            workdir=workdir,
            environment={**(env or {}), EXEC_MARKER: marker},
        )["Id"]
        output = BoundedOutput()
        failure: list[BaseException] = []

        def pump() -> None:
            try:
                for chunk in api.exec_start(exec_id, stream=True):
                    output.add(chunk)
            except BaseException as exc:  # surfaced below, in the caller's thread
                failure.append(exc)

        reader = threading.Thread(target=pump, name=f"pb-exec-{marker[:8]}", daemon=True)
        reader.start()
        reader.join(timeout)
        timed_out = reader.is_alive()
        if timed_out:
            self.kill_marked(container, marker, user=user)
            reader.join(KILL_GRACE_SECONDS)
        if failure and not timed_out:
            from docker.errors import DockerException

            exc = failure[0]
            if isinstance(exc, DockerException) or unreachable(exc):
                raise EngineUnavailable(self.host, f"exec in {container.short_id} failed: {short_error(exc)}")
            raise exc
        code = api.exec_inspect(exec_id).get("ExitCode")
        return ExecResult(
            returncode=-9 if code is None else int(code),
            output=output.text(),
            timed_out=timed_out,
            cut_bytes=output.cut,
        )

    @reaching
    def exec_raw(
        self,
        container: Container,
        argv: list[str],
        *,
        user: str,
        max_stdout: int,
        timeout: float,
        stdin: bytes | None = None,
        ready: bytes = b"",
        env: Mapping[str, str] | None = None,
    ) -> RawResult:
        """Run ``argv`` (no shell of ours) as ``user``; stdout as bytes, at most ``max_stdout`` of it.

        With ``stdin``, the bytes are sent once the command has printed ``ready`` on stdout
        (left out of the result): a command that fails before it reads gets its error out
        instead of the engine resetting the connection under a half-sent payload. Past
        ``max_stdout`` or ``timeout`` every process the command started is killed (as
        ``user``, like :meth:`exec`) and the result says which limit it hit.
        """
        marker = uuid.uuid4().hex
        api = self._stream_api()
        exec_id = api.exec_create(
            container.id,
            argv,
            user=user,
            workdir="/",
            stdin=stdin is not None,
            environment={**(env or {}), EXEC_MARKER: marker},
        )["Id"]
        opened = api.exec_start(exec_id, socket=True)
        sock: socket.socket = getattr(opened, "_sock", opened)  # a unix socket comes as SocketIO
        out, err = bytearray(), bytearray()
        overflowed = threading.Event()
        waiting = stdin is not None

        def pump() -> None:
            nonlocal waiting
            for stream, data in _frames(sock):
                if stream == 2:
                    err.extend(data[: STDERR_KEPT_BYTES - len(err)])
                    continue
                out.extend(data)
                if waiting and out.startswith(ready):
                    del out[: len(ready)]
                    waiting = False
                    with contextlib.suppress(OSError):  # it died reading: its stderr says why
                        sock.sendall(stdin or b"")
                if len(out) > max_stdout:
                    overflowed.set()
                    return

        reader = threading.Thread(target=pump, name=f"pb-exec-raw-{marker[:8]}", daemon=True)
        try:
            reader.start()
            reader.join(timeout)
            timed_out = reader.is_alive()
        finally:
            # Closed before anything else is asked of the engine: until then its copy of the
            # command's output waits on us, and it answers nothing else about the container.
            _close_stream(sock)
        if timed_out or overflowed.is_set():
            self.kill_marked(container, marker, user=user)
        reader.join(KILL_GRACE_SECONDS)
        code = api.exec_inspect(exec_id).get("ExitCode")
        return RawResult(
            returncode=-9 if code is None else int(code),
            stdout=bytes(out[:max_stdout]),
            stderr=bytes(err).decode(errors="replace"),
            timed_out=timed_out,
            overflowed=overflowed.is_set(),
        )

    @reaching
    def kill_marked(self, container: Container, marker: str, *, user: str = "") -> None:
        """SIGKILL every process in the container whose environment carries ``marker``.

        Runs as the command's own user: without CAP_SYS_PTRACE (the sandbox drops it) even
        root cannot read another user's /proc/<pid>/environ.
        """
        script = (
            "for round in 1 2 3 4 5; do found=; "
            'for p in /proc/[0-9]*; do pid=${p#/proc/}; [ "$pid" = $$ ] && continue; '
            f"if grep -qsxz '{EXEC_MARKER}={marker}' $p/environ; then kill -9 $pid 2>/dev/null; found=1; fi; "
            'done; [ -z "$found" ] && break; sleep 0.1; done'
        )
        from docker.errors import DockerException

        # At the pids limit (a fork bomb) the killer itself cannot start; the expiry kills the
        # whole container later, so a failed sweep here must not fail the agent's exec.
        with contextlib.suppress(DockerException):
            container.exec_run(["sh", "-c", script], user=user)


#: Stderr kept by :meth:`Engine.exec_raw`: enough for an error message.
STDERR_KEPT_BYTES = 1 << 16


def _frames(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """(stream, bytes) frames of an exec attached without a tty, until the engine closes it."""
    while True:
        header = _read_exactly(sock, 8)
        if len(header) < 8:
            return
        stream, size = struct.unpack(">BxxxL", header)
        payload = _read_exactly(sock, size)
        if payload:
            yield stream, payload
        if len(payload) < size:
            return


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes, or fewer when the connection ends (closed, reset or shut down) first."""
    data = bytearray()
    while len(data) < n:
        try:
            chunk = sock.recv(min(n - len(data), 1 << 20))
        except OSError:
            break
        if not chunk:
            break
        data.extend(chunk)
    return bytes(data)


def _close_stream(sock: socket.socket) -> None:
    """Close an exec's attached stream, however the engine side already ended it.

    Over ssh:// the SDK's socket is an ``ssh ... docker system dial-stdio`` process: once the
    command is over the far end may be gone, and docker-py's ``close()`` then writes to a dead
    pipe (BrokenPipeError) and never ends the process. Neither is the command's failure.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
    proc = getattr(sock, "proc", None)  # docker.transport.sshconn.SSHSocket
    if isinstance(proc, subprocess.Popen):
        with contextlib.suppress(OSError):
            proc.terminate()
        try:
            proc.wait(KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
