"""A container's life: started inside a context manager that removes it, killed, renamed, sized."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pytest_programbench.engine.client import EngineBase, log, reaching, short_error, unreachable
from pytest_programbench.engine.labels import (
    LABEL_OWNER,
    LABEL_ROLE,
    session_owner,
)
from pytest_programbench.errors import EngineUnavailable, ImageMissing

if TYPE_CHECKING:
    from docker.models.containers import Container


class Lifecycle(EngineBase):
    """Starting, stopping and removing containers."""

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
                    self.host, f"starting a container from {image} failed: {short_error(exc)}"
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

    @reaching
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

    @reaching
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

    @reaching
    def writable_size(self, container: Container) -> int:
        """Bytes in the container's writable layer (what `docker ps --size` shows)."""
        rows = self.client.api.containers(all=True, size=True, filters={"id": container.id})
        return int(rows[0].get("SizeRw") or 0) if rows else 0

    @reaching
    def kill(self, container: Container) -> None:
        """SIGKILL the container's init: every process in it dies, the filesystem stays readable."""
        from docker.errors import APIError, NotFound

        with contextlib.suppress(NotFound, APIError):  # APIError: it was not running any more
            container.kill()
        with contextlib.suppress(Exception):
            container.wait(timeout=30)

    @reaching
    def rename(self, container: Container, name: str) -> None:
        container.rename(name)
