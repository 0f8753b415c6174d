"""How Engine reads what Docker and Podman answer differently (their answers as recorded, no engine).

Recorded from dockerd 20.10 and from Podman 4.3.1's Docker-compatible API (rootful and
rootless, cgroup v1) on this project's machines.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pytest_programbench.engine.containers import Engine
from pytest_programbench.scoring.integrity import stray_processes

DOCKER_TOP = {
    "Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
    "Processes": [
        ["root", "1", "0", "0", "14:39", "?", "00:00:00", "/sbin/docker-init -- sleep 2h"],
        ["root", "7", "1", "0", "14:39", "?", "00:00:00", "sleep 2h"],
    ],
}
PODMAN_TOP = {  # one title line, and each process one unsplit ps line
    "Titles": ["UID          PID    PPID  C STIME TTY          TIME CMD"],
    "Processes": [
        ["root           1       0 14 14:39 ?        00:00:00 /run/podman-init -- sleep 2h"],
        ["root           6       1  0 14:39 ?        00:00:00 sleep 2h"],
        ["root          31       1  0 14:40 ?        00:00:00 sleep 300"],
    ],
}


class FakeApi:
    def __init__(self, top: dict[str, Any] | None = None, libpod: dict[str, Any] | None = None) -> None:
        self.base_url = "http+docker://localhost"
        self._top, self._libpod = top, libpod

    def top(self, container_id: str) -> dict[str, Any]:
        assert self._top is not None
        return self._top

    def _get(self, url: str) -> str:
        assert url == f"{self.base_url}/v4.0.0/libpod/info"
        return url

    def _result(self, response: str, json: bool = False) -> dict[str, Any]:
        assert self._libpod is not None
        return self._libpod


def engine(api: FakeApi, components: list[str]) -> Engine:
    made = object.__new__(Engine)
    made.host = "unix:///run/fake.sock"
    made._podman = None
    version = {"Components": [{"Name": n} for n in components]}
    made.client = SimpleNamespace(api=api, version=lambda: version)  # type: ignore[assignment]
    return made


def test_the_command_of_each_process_on_docker_and_on_podman() -> None:
    on_docker = engine(FakeApi(DOCKER_TOP), ["Engine", "containerd"])
    assert on_docker.processes("c") == ["/sbin/docker-init -- sleep 2h", "sleep 2h"]
    on_podman = engine(FakeApi(PODMAN_TOP), ["Podman Engine", "Conmon"])
    assert on_podman.processes("c") == ["/run/podman-init -- sleep 2h", "sleep 2h", "sleep 300"]
    # Only what compile.sh left counts; either engine's init and the evaluator's sleep do not.
    assert stray_processes(on_podman.processes("c")) == ["sleep 300"]
    assert stray_processes(on_docker.processes("c")) == []


def test_rootless_podman_on_cgroup_v1_is_known_to_ignore_limits() -> None:
    def libpod(rootless: bool, cgroup: str) -> dict[str, Any]:
        return {"host": {"security": {"rootless": rootless}, "cgroupVersion": cgroup}}

    assert engine(FakeApi(libpod=libpod(True, "v1")), ["Podman Engine"]).ignores_limits()
    assert not engine(FakeApi(libpod=libpod(True, "v2")), ["Podman Engine"]).ignores_limits()
    assert not engine(FakeApi(libpod=libpod(False, "v1")), ["Podman Engine"]).ignores_limits()
    assert not engine(FakeApi(), ["Engine"]).ignores_limits()  # Docker: never asked
