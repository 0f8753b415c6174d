"""Provision: every conversation with a Docker engine goes through this module.

Nothing else in the package imports ``docker``. Containers we start carry labels
naming the run, the xdist worker and the instance, start inside a context manager
that removes them if starting fails, and can be swept by label whatever a crash
left behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_programbench.errors import EngineUnavailable, ImageMissing, ImagePullFailed

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

LABEL_PREFIX = "io.pytest-programbench"
LABEL_RUN = f"{LABEL_PREFIX}.run"
LABEL_WORKER = f"{LABEL_PREFIX}.worker"
LABEL_INSTANCE = f"{LABEL_PREFIX}.instance"
LABEL_ROLE = f"{LABEL_PREFIX}.role"


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    output: str
    timed_out: bool = False


def default_host() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class Engine:
    """One Docker engine, reached through the Docker SDK."""

    def __init__(self, host: str | None = None, *, timeout: int = 300) -> None:
        import docker
        from docker.errors import DockerException

        self.host = host or default_host()
        try:
            self.client: docker.DockerClient = docker.DockerClient(base_url=self.host, timeout=timeout)
            self.client.ping()
        except DockerException as exc:
            raise EngineUnavailable(self.host, _short(exc)) from None
        except OSError as exc:  # a socket that exists but refuses
            raise EngineUnavailable(self.host, _short(exc)) from None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- facts -----------------------------------------------------------------

    def cpu_count(self) -> int:
        return int(self.client.info().get("NCPU") or os.cpu_count() or 1)

    def version(self) -> str:
        return str(self.client.version().get("Version", "unknown"))

    # -- images ----------------------------------------------------------------

    def image_exists(self, ref: str) -> bool:
        from docker.errors import ImageNotFound

        try:
            self.client.images.get(ref)
        except ImageNotFound:
            return False
        return True

    def require_image(self, ref: str, fix: str = "") -> None:
        if not self.image_exists(ref):
            raise ImageMissing(ref, fix)

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

    def build(self, context: str, tag: str, buildargs: Mapping[str, str] | None = None) -> None:
        from docker.errors import BuildError, DockerException

        try:
            self.client.images.build(path=context, tag=tag, buildargs=dict(buildargs or {}), rm=True)
        except BuildError as exc:
            lines = [str(chunk.get("stream", "")).strip() for chunk in exc.build_log if chunk.get("stream")]
            raise ImageMissing(tag, "Building it failed: " + " | ".join(lines[-5:])) from None
        except DockerException as exc:
            raise ImageMissing(tag, f"Building it failed: {_short(exc)}") from None

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
                    labels=dict(labels),
                    detach=True,
                    **run_options,
                )
                created.start()
            except ImageNotFound:
                raise ImageMissing(image) from None
            except DockerException as exc:
                raise EngineUnavailable(
                    self.host, f"starting a container from {image} failed: {_short(exc)}"
                ) from None
            yield created
        finally:
            if created is not None and not keep:
                self.remove(created)

    def remove(self, container: Container) -> None:
        from docker.errors import NotFound

        with contextlib.suppress(NotFound):
            container.remove(force=True, v=True)

    def exec(
        self, container: Container, command: str, *, workdir: str = "/workspace", user: str = ""
    ) -> ExecResult:
        """Run ``command`` under bash in the container and wait for it."""
        result = container.exec_run(["bash", "-c", command], workdir=workdir, user=user, demux=False)
        output = result.output.decode(errors="replace") if result.output else ""
        return ExecResult(returncode=int(result.exit_code), output=output)

    def read_file(self, container: Container, path: str) -> bytes:
        """The bytes of one regular file in the container (through the archive API, no shell)."""
        stream, _ = container.get_archive(path)
        buffer = io.BytesIO(b"".join(stream))
        with tarfile.open(fileobj=buffer) as archive:
            member = archive.next()
            extracted = archive.extractfile(member) if member is not None else None
            if extracted is None:
                raise FileNotFoundError(f"{path} is not a regular file in container {container.short_id}")
            return extracted.read()

    def labelled(self, labels: Mapping[str, str]) -> list[Container]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        return list(self.client.containers.list(all=True, filters=filters))

    def sweep(self, labels: Mapping[str, str]) -> int:
        """Remove every container carrying all ``labels``; returns how many went."""
        leftovers = self.labelled(labels)
        for container in leftovers:
            self.remove(container)
        return len(leftovers)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
