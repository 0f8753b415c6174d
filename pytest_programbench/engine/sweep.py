"""Finding our containers and images by label, and removing what a crash or an ended session left."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pytest_programbench.engine.client import reaching
from pytest_programbench.engine.labels import (
    KEPT_PREFIX,
    LABEL_OWNER,
    LABEL_RUN,
    label_filters,
    session_owner,
    why_alive,
)
from pytest_programbench.engine.lifecycle import Lifecycle

if TYPE_CHECKING:
    from docker.models.containers import Container


class Sweeping(Lifecycle):
    """Labelled containers and images, and their removal."""

    @reaching
    def labelled(self, labels: Mapping[str, str | None]) -> list[Container]:
        """Containers carrying every label (a None value: the label with any value)."""
        filters = label_filters(labels)
        # ignore_removed: a container going away between the listing and its inspection is no error.
        return list(self.client.containers.list(all=True, filters=filters, ignore_removed=True))

    @reaching
    def get(self, container_id: str) -> Container:
        return self.client.containers.get(container_id)

    @reaching
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

    @reaching
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
            why = why_alive(owner)
            if why and owner != session_owner():
                kept.add(why)
                continue
            remove(thing)
            removed += 1
        return removed, sorted(kept)

    def _labelled_images(self, labels: Mapping[str, str | None]) -> list[Any]:
        return list(self.client.images.list(filters=label_filters(labels)))

    def _remove_image(self, image: Any) -> None:
        from docker.errors import APIError, NotFound

        try:
            self.client.images.remove(image.id, force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # still in use by a container being removed: the next sweep
                raise
