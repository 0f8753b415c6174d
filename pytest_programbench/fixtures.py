"""Fixtures: the steps of one item, each a fixture a conftest.py may override.

An item asks for ``pb_outcome``; that pulls in, in order, the submission, the task
image, the hidden tests and the engine. Raising in any of them makes the item a
pytest *error* (harness trouble), never a silent zero.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_programbench.containers import Engine
from pytest_programbench.keys import RUN_DIR_KEY, SETTINGS_KEY
from pytest_programbench.model import Instance, Outcome
from pytest_programbench.settings import Settings


@pytest.fixture(scope="session")
def pb_settings(pytestconfig: pytest.Config) -> Settings:
    """The session's resolved ``--pb-*`` settings (read-only)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def pb_engine() -> Iterator[Engine]:
    """The Docker engine this process scores on (``DOCKER_HOST`` or the local socket).

    Override in conftest.py to use another engine.
    """
    with Engine() as engine:
        yield engine


@pytest.fixture(scope="session")
def pb_run_dir(pytestconfig: pytest.Config) -> Path:
    """The run directory (``--pb-output``); ``<id>/submission.tar.gz`` and ``<id>.eval.json`` land here."""
    run_dir = pytestconfig.stash[RUN_DIR_KEY]
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


@pytest.fixture(scope="session")
def pb_shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every xdist worker of this session shares (locks, markers)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = shared / "programbench"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def pb_cpus(pb_settings: Settings, pb_engine: Engine) -> int:
    """CPUs per scoring container: asked for (default the official value) and clamped to the engine.

    The official default (10, or PROGRAMBENCH_DOCKER_CPUS) makes Docker refuse the
    container outright on a smaller host, so it is always clamped.
    """
    from programbench.constants import DOCKER_CPUS

    available = pb_engine.cpu_count()
    wanted = pb_settings.cpus or DOCKER_CPUS
    return max(1, min(wanted, available))


@pytest.fixture
def pb_task(pb_instance: Instance) -> dict[str, Any]:
    """The instance's task.yaml and tests.json, merged as programbench loads them."""
    from pytest_programbench.tasks import load_tests

    return load_tests(pb_instance)


@pytest.fixture
def pb_submission(pb_instance: Instance, pb_settings: Settings, pb_run_dir: Path) -> Path:
    """The ``submission.tar.gz`` to score, placed in the run directory.

    Replay (``--pb-submissions DIR``) takes ``DIR/<id>/submission.tar.gz``. Override
    in conftest.py to produce the archive some other way.
    """
    from pytest_programbench.submissions import check_archive, find_submission, place_submission

    if not pb_settings.submissions_dir:
        raise pytest.UsageError(
            "programbench: nothing produces submissions in this session; give --pb-submissions DIR "
            "to score an existing run"
        )
    source = find_submission(Path(pb_settings.submissions_dir), pb_instance.instance_id)
    check_archive(source)
    return place_submission(source, pb_run_dir, pb_instance.instance_id)


@pytest.fixture
def pb_image(
    pb_instance: Instance,
    pb_engine: Engine,
    pb_settings: Settings,
    pb_shared_dir: Path,
    pytestconfig: pytest.Config,
) -> str:
    """The task image reference, present on the engine (pulled once per session if allowed)."""
    from pytest_programbench.images import ensure_image
    from pytest_programbench.progress import announcer

    announce = announcer(pytestconfig)

    if pb_settings.selftest:
        from pytest_programbench.images import ensure_selftest_image

        ensure_selftest_image(pb_engine, pb_instance.image_ref, lock_dir=pb_shared_dir, progress=announce)
    else:
        ensure_image(
            pb_engine,
            pb_instance.image_ref,
            policy=pb_settings.pull,
            lock_dir=pb_shared_dir,
            progress=announce,
        )
    return pb_instance.image_ref


@pytest.fixture
def pb_hidden_tests(pb_instance: Instance, pb_task: dict[str, Any], pb_settings: Settings) -> Path:
    """The directory holding ``tests/<branch>.tar.gz`` for every active branch."""
    from programbench.utils.load_data import get_active_branches

    from pytest_programbench.hidden_tests import fetch_hidden_tests

    blob_dir = Path(pb_settings.blob_dir) if pb_settings.blob_dir else None
    return fetch_hidden_tests(pb_instance.instance_id, get_active_branches(pb_task), blob_dir=blob_dir)


@pytest.fixture
def pb_outcome(
    pb_instance: Instance,
    pb_submission: Path,
    pb_task: dict[str, Any],
    pb_image: str,
    pb_hidden_tests: Path,
    pb_cpus: int,
    pb_run_dir: Path,
) -> Outcome:
    """The instance's score from the official evaluator, written to ``<id>.eval.json``."""
    from pytest_programbench.scoring import score_submission

    return score_submission(
        pb_instance, pb_submission, blob_dir=pb_hidden_tests, run_dir=pb_run_dir, cpus=pb_cpus, task=pb_task
    )
