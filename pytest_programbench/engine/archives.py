"""Files out of a container through the engine's archive API: no process runs in it."""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pytest_programbench.engine.client import EngineBase, reaching, short_error, unreachable
from pytest_programbench.errors import EngineUnavailable

if TYPE_CHECKING:
    from docker.models.containers import Container


def stream_errors() -> tuple[type[Exception], ...]:
    """What a broken archive stream raises besides OSError and EOFError (docker-py's own errors),
    for a caller outside engine/ that reads one (the sandbox's packing) and imports no docker."""
    from docker.errors import DockerException

    return (DockerException,)


class Archives(EngineBase):
    """Reading a container's files as the engine's tar stream."""

    @contextlib.contextmanager
    def archive_stream(self, container: Container | str, path: str) -> Iterator[Iterator[bytes]]:
        """The engine's tar of ``path`` (what docker cp reads), streamed.

        Works on a stopped container and starts no process in it. Leaving the block
        closes the connection, which aborts the engine's copy: until then it holds the
        container (a rename or removal would wait for a copy nobody reads).
        """
        api: Any = self.client.api
        # APIClient.get_archive, minus the generator that hides the response we must close.
        # Private docker-py API (_get, _url, _raise_for_status), used in engine/ only: here, in the
        # archive stat below and in client.py; tests/unit/test_private_apis.py checks they exist.
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
                    raise EngineUnavailable(self.host, f"archive: {short_error(exc)}") from None
                raise
            yield io.BufferedReader(ChunkReader(chunks), 1 << 20)

    @reaching
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

    @reaching
    def read_file(self, container: Container, path: str) -> bytes:
        """The bytes of one regular file in the container (through the archive API, no shell).

        The engine reads as root: for the harness (a kept container, an image's binary), never
        on an agent's behalf; agents read as their own user through ``Sandbox.read_file``.
        """
        buffer = io.BytesIO()
        self._copy_file(container, path, buffer)
        return buffer.getvalue()

    @reaching
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


_EMPTY_TAR = b"\0" * 1024


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
