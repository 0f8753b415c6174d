"""Provision: every conversation with a Docker engine goes through this module.

Nothing else in the package imports ``docker``. Containers we start carry labels
naming the run, the xdist worker and the instance, start inside a context manager
that removes them if starting fails, and can be swept by label whatever a crash
left behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import stat
import struct
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Concatenate, ParamSpec, TypeVar

from pytest_programbench.errors import EngineUnavailable, ImageBuildFailed, ImageMissing, ImagePullFailed

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

LABEL_PREFIX = "io.pytest-programbench"
LABEL_RUN = f"{LABEL_PREFIX}.run"
LABEL_WORKER = f"{LABEL_PREFIX}.worker"
LABEL_INSTANCE = f"{LABEL_PREFIX}.instance"
LABEL_ROLE = f"{LABEL_PREFIX}.role"
LABEL_OWNER = f"{LABEL_PREFIX}.owner"  # <hostname>:<pid> of the session that started it

EXEC_MARKER = "PB_EXEC_MARKER"
log = logging.getLogger("pytest_programbench")
KILL_GRACE_SECONDS = 10.0
STREAM_TIMEOUT_SECONDS = 7 * 24 * 3600
#: Output of one exec kept in memory: its first and last this many bytes (a build log fits;
#: `cat /dev/urandom` does not take the host's memory with it).
OUTPUT_HEAD_BYTES = OUTPUT_TAIL_BYTES = 1 << 20
# Names the name of a container kept on purpose (its workspace is the only copy): sweeps spare it.
KEPT_PREFIX = "pb-kept-"


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


_T = TypeVar("_T")
_P = ParamSpec("_P")


def unreachable(exc: BaseException) -> bool:
    """Is ``exc`` the engine not answering (dead, restarting, hung), rather than a refusal?"""
    import requests

    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))


def _reaching(method: Callable[Concatenate[Engine, _P], _T]) -> Callable[Concatenate[Engine, _P], _T]:
    """Turn a lost connection to the engine into EngineUnavailable, the one error users see for it."""

    def call(self: Engine, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if unreachable(exc):
                raise EngineUnavailable(self.host, f"{method.__name__}: {_short(exc)}") from None
            raise

    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


#: Pulls tried again after a transient failure, with pauses of 2, 4, 8 ... seconds.
PULL_RETRIES = 3
PULL_BACKOFF_SECONDS = 2.0
RATE_LIMIT_FIX = (
    "The registry's pull rate limit was hit; not retrying (that extends the ban). Log in "
    "(`docker login`) or use a registry mirror, then rerun with the same --pb-output"
)
_TRANSIENT = (
    "connection reset",
    "connection refused",
    "broken pipe",
    "i/o timeout",
    "tls handshake timeout",
    "unexpected eof",
    "timeout exceeded",
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
    "received unexpected http status: 50",
)


def pull_failure_kind(detail: str) -> str:
    """``rate_limited``, ``transient`` (worth another try) or ``fatal`` (a wrong name, no access)."""
    text = detail.lower()
    if "toomanyrequests" in text or "rate limit" in text:
        return "rate_limited"
    return "transient" if any(phrase in text for phrase in _TRANSIENT) else "fatal"


def default_host() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def _transport(host: str) -> dict[str, Any]:
    """How the SDK reaches ``host`` as the docker CLI would: TLS from the environment for tcp://,
    the system's ssh client for ssh:// (keys, known_hosts and ~/.ssh/config as for `ssh`)."""
    if host.startswith("ssh://"):
        return {"use_ssh_client": True}
    if host.startswith("tcp://"):
        from docker.utils import kwargs_from_env

        tls = kwargs_from_env(environment={**os.environ, "DOCKER_HOST": host}).get("tls")
        return {"tls": tls} if tls else {}
    return {}


def docker_sdk(host: str) -> Any:
    """The ``docker`` package, imported without paramiko unless ``host`` is an ssh:// engine.

    docker-py imports its ssh transport whenever paramiko is installed (our ``docker[ssh]``
    dependency), and with it cryptography's OpenSSL bindings: about 19 MiB of memory in the
    controller and in every xdist worker, for engines that are almost always a local socket.
    So the first import hides paramiko; an ssh:// engine later loads the transport and gives
    it to the SDK's client module, which looks the adapter up by name when a client for an
    ssh:// URL is made (private docker-py layout; tests/unit/test_private_apis.py checks it).
    If something imported docker before us, it is used as it is.
    """
    import sys

    if "docker" not in sys.modules and "paramiko" not in sys.modules and not host.startswith("ssh://"):
        sys.modules["paramiko"] = None  # type: ignore[assignment]  # `import paramiko` raises ImportError
        try:
            import docker
        finally:
            del sys.modules["paramiko"]
    import docker
    import docker.api.client

    if host.startswith("ssh://") and not hasattr(docker.api.client, "SSHHTTPAdapter"):
        from docker.transport.sshconn import SSHHTTPAdapter

        docker.api.client.SSHHTTPAdapter = SSHHTTPAdapter
    return docker


class Engine:
    """One Docker engine, reached through the Docker SDK."""

    def __init__(self, host: str | None = None, *, timeout: int = 300) -> None:
        self.host = host or default_host()
        sdk = docker_sdk(self.host)
        from docker.errors import DockerException

        self._streams: Any = None
        self._disk_quota: bool | None = None
        self._cpus: int | None = None
        self._podman: bool | None = None
        try:
            self.client: docker.DockerClient = sdk.DockerClient(
                base_url=self.host, timeout=timeout, **_transport(self.host)
            )
            self.client.ping()
        except DockerException as exc:
            raise EngineUnavailable(self.host, _short(exc)) from None
        except OSError as exc:  # a socket that exists but refuses
            raise EngineUnavailable(self.host, _short(exc)) from None

    def close(self) -> None:
        if self._streams is not None:
            self._streams.close()
        self.client.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- facts -----------------------------------------------------------------

    @_reaching
    def alive(self, timeout: float) -> None:
        """Ping with a short deadline: EngineUnavailable rather than a wait as long as a pull's."""
        api: Any = self.client.api
        api._raise_for_status(api._get(api._url("/_ping"), timeout=timeout))

    @_reaching
    def info(self) -> dict[str, Any]:
        return dict(self.client.info())

    def cpu_count(self) -> int:
        if self._cpus is None:
            self._cpus = int(self.info().get("NCPU") or os.cpu_count() or 1)
        return self._cpus

    @_reaching
    def version(self) -> str:
        return str(self.client.version().get("Version", "unknown"))

    @_reaching
    def is_podman(self) -> bool:
        """Whether the engine is Podman serving the Docker API (its version names a "Podman Engine")."""
        if self._podman is None:
            components = self.client.version().get("Components") or []
            self._podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
        return self._podman

    @_reaching
    def ignores_limits(self) -> bool:
        """Whether the engine accepts CPU, memory and pids limits and applies none of them.

        Rootless Podman on cgroup v1 does so (podman 4.3: "Resource limits are not supported and
        ignored on cgroups V1 rootless systems"; ``docker inspect`` then shows them as 0). Its
        libpod API says it is rootless; the Docker API does not. Private docker-py API (_get,
        _result), as in archive_stream.
        """
        if not self.is_podman():
            return False
        api: Any = self.client.api
        host = api._result(api._get(f"{api.base_url}/v4.0.0/libpod/info"), json=True).get("host") or {}
        rootless = bool((host.get("security") or {}).get("rootless"))
        return rootless and str(host.get("cgroupVersion", "")) == "v1"

    # -- images ----------------------------------------------------------------

    @_reaching
    def image_exists(self, ref: str) -> bool:
        from docker.errors import ImageNotFound

        try:
            self.client.images.get(ref)
        except ImageNotFound:
            return False
        return True

    @_reaching
    def image_id(self, ref: str) -> str:
        """The content id (``sha256:...``) ``ref`` names now; a tag can be re-pointed, an id cannot."""
        from docker.errors import ImageNotFound

        try:
            return str(self.client.images.get(ref).id)
        except ImageNotFound:
            raise ImageMissing(ref) from None

    def require_image(self, ref: str, fix: str = "") -> None:
        if not self.image_exists(ref):
            raise ImageMissing(ref, fix)

    @_reaching
    def pull(
        self, ref: str, progress: Callable[[str], None] | None = None, *, retries: int = PULL_RETRIES
    ) -> None:
        """Pull ``ref``; ``progress`` gets one line per layer status change.

        A transient failure (a reset connection, a registry's 5xx) is tried again after a
        growing pause; a registry's rate limit is not, since retrying only extends a ban.
        """
        for attempt in range(retries + 1):
            try:
                self._pull_once(ref, progress)
                return
            except ImagePullFailed as exc:
                kind = pull_failure_kind(exc.detail)
                if kind == "rate_limited":
                    raise ImagePullFailed(ref, exc.detail, RATE_LIMIT_FIX) from None
                if kind != "transient" or attempt == retries:
                    raise
                if progress is not None:
                    progress(f"{ref}: {exc.detail}; trying again ({attempt + 1}/{retries})")
                time.sleep(PULL_BACKOFF_SECONDS * 2**attempt)

    def _pull_once(self, ref: str, progress: Callable[[str], None] | None) -> None:
        from docker.errors import DockerException

        repository, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        try:
            for event in self.client.api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise ImagePullFailed(ref, str(event["error"]))
                if progress is not None and "status" in event:
                    layer = event.get("id", "")
                    progress(f"{ref}: {layer + ' ' if layer else ''}{event['status']}")
        except DockerException as exc:
            raise ImagePullFailed(ref, _short(exc)) from None
        if not self.image_exists(ref):
            raise ImagePullFailed(ref, "the engine reported success but has no such image")

    @_reaching
    def image_size(self, ref: str) -> int:
        """Bytes of the image with all its layers (what `docker images` shows as SIZE)."""
        return int(self.client.images.get(ref).attrs.get("Size") or 0)

    @_reaching
    def images_in_use(self) -> set[str]:
        """Ids of the images any container on the engine (ours or anyone's, running or not) was made from."""
        return {str(row.get("ImageID", "")) for row in self.client.api.containers(all=True)}

    @_reaching
    def remove_image(self, ref: str) -> bool:
        """Remove the tag ``ref`` (its layers go with its last tag); False when a container needs it."""
        from docker.errors import APIError, ImageNotFound

        try:
            self.client.images.remove(ref, noprune=False)
        except ImageNotFound:
            return True
        except APIError as exc:
            if exc.status_code == 409:
                return False
            raise
        return True

    @_reaching
    def build(self, context: str, tag: str, buildargs: Mapping[str, str] | None = None) -> None:
        from docker.errors import BuildError, DockerException

        try:
            self.client.images.build(path=context, tag=tag, buildargs=dict(buildargs or {}), rm=True)
        except BuildError as exc:
            # The error is the engine's own (a registry lookup, a failed RUN); the step says where.
            steps = [
                str(c["stream"]).strip()
                for c in exc.build_log
                if str(c.get("stream", "")).startswith("Step ")
            ]
            where = f" (at {steps[-1][:200]})" if steps else ""
            raise ImageBuildFailed(tag, " ".join(str(exc.msg).split())[:500] + where) from None
        except DockerException as exc:
            raise ImageBuildFailed(tag, _short(exc)) from None

    @_reaching
    def tag(self, source: str, ref: str) -> None:
        repository, _, tag = ref.rpartition(":")
        self.client.images.get(source).tag(repository, tag)

    # -- containers ------------------------------------------------------------

    @contextlib.contextmanager
    def container(
        self,
        image: str,
        *,
        labels: Mapping[str, str],
        command: list[str] | None = None,
        keep: bool | Callable[[], bool] = False,
        **run_options: Any,
    ) -> Iterator[Container]:
        """A started container, removed on exit (unless ``keep``, asked at exit) and on a failed start."""
        from docker.errors import DockerException, ImageNotFound

        created: Container | None = None
        try:
            try:
                created = self.client.containers.create(
                    image,
                    command=command or ["sleep", "infinity"],
                    labels={LABEL_OWNER: session_owner(), **labels},
                    detach=True,
                    **run_options,
                )
                created.start()
            except ImageNotFound:
                raise ImageMissing(image) from None
            except Exception as exc:
                if not isinstance(exc, DockerException) and not unreachable(exc):
                    raise
                raise EngineUnavailable(
                    self.host, f"starting a container from {image} failed: {_short(exc)}"
                ) from None
            yield created
        finally:
            if created is not None and not (keep() if callable(keep) else keep):
                try:
                    self.remove(created)
                except EngineUnavailable as exc:
                    # The item already fails for it; its labels let the session-end sweep or
                    # --pb-cleanup remove the container once the engine is back.
                    log.warning("could not remove container %s: %s", created.short_id, exc)

    @_reaching
    def remove(self, container: Container) -> None:
        """Remove a container; one already gone (404) or being removed by someone else (409) is fine."""
        from docker.errors import APIError, NotFound

        try:
            container.remove(force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            # A workspace of a million files takes the engine a while; a second remover gets 409.
            if exc.status_code != 409:
                raise

    @_reaching
    def supports_disk_quota(self, image: str) -> bool:
        """Whether the engine can cap a container's writable layer (``--storage-opt size``).

        overlay2 can only on xfs with pquota; elsewhere the engine refuses the container,
        so we ask once per engine with a container that is created, never started.
        """
        if self._disk_quota is None:
            from docker.errors import APIError

            try:
                probe = self.client.containers.create(
                    image, ["true"], storage_opt={"size": "1G"}, labels={LABEL_ROLE: "probe"}
                )
            except APIError:
                self._disk_quota = False
            else:
                self.remove(probe)
                self._disk_quota = True
        return self._disk_quota

    @_reaching
    def writable_size(self, container: Container) -> int:
        """Bytes in the container's writable layer (what `docker ps --size` shows)."""
        rows = self.client.api.containers(all=True, size=True, filters={"id": container.id})
        return int(rows[0].get("SizeRw") or 0) if rows else 0

    @_reaching
    def kill(self, container: Container) -> None:
        """SIGKILL the container's init: every process in it dies, the filesystem stays readable."""
        from docker.errors import APIError, NotFound

        with contextlib.suppress(NotFound, APIError):  # APIError: it was not running any more
            container.kill()
        with contextlib.suppress(Exception):
            container.wait(timeout=30)

    @_reaching
    def rename(self, container: Container, name: str) -> None:
        container.rename(name)

    @contextlib.contextmanager
    def archive_stream(self, container: Container | str, path: str) -> Iterator[Iterator[bytes]]:
        """The engine's tar of ``path`` (what docker cp reads), streamed.

        Works on a stopped container and starts no process in it. Leaving the block
        closes the connection, which aborts the engine's copy: until then it holds the
        container (a rename or removal would wait for a copy nobody reads).
        """
        api: Any = self.client.api
        # APIClient.get_archive, minus the generator that hides the response we must close.
        # Private docker-py API (_get, _url, _raise_for_status), used in this module only, here
        # and in the archive stat below; tests/unit/test_private_apis.py checks they exist.
        # identity: otherwise the engine gzips the tar for us to unzip, only to gzip it again.
        container_id = container if isinstance(container, str) else container.id
        response = api._get(
            api._url("/containers/{0}/archive", container_id),
            params={"path": path},
            headers={"Accept-Encoding": "identity"},
            stream=True,
        )
        try:
            api._raise_for_status(response)
            yield response.raw.stream(1 << 20, decode_content=False)
        finally:
            response.close()

    @_reaching
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
                raise EngineUnavailable(self.host, f"exec in {container.short_id} failed: {_short(exc)}")
            raise exc
        code = api.exec_inspect(exec_id).get("ExitCode")
        return ExecResult(
            returncode=-9 if code is None else int(code),
            output=output.text(),
            timed_out=timed_out,
            cut_bytes=output.cut,
        )

    @_reaching
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

    @_reaching
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

    @_reaching
    def copy_out(self, container: Container, path: str, dest: Path) -> None:
        """Stream one regular file out of the container into ``dest``."""
        with dest.open("wb") as out:
            self._copy_file(container, path, out)

    def _copy_file(self, container: Container, path: str, out: BinaryIO) -> None:
        # The archive API wraps the file in a tar, read as a stream: never whole in memory.
        with self.archive_stream(container, path) as chunks:
            reader = io.BufferedReader(ChunkReader(chunks), 1 << 20)
            with tarfile.open(fileobj=reader, mode="r|") as archive:
                member = archive.next()
                extracted = archive.extractfile(member) if member is not None else None
                if extracted is None:
                    raise FileNotFoundError(f"{path} is not a regular file in container {container.short_id}")
                shutil.copyfileobj(extracted, out, 1 << 20)

    def _stream_api(self) -> Any:
        # Long silent commands must not hit the request timeout of the main client.
        if self._streams is None:
            import docker

            self._streams = docker.APIClient(
                base_url=self.host, timeout=STREAM_TIMEOUT_SECONDS, **_transport(self.host)
            )
        return self._streams

    @_reaching
    def read_file(self, container: Container, path: str) -> bytes:
        """The bytes of one regular file in the container (through the archive API, no shell).

        The engine reads as root: for the harness (a kept container, an image's binary), never
        on an agent's behalf; agents read as their own user through ``Sandbox.read_file``.
        """
        buffer = io.BytesIO()
        self._copy_file(container, path, buffer)
        return buffer.getvalue()

    # -- observing a container without running anything in it -------------------

    @_reaching
    def changes(self, container_id: str) -> list[tuple[str, str]]:
        """The container's filesystem changes against its image: (``A``/``C``/``D``, path) pairs.

        On a local overlay2 engine they are read from the container's upper directory, which
        holds exactly what changed (directories only as parents of changes): the engine's own
        diff walks the whole image for that, ten times slower on the self-test task. Elsewhere
        (a remote engine, another storage driver, no access), the engine's diff.
        """
        local = self._overlay_dirs(container_id)
        if local is not None:
            return _overlay_changes(*local)
        kinds = {0: "C", 1: "A", 2: "D"}
        return [(kinds.get(c["Kind"], "?"), c["Path"]) for c in self.client.api.diff(container_id) or []]

    @_reaching
    def written_files(self, container_id: str, roots: tuple[str, ...]) -> list[tuple[str, str]] | None:
        """Regular files under ``roots`` the container added or changed: (path in it, path here).

        Read from the container's overlay upper directory, which holds a whole copy of every
        file the container wrote, so the host path reads what the container would. None
        where that directory is not readable from here (then ask :meth:`archive`).
        """
        local = self._overlay_dirs(container_id)
        return None if local is None else _upper_files(local[0], roots)

    def _overlay_dirs(self, container_id: str) -> tuple[str, list[str]] | None:
        if not self.host.startswith("unix://"):
            return None
        driver = self.client.api.inspect_container(container_id).get("GraphDriver") or {}
        data = driver.get("Data") or {}
        upper, lower = data.get("UpperDir", ""), data.get("LowerDir", "")
        if driver.get("Name") != "overlay2" or not upper or not os.access(upper, os.R_OK | os.X_OK):
            return None
        return upper, [d for d in lower.split(":") if d]

    @_reaching
    def image_config(self, image: str) -> dict[str, Any]:
        """The image's ``Config`` (``Env``, ``User``, ...), as ``docker image inspect`` shows it."""
        return dict(self.client.api.inspect_image(image).get("Config") or {})

    @_reaching
    def image_files(self, image: str, paths: list[str]) -> dict[str, bytes]:
        """Regular files of an image by path (missing ones left out); nothing is started.

        On a local overlay2 engine they are read from the image's layer directories, top
        layer first; elsewhere from a container that is created, read and removed.
        """
        driver = self.client.api.inspect_image(image).get("GraphDriver") or {}
        data = driver.get("Data") or {}
        layers = [data.get("UpperDir", ""), *(data.get("LowerDir") or "").split(":")]
        layers = [d for d in layers if d]
        if (
            self.host.startswith("unix://")
            and driver.get("Name") == "overlay2"
            and layers
            and all(os.access(d, os.R_OK | os.X_OK) for d in layers)
        ):
            return {path: found for path in paths if (found := _layered_file(layers, path)) is not None}
        out: dict[str, bytes] = {}
        created = self.client.containers.create(image, ["true"], labels={LABEL_ROLE: "probe"})
        try:
            for path in paths:
                buffer = io.BytesIO()
                with contextlib.suppress(Exception):  # missing or not a regular file
                    self._copy_file(created, path, buffer)
                    out[path] = buffer.getvalue()
        finally:
            self.remove(created)
        return out

    @_reaching
    def local_processes(self, container_id: str) -> tuple[str, int] | None:
        """Where this host sees the container's processes: (its cgroup's procs file, its init's pid).

        Only for a local engine whose processes share our pid namespace (the pids in the
        procs file are then ours: ``/proc/<pid>/exe`` opens each one's executable, memfd
        included). None elsewhere: a remote engine, another pid namespace, no access.
        """
        if not self.host.startswith("unix://"):
            return None
        pid = int((self.client.api.inspect_container(container_id).get("State") or {}).get("Pid") or 0)
        if pid <= 0:
            return None
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return None
        for procs in cgroup_procs_files(lines):
            try:
                if str(pid) in Path(procs).read_text().split():
                    return procs, pid
            except OSError:
                continue
        return None

    def tmpfs_files(self, container_id: str, pid: int) -> list[tuple[str, str]]:
        """Regular files on the container's writable tmpfs mounts (``/dev/shm``, ``/dev``, ...).

        They are in no layer, and the engine's archive API does not see a private /dev/shm,
        so they are read through ``/proc/<pid>/root`` of the container's init: a local
        engine only (``pid`` from :meth:`local_processes`). (path in it, path here) pairs.
        """
        root = f"/proc/{pid}/root"
        try:
            mounts = writable_tmpfs(Path(f"/proc/{pid}/mountinfo").read_text())
        except OSError:
            return []
        found = []
        for mount in mounts:
            top = root + mount
            try:
                device = os.lstat(top).st_dev
            except OSError:
                continue
            for folder, dirs, names in os.walk(top):
                # Another filesystem mounted below (/dev/mqueue, /dev/pts) is not this mount's.
                dirs[:] = [d for d in dirs if _same_device(os.path.join(folder, d), device)]
                for name in names:
                    full = os.path.join(folder, name)
                    with contextlib.suppress(OSError):
                        info = os.lstat(full)
                        if stat.S_ISREG(info.st_mode) and info.st_dev == device:
                            found.append((full[len(root) :], full))
        return found

    @_reaching
    def is_dir(self, container_id: str, path: str) -> bool:
        """Whether ``path`` is a directory in the container (a stat through the archive API)."""
        import base64
        import json

        api = self.client.api
        response = api.head(api._url("/containers/{0}/archive", container_id), params={"path": path})
        if response.status_code == 404:
            return False
        response.raise_for_status()
        stat = json.loads(base64.b64decode(response.headers.get("X-Docker-Container-Path-Stat", "")))
        return bool(int(stat.get("mode", 0)) & (1 << 31))  # Go's os.ModeDir

    @_reaching
    def processes(self, container_id: str) -> list[str]:
        """Command lines of the processes running in the container (``docker top``)."""
        top = self.client.api.top(container_id)
        titles = top.get("Titles") or []
        rows = top.get("Processes") or []
        if len(titles) == 1 and "CMD" in titles[0].split():
            # Podman 4.x answers each process as one unsplit ps line under one title line; ps starts
            # the last column, the command, where its title starts.
            at = titles[0].index("CMD")
            return [str(row[0])[at:].strip() for row in rows if row]
        column = titles.index("CMD") if "CMD" in titles else len(titles) - 1
        return [str(row[column]) for row in rows]

    @contextlib.contextmanager
    def archive(self, container_id: str, path: str) -> Iterator[BinaryIO]:
        """``path`` in the container as an uncompressed tar stream (file-like, read once).

        A path that does not exist reads as an empty archive.
        """
        from docker.errors import NotFound

        with contextlib.ExitStack() as stack:
            try:
                chunks = stack.enter_context(self.archive_stream(container_id, path))
            except NotFound:
                yield io.BytesIO(_EMPTY_TAR)
                return
            except Exception as exc:
                if unreachable(exc):
                    raise EngineUnavailable(self.host, f"archive: {_short(exc)}") from None
                raise
            yield io.BufferedReader(ChunkReader(chunks), 1 << 20)

    @_reaching
    def labelled(self, labels: Mapping[str, str | None]) -> list[Container]:
        """Containers carrying every label (a None value: the label with any value)."""
        filters = _label_filters(labels)
        # ignore_removed: a container going away between the listing and its inspection is no error.
        return list(self.client.containers.list(all=True, filters=filters, ignore_removed=True))

    @_reaching
    def get(self, container_id: str) -> Container:
        return self.client.containers.get(container_id)

    @_reaching
    def sweep(self, labels: Mapping[str, str | None]) -> int:
        """Remove every container, then every image, carrying all ``labels``; returns how many went.

        Containers kept on purpose (named ``pb-kept-*``: their workspace is the only copy) stay.
        Images matter because the evaluator commits each compile container to an image
        (``programbench-compiled/...``) that inherits the container's labels.
        """
        leftovers = [c for c in self.labelled(labels) if not c.name.startswith(KEPT_PREFIX)]
        for container in leftovers:
            self.remove(container)
        images = self._labelled_images(labels)
        for image in images:
            self._remove_image(image)
        return len(leftovers) + len(images)

    @_reaching
    def sweep_orphans(self, run_id: str | None = None, *, spare_kept: bool = False) -> tuple[int, list[str]]:
        """Remove our containers and images whose session provably ended; returns (removed, what stayed).

        Provably: the owner label names this host and a pid that is not running. A container
        of another host's session, of a live session, or without an owner is left, and said.
        ``run_id`` limits it to one run; ``spare_kept`` leaves ``pb-kept-*`` containers (the
        only copy of a workspace) alone.
        """
        removed, kept = 0, set()
        labels: dict[str, str | None] = {LABEL_RUN: run_id}
        containers = self.labelled(labels)
        if spare_kept:
            containers = [c for c in containers if not c.name.startswith(KEPT_PREFIX)]
        everything: list[tuple[Any, Callable[[Any], None]]] = [
            *((c, self.remove) for c in containers),
            *((i, self._remove_image) for i in self._labelled_images(labels)),
        ]
        for thing, remove in everything:
            owner = (thing.labels or {}).get(LABEL_OWNER, "")
            why = _why_alive(owner)
            if why and owner != session_owner():
                kept.add(why)
                continue
            remove(thing)
            removed += 1
        return removed, sorted(kept)

    def _labelled_images(self, labels: Mapping[str, str | None]) -> list[Any]:
        return list(self.client.images.list(filters=_label_filters(labels)))

    def _remove_image(self, image: Any) -> None:
        from docker.errors import APIError, NotFound

        try:
            self.client.images.remove(image.id, force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # still in use by a container being removed: the next sweep
                raise


_EMPTY_TAR = b"\0" * 1024


def _label_filters(labels: Mapping[str, str | None]) -> dict[str, list[str]]:
    """The engine's filter for things carrying every label (a None value: the label with any value)."""
    return {"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]}


def _overlay_changes(upper: str, lowers: list[str]) -> list[tuple[str, str]]:
    """Changed files of an overlay upper directory, as ``docker diff`` names them.

    A character device 0:0 is overlayfs's mark of a deleted path; any other entry was
    added (no lower layer has it) or changed. Directories are left out: the ones here are
    parents of changes, or empty directories, which change nothing a program reads.
    """
    import stat

    found = []
    for root, dirs, names in os.walk(upper):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = os.path.join(root, name)
            path = "/" + os.path.relpath(full, upper)
            info = os.lstat(full)
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                found.append(("D", path))
            else:
                existed = any(os.path.lexists(lower + path) for lower in lowers)
                found.append(("C" if existed else "A", path))
    return found


def _layered_file(layers: list[str], path: str) -> bytes | None:
    """``path`` as an overlay of ``layers`` (top first) shows it: the topmost copy, unless deleted."""
    import stat

    for layer in layers:
        full = layer + path
        try:
            info = os.lstat(full)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            return None  # a whiteout (deleted), a directory, a link: not a regular file
        with open(full, "rb") as f:
            return f.read()
    return None


def _same_device(path: str, device: int) -> bool:
    try:
        return os.lstat(path).st_dev == device
    except OSError:
        return False


def writable_tmpfs(mountinfo: str) -> list[str]:
    """Mount points of the read-write tmpfs mounts a ``/proc/<pid>/mountinfo`` lists."""
    found = []
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        parts, fs = fields.split(), tail.split()
        if len(parts) < 6 or not fs or fs[0] != "tmpfs":
            continue
        options = set(parts[5].split(",")) | set((fs[2] if len(fs) > 2 else "").split(","))
        if "rw" in options and "ro" not in options:
            found.append(parts[4].encode().decode("unicode_escape"))  # mountinfo escapes spaces as \040
    return found


def cgroup_procs_files(lines: list[str]) -> list[str]:
    """The ``cgroup.procs`` files a process's ``/proc/<pid>/cgroup`` lines point to, likeliest first.

    cgroup v2 (``0::/path``) has one hierarchy at /sys/fs/cgroup; v1 one per controller
    set (``4:pids:/docker/<id>`` at /sys/fs/cgroup/pids), of which the pids one is asked first.
    """
    found = []
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path.startswith("/"):
            continue
        if number == "0" and controllers == "":
            found.append((0, f"/sys/fs/cgroup{path.rstrip('/')}/cgroup.procs"))
        elif controllers and not controllers.startswith("name="):
            rank = 1 if "pids" in controllers.split(",") else 2
            found.append((rank, f"/sys/fs/cgroup/{controllers}{path.rstrip('/')}/cgroup.procs"))
    return [f for _, f in sorted(found, key=lambda rf: rf[0])]


def _upper_files(upper: str, roots: tuple[str, ...]) -> list[tuple[str, str]]:
    """Regular files under each root of an overlay upper directory (whiteouts are devices, left out)."""
    import stat

    found = []
    for root in roots:
        for folder, _, names in os.walk(upper + root):  # symlinks to directories are not followed
            for name in names:
                full = os.path.join(folder, name)
                if stat.S_ISREG(os.lstat(full).st_mode):
                    found.append(("/" + os.path.relpath(full, upper), full))
    return found


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


class ChunkReader(io.RawIOBase):
    """A read-once file over an iterator of byte chunks (an HTTP body), for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


def session_owner() -> str:
    """This process as a container owner: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def item_labels(run_id: str, worker: str, instance_id: str, role: str) -> dict[str, str]:
    """The labels of a container an item's step starts, this session its owner (what a sweep finds)."""
    return {
        LABEL_RUN: run_id,
        LABEL_WORKER: worker,
        LABEL_INSTANCE: instance_id,
        LABEL_ROLE: role,
        LABEL_OWNER: session_owner(),
    }


def _why_alive(owner: str) -> str:
    """Why a thing labelled with ``owner`` may still be in use ('' when its session is provably gone)."""
    host, _, pid = owner.rpartition(":")
    if not owner or not pid.isdigit():
        return "owner unknown (no owner label)"
    if host != socket.gethostname():
        return f"session {owner} on another host"
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return ""
    except PermissionError:
        pass
    return f"running session {owner}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


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
