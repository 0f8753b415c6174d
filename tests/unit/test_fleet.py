"""Several engines: parsing --pb-docker-host, spreading workers by slots, the CPU share (pure logic)."""

from __future__ import annotations

import pytest

from pytest_programbench.engine.fleet import EngineSpec, FleetSettings, cli_env, parse_engine, scoring_cpus


@pytest.mark.parametrize(
    ("text", "url", "slots"),
    [
        ("unix:///run/docker.sock", "unix:///run/docker.sock", 1),
        ("ssh://build2=8", "ssh://build2", 8),
        ("tcp://10.0.0.2:2376=3", "tcp://10.0.0.2:2376", 3),
        ("ssh://me@box", "ssh://me@box", 1),
    ],
)
def test_an_engine_is_a_url_with_optional_slots(text: str, url: str, slots: int) -> None:
    assert parse_engine(text, "--pb-docker-host") == EngineSpec(url, slots)


@pytest.mark.parametrize("text", ["http://x", "/run/docker.sock", "unix://", "ssh://b=0", "tcp:/x"])
def test_a_bad_engine_is_a_usage_error_naming_the_option(text: str) -> None:
    with pytest.raises(
        pytest.UsageError, match=r"--pb-docker-host=.* is not valid; (expected unix://|SLOTS)"
    ):
        parse_engine(text, "--pb-docker-host")


def test_workers_spread_over_engines_in_proportion_to_their_slots() -> None:
    fleet = FleetSettings((EngineSpec("unix:///a", 2), EngineSpec("ssh://b", 1)))
    assert [fleet.for_worker(i).url for i in range(6)] == ["unix:///a", "ssh://b", "unix:///a"] * 2
    assert (fleet.workers_on("unix:///a", 4), fleet.workers_on("ssh://b", 4)) == (3, 1)
    equal = FleetSettings((EngineSpec("unix:///a"), EngineSpec("unix:///b")))
    assert [equal.for_worker(i).url for i in range(4)] == ["unix:///a", "unix:///b"] * 2


@pytest.mark.parametrize(
    ("cores", "wanted", "workers", "branch_workers", "cpus"),
    [
        (16, 10, 1, 1, 10),  # the official 10 when the engine is alone
        (16, 10, 16, 1, 1),  # 16 workers on 16 cores: one each, not 160 asked of 16
        (16, 10, 4, 1, 4),
        (16, 10, 2, 2, 4),  # branch workers share too
        (2, 2, 4, 1, 1),  # oversubscribed: never below 1
        (64, 6, 2, 1, 6),  # never above --pb-cpus
    ],
)
def test_a_scoring_container_gets_its_share_of_the_engine(
    cores: int, wanted: int, workers: int, branch_workers: int, cpus: int
) -> None:
    assert scoring_cpus(cores, wanted, workers, branch_workers) == cpus


def test_the_docker_cli_is_pointed_at_the_items_engine_alone() -> None:
    base = {"PATH": "/bin", "DOCKER_CONTEXT": "prod", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/c"}
    unix = cli_env("unix:///run/b.sock", base)
    assert unix == {"PATH": "/bin", "DOCKER_HOST": "unix:///run/b.sock"}
    tcp = cli_env("tcp://h:2376", base)
    assert tcp == {
        "PATH": "/bin",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": "/c",
        "DOCKER_HOST": "tcp://h:2376",
    }
