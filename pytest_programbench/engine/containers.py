"""Provision: every conversation with a Docker engine goes through ``Engine``.

Nothing outside ``engine/`` imports ``docker``. ``Engine`` is put together from one mixin per
job, each in its own module:

- ``client``: the connection, how the SDK is imported and reaches the host, the engine's facts;
- ``lifecycle``: containers started inside a context manager that removes them if starting fails;
- ``execs``: commands with bounded output, and the marker that kills all they started;
- ``archives``: a container's files through the archive API, with no process in it;
- ``imagestore``: images found, pulled, built, tagged, removed, and read without a container;
- ``observe``: a container's changes, processes and tmpfs files, seen from the host;
- ``sweep``: our containers and images by label (``labels``), and removing what a crash left.

The names other modules use are imported from here, so that is the one place to look.
"""

from __future__ import annotations

from pytest_programbench.engine.archives import Archives, ChunkReader, stream_errors
from pytest_programbench.engine.client import EngineBase, default_host, docker_sdk, unreachable
from pytest_programbench.engine.execs import EXEC_MARKER, BoundedOutput, ExecResult, Execs, RawResult
from pytest_programbench.engine.imagestore import Images, pull_failure_kind
from pytest_programbench.engine.labels import (
    KEPT_PREFIX,
    LABEL_INSTANCE,
    LABEL_OWNER,
    LABEL_PREFIX,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_WORKER,
    item_labels,
    session_owner,
)
from pytest_programbench.engine.lifecycle import Lifecycle
from pytest_programbench.engine.observe import Observing, cgroup_procs_files, writable_tmpfs
from pytest_programbench.engine.sweep import Sweeping

__all__ = [
    "EXEC_MARKER",
    "KEPT_PREFIX",
    "LABEL_INSTANCE",
    "LABEL_OWNER",
    "LABEL_PREFIX",
    "LABEL_ROLE",
    "LABEL_RUN",
    "LABEL_WORKER",
    "Archives",
    "BoundedOutput",
    "ChunkReader",
    "Engine",
    "EngineBase",
    "ExecResult",
    "Execs",
    "Images",
    "Lifecycle",
    "Observing",
    "RawResult",
    "Sweeping",
    "cgroup_procs_files",
    "default_host",
    "docker_sdk",
    "item_labels",
    "pull_failure_kind",
    "session_owner",
    "stream_errors",
    "unreachable",
    "writable_tmpfs",
]


class Engine(Images, Execs, Observing, Sweeping):
    """One Docker engine, reached through the Docker SDK."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
