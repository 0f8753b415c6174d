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
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Concatenate, ParamSpec, TypeVar

from pytest_programbench.errors import EngineUnavailable, ImageMissing, ImagePullFailed

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


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    output: str
    timed_out: bool = False


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


def default_host() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class Engine:
    """One Docker engine, reached through the Docker SDK."""

    def __init__(self, host: str | None = None, *, timeout: int = 300) -> None:
        import docker
        from docker.errors import DockerException

        self.host = host or default_host()
        self._streams: Any = None
        try:
            self.client: docker.DockerClient = docker.DockerClient(base_url=self.host, timeout=timeout)
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
    def cpu_count(self) -> int:
        return int(self.client.info().get("NCPU") or os.cpu_count() or 1)

    @_reaching
    def version(self) -> str:
        return str(self.client.version().get("Version", "unknown"))

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
    def pull(self, ref: str, progress: Callable[[str], None] | None = None) -> None:
        """Pull ``ref``; ``progress`` gets one line per layer status change."""
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
    def build(self, context: str, tag: str, buildargs: Mapping[str, str] | None = None) -> None:
        from docker.errors import BuildError, DockerException

        try:
            self.client.images.build(path=context, tag=tag, buildargs=dict(buildargs or {}), rm=True)
        except BuildError as exc:
            lines = [str(chunk.get("stream", "")).strip() for chunk in exc.build_log if chunk.get("stream")]
            raise ImageMissing(tag, "Building it failed: " + " | ".join(lines[-5:])) from None
        except DockerException as exc:
            raise ImageMissing(tag, f"Building it failed: {_short(exc)}") from None

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
        keep: bool = False,
        **run_options: Any,
    ) -> Iterator[Container]:
        """A started container, removed on exit (unless ``keep``) and on a failed start."""
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
            if created is not None and not keep:
                try:
                    self.remove(created)
                except EngineUnavailable as exc:
                    # The item already fails for it; its labels let the session-end sweep or
                    # --pb-cleanup remove the container once the engine is back.
                    log.warning("could not remove container %s: %s", created.short_id, exc)

    @_reaching
    def remove(self, container: Container) -> None:
        """Remove ``container`` and its volumes; one already gone, or going, is fine."""
        from docker.errors import APIError, NotFound

        try:
            container.remove(force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # "removal already in progress": someone else is removing it
                raise

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
        chunks: list[bytes] = []
        failure: list[BaseException] = []

        def pump() -> None:
            try:
                for chunk in api.exec_start(exec_id, stream=True):
                    chunks.append(chunk)
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
        output = b"".join(chunks).decode(errors="replace")
        return ExecResult(returncode=-9 if code is None else int(code), output=output, timed_out=timed_out)

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
        container.exec_run(["sh", "-c", script], user=user)

    @_reaching
    def kill_all(self, container: Container) -> None:
        """SIGKILL every process in the container but its init (and the killer itself)."""
        container.exec_run(["sh", "-c", "kill -9 -1 2>/dev/null; true"], user="0")

    @_reaching
    def put_file(self, container: Container, path: str, data: bytes, *, mode: int, owner: int) -> None:
        """Write one file into the container through the archive API (no shell, no host path)."""
        directory, _, name = path.rpartition("/")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.uid = info.gid = owner
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(data))
        if not container.put_archive(directory or "/", buffer.getvalue()):
            raise OSError(f"writing {path} into container {container.short_id} failed")

    @_reaching
    def copy_out(self, container: Container, path: str, dest: Path) -> None:
        """Stream one regular file out of the container into ``dest``."""
        with dest.open("wb") as out:
            self._copy_file(container, path, out)

    def _copy_file(self, container: Container, path: str, out: BinaryIO) -> None:
        # The archive API wraps the file in a tar; spooled, so a small file stays in memory
        # and a large one (a workspace archive) never is.
        stream, _ = container.get_archive(path)
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
            for chunk in stream:
                spool.write(chunk)
            spool.seek(0)
            with tarfile.open(fileobj=spool) as archive:
                member = archive.next()
                extracted = archive.extractfile(member) if member is not None else None
                if extracted is None:
                    raise FileNotFoundError(f"{path} is not a regular file in container {container.short_id}")
                shutil.copyfileobj(extracted, out, 1 << 20)

    def _stream_api(self) -> Any:
        # Long silent commands must not hit the request timeout of the main client.
        if self._streams is None:
            import docker

            self._streams = docker.APIClient(base_url=self.host, timeout=STREAM_TIMEOUT_SECONDS)
        return self._streams

    @_reaching
    def read_file(self, container: Container, path: str) -> bytes:
        """The bytes of one regular file in the container (through the archive API, no shell)."""
        buffer = io.BytesIO()
        self._copy_file(container, path, buffer)
        return buffer.getvalue()

    # -- observing a container without running anything in it -------------------

    @_reaching
    def changes(self, container_id: str) -> list[tuple[str, str]]:
        """The container's filesystem diff against its image: (``A``/``C``/``D``, path) pairs."""
        kinds = {0: "C", 1: "A", 2: "D"}
        return [(kinds.get(c["Kind"], "?"), c["Path"]) for c in self.client.api.diff(container_id) or []]

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
        column = titles.index("CMD") if "CMD" in titles else len(titles) - 1
        return [str(row[column]) for row in top.get("Processes") or []]

    @contextlib.contextmanager
    def archive(self, container_id: str, path: str) -> Iterator[BinaryIO]:
        """``path`` in the container as an uncompressed tar stream (file-like, read once)."""
        from docker.errors import NotFound

        try:
            stream, _ = self.client.api.get_archive(container_id, path, chunk_size=1 << 20)
        except NotFound:
            stream = iter([_EMPTY_TAR])
        except Exception as exc:
            if unreachable(exc):
                raise EngineUnavailable(self.host, f"archive: {_short(exc)}") from None
            raise
        reader = io.BufferedReader(_ChunkReader(stream), 1 << 20)
        try:
            yield reader
        finally:
            reader.close()

    @_reaching
    def labelled(self, labels: Mapping[str, str | None]) -> list[Container]:
        """Containers carrying every label (a None value: the label with any value)."""
        filters = {"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]}
        return list(self.client.containers.list(all=True, filters=filters))

    @_reaching
    def sweep(self, labels: Mapping[str, str | None]) -> int:
        """Remove every container, then every image, carrying all ``labels``; returns how many went.

        Images matter because the evaluator commits each compile container to an image
        (``programbench-compiled/...``) that inherits the container's labels.
        """
        leftovers = self.labelled(labels)
        for container in leftovers:
            self.remove(container)
        images = self._labelled_images(labels)
        for image in images:
            self._remove_image(image.id)
        return len(leftovers) + len(images)

    @_reaching
    def sweep_orphans(self) -> tuple[int, list[str]]:
        """Remove our containers and images whose session provably ended; returns (removed, what stayed).

        Provably: the owner label names this host and a pid that is not running. A container
        of another host's session, of a live session, or without an owner is left, and said.
        """
        removed, kept = 0, set()
        for thing in [*self.labelled({LABEL_RUN: None}), *self._labelled_images({LABEL_RUN: None})]:
            owner = (thing.labels or {}).get(LABEL_OWNER, "")
            why = _why_alive(owner)
            if why and owner != session_owner():
                kept.add(why)
                continue
            if hasattr(thing, "remove") and hasattr(thing, "status"):
                self.remove(thing)
            else:
                self._remove_image(thing.id)
            removed += 1
        return removed, sorted(kept)

    def _labelled_images(self, labels: Mapping[str, str | None]) -> list[Any]:
        filters = {"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]}
        return list(self.client.images.list(filters=filters))

    def _remove_image(self, image_id: str) -> None:
        from docker.errors import APIError, NotFound

        try:
            self.client.images.remove(image_id, force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # still in use by a container being removed: the next sweep
                raise


_EMPTY_TAR = b"\0" * 1024


class _ChunkReader(io.RawIOBase):
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
