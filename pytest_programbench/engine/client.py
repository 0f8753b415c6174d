"""Reaching one engine: the SDK imported as cheaply as the host allows, its transport, the
engine's facts, and the one error users see when it stops answering (EngineUnavailable).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from pytest_programbench.errors import EngineUnavailable

if TYPE_CHECKING:
    import docker


log = logging.getLogger("pytest_programbench")
_T = TypeVar("_T")
_P = ParamSpec("_P")
_E = TypeVar("_E", bound="EngineBase")


def unreachable(exc: BaseException) -> bool:
    """Is ``exc`` the engine not answering (dead, restarting, hung), rather than a refusal?"""
    import requests

    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))


def reaching(method: Callable[Concatenate[_E, _P], _T]) -> Callable[Concatenate[_E, _P], _T]:
    """Turn a lost connection to the engine into EngineUnavailable, the one error users see for it."""

    def call(self: _E, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if unreachable(exc):
                raise EngineUnavailable(self.host, f"{method.__name__}: {short_error(exc)}") from None
            raise

    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


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


STREAM_TIMEOUT_SECONDS = 7 * 24 * 3600


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


class EngineBase:
    """The connection to one engine and what it says of itself; the other jobs are mixins on it."""

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
            raise EngineUnavailable(self.host, short_error(exc)) from None
        except OSError as exc:  # a socket that exists but refuses
            raise EngineUnavailable(self.host, short_error(exc)) from None

    def close(self) -> None:
        if self._streams is not None:
            self._streams.close()
        self.client.close()

    @reaching
    def alive(self, timeout: float) -> None:
        """Ping with a short deadline: EngineUnavailable rather than a wait as long as a pull's."""
        api: Any = self.client.api
        api._raise_for_status(api._get(api._url("/_ping"), timeout=timeout))

    @reaching
    def info(self) -> dict[str, Any]:
        return dict(self.client.info())

    def cpu_count(self) -> int:
        if self._cpus is None:
            self._cpus = int(self.info().get("NCPU") or os.cpu_count() or 1)
        return self._cpus

    @reaching
    def version(self) -> str:
        return str(self.client.version().get("Version", "unknown"))

    @reaching
    def is_podman(self) -> bool:
        """Whether the engine is Podman serving the Docker API (its version names a "Podman Engine")."""
        if self._podman is None:
            components = self.client.version().get("Components") or []
            self._podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
        return self._podman

    @reaching
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

    def _stream_api(self) -> Any:
        # Long silent commands must not hit the request timeout of the main client.
        if self._streams is None:
            import docker

            self._streams = docker.APIClient(
                base_url=self.host, timeout=STREAM_TIMEOUT_SECONDS, **_transport(self.host)
            )
        return self._streams
