"""Shared fixtures of the test suite: a real Docker engine and the images CI builds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import programbench.eval.eval_batch
import programbench.utils.blob_store
import pytest

# Imported before any test: pytester drops the modules a test imported when it ends, and
# a yaml imported again no longer matches its cached C loader ("could not determine a
# constructor for the tag None"), which broke in-process sessions after test_resume.
import yaml  # noqa: F401
from engines import LOCK, SecondEngine
from support import BASE_IMAGE

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_RUN, Engine

# Imported once, before any in-process pytester session: pytester restores sys.modules after
# each one, and a blob_store imported inside it would come back as a fresh copy that the
# parity tests' BLOB_LOCAL_DIR monkeypatch never reaches (the official side then asks the hub).
assert programbench.eval.eval_batch and programbench.utils.blob_store


#: Options of every pytest session a test starts (pytester's, a subprocess's, their xdist workers').
#: anyio's pytest plugin comes with httpx (huggingface_hub's dependency) and imports trio, which
#: selenium (the dev extra) installs: about 0.5 s of CPU in each interpreter, and a session with
#: -n 2 is three of them. The suite starts hundreds of sessions and none of them uses anyio.
CHILD_ADDOPTS = "-p no:anyio"


@pytest.fixture(scope="session", autouse=True)
def _child_sessions_options() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTEST_ADDOPTS", CHILD_ADDOPTS)
        yield


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, whose sessions get CHILD_ADDOPTS too (pytester clears PYTEST_ADDOPTS when it starts)."""
    monkeypatch.setenv("PYTEST_ADDOPTS", CHILD_ADDOPTS)
    return pytester


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The real engine. Its absence is an error, not a skip: CI always has one."""
    with Engine() as eng:
        yield eng


@pytest.fixture(scope="session")
def base_image(engine: Engine) -> str:
    engine.require_image(BASE_IMAGE, "Build it with images/base/build-offline.sh (what .ci/run does)")
    return BASE_IMAGE


@pytest.fixture(scope="session")
def selftest_image(engine: Engine, base_image: str) -> str:
    """The self-test task image, built from images/selftest (cached layers make this ~1 s)."""
    ref = f"{selftest.image_name()}:{selftest.IMAGE_TAG}"
    engine.build(str(selftest.image_context()), ref, {"BASE": base_image})
    return ref


@pytest.fixture(scope="module")
def engine_b(selftest_image: str) -> Iterator[SecondEngine]:
    """A second dockerd (tests/engines.py) holding the self-test image; stopped when the module ends.

    One module at a time, across xdist workers: their tests kill and stop that engine.
    """
    from filelock import FileLock

    with FileLock(LOCK):
        second = SecondEngine()
        second.start()
        second.load(selftest_image)
        yield second
        second.start()  # a test may have left it dead; leave it clean and stopped
        with Engine(second.host) as eng:
            eng.sweep({LABEL_RUN: None})
        second.stop()


@pytest.fixture(scope="session")
def reference_executable(engine: Engine, selftest_image: str) -> bytes:
    with engine.container(selftest_image, labels={LABEL_RUN: "test-reference"}, network_mode="none") as box:
        return engine.read_file(box, "/workspace/executable")


@pytest.fixture(scope="session")
def selftest_blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return selftest.write_blob_dir(tmp_path_factory.mktemp("blobs"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Untag what this process tagged, failed tests or not (a worker removes its own)."""
    from support import remove_created_tags

    remove_created_tags()
