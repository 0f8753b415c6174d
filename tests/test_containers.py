"""The Docker module against the real engine: start, exec, labels, cleanup, errors."""

from __future__ import annotations

import uuid

import pytest

from pytest_programbench.engine.containers import LABEL_RUN, Engine
from pytest_programbench.errors import EngineUnavailable, ImageMissing


@pytest.fixture
def run_label() -> dict[str, str]:
    return {LABEL_RUN: f"test-{uuid.uuid4().hex[:8]}"}


def test_container_runs_commands_and_is_removed(
    engine: Engine, base_image: str, run_label: dict[str, str]
) -> None:
    with engine.container(base_image, labels=run_label, network_mode="none") as box:
        assert engine.labelled(run_label)[0].id == box.id
        result = engine.exec(box, "echo hello from $(pwd); exit 3")
        assert (result.returncode, result.output.strip()) == (3, "hello from /workspace")
    assert engine.labelled(run_label) == []


def test_container_is_removed_when_the_body_raises(
    engine: Engine, base_image: str, run_label: dict[str, str]
) -> None:
    with pytest.raises(RuntimeError, match="agent blew up"), engine.container(base_image, labels=run_label):
        raise RuntimeError("agent blew up")
    assert engine.labelled(run_label) == []


def test_failed_start_leaves_nothing(engine: Engine, base_image: str, run_label: dict[str, str]) -> None:
    # Creating succeeds, starting fails (no such program): the created container must go.
    with (
        pytest.raises(EngineUnavailable, match="starting a container"),
        engine.container(base_image, labels=run_label, command=["/no/such/program"]),
    ):
        pytest.fail("the body must not run")
    assert engine.labelled(run_label) == []


def test_missing_image_is_a_typed_error(engine: Engine, run_label: dict[str, str]) -> None:
    with (
        pytest.raises(ImageMissing, match="pytest-programbench/absent:nope is not on the Docker engine"),
        engine.container("pytest-programbench/absent:nope", labels=run_label),
    ):
        pass


def test_keep_then_sweep(engine: Engine, base_image: str, run_label: dict[str, str]) -> None:
    with engine.container(base_image, labels=run_label, keep=True):
        pass
    assert len(engine.labelled(run_label)) == 1
    assert engine.sweep(run_label) == 1
    assert engine.labelled(run_label) == []


def test_no_engine_says_how_to_start_one(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(EngineUnavailable) as info:
        Engine(f"unix://{tmp_path}/nothing.sock", timeout=5)
    assert "no Docker engine answers at unix://" in str(info.value)
    assert "Start one" in str(info.value)
