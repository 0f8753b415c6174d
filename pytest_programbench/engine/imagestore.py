"""Images on the engine: found, pulled (with retries where that helps), built, tagged, removed,
and an image's files read without starting it.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import time
from collections.abc import Callable, Mapping
from typing import Any

from pytest_programbench.engine.archives import Archives
from pytest_programbench.engine.client import reaching, short_error
from pytest_programbench.engine.labels import (
    LABEL_ROLE,
)
from pytest_programbench.engine.lifecycle import Lifecycle
from pytest_programbench.errors import ImageBuildFailed, ImageMissing, ImagePullFailed

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


class Images(Archives, Lifecycle):
    """The engine's images."""

    @reaching
    def image_exists(self, ref: str) -> bool:
        from docker.errors import ImageNotFound

        try:
            self.client.images.get(ref)
        except ImageNotFound:
            return False
        return True

    @reaching
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

    @reaching
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
            raise ImagePullFailed(ref, short_error(exc)) from None
        if not self.image_exists(ref):
            raise ImagePullFailed(ref, "the engine reported success but has no such image")

    @reaching
    def image_size(self, ref: str) -> int:
        """Bytes of the image with all its layers (what `docker images` shows as SIZE)."""
        return int(self.client.images.get(ref).attrs.get("Size") or 0)

    @reaching
    def images_in_use(self) -> set[str]:
        """Ids of the images any container on the engine (ours or anyone's, running or not) was made from."""
        return {str(row.get("ImageID", "")) for row in self.client.api.containers(all=True)}

    @reaching
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

    @reaching
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
            raise ImageBuildFailed(tag, short_error(exc)) from None

    @reaching
    def tag(self, source: str, ref: str) -> None:
        repository, _, tag = ref.rpartition(":")
        self.client.images.get(source).tag(repository, tag)

    @reaching
    def image_config(self, image: str) -> dict[str, Any]:
        """The image's ``Config`` (``Env``, ``User``, ...), as ``docker image inspect`` shows it."""
        return dict(self.client.api.inspect_image(image).get("Config") or {})

    @reaching
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


def _layered_file(layers: list[str], path: str) -> bytes | None:
    """``path`` as an overlay of ``layers`` (top first) shows it: the topmost copy, unless deleted."""

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
