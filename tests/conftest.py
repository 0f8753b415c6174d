"""Shared fixtures of the test suite: a real Docker engine and the images CI builds."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import programbench.eval.eval_batch
import programbench.utils.blob_store
import pytest

# Imported before any test: pytester drops the modules a test imported when it ends, and
# a yaml imported again no longer matches its cached C loader ("could not determine a
# constructor for the tag None"), which broke in-process sessions after test_resume.
import yaml  # noqa: F401
from engines import SecondEngine

from pytest_programbench import selftest
from pytest_programbench.containers import LABEL_INSTANCE, LABEL_RUN, Engine

# Imported once, before any in-process pytester session: pytester restores sys.modules after
# each one, and a blob_store imported inside it would come back as a fresh copy that the
# parity tests' BLOB_LOCAL_DIR monkeypatch never reaches (the official side then asks the hub).
assert programbench.eval.eval_batch and programbench.utils.blob_store

#: Built by images/base/build-offline.sh (CI) or from debian:bookworm-slim.
BASE_IMAGE = os.environ.get("PB_TEST_BASE_IMAGE", "pytest-programbench/base:bookworm")


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

    with FileLock("/tmp/pb-test-engine-b.lock"):
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


def clone_selftest(engine: Engine, root: Path, names: list[str]) -> tuple[Path, Path, list[str]]:
    """The self-test task under several instance ids: tasks dir, blob dir, image tagged per id.

    Lets one session score several submissions (one per instance id) with one image.
    """
    from programbench.constants import image_name_from_instance_id

    tasks, blobs = root / "tasks", root / "blobs"
    selftest.write_blob_dir(blobs)
    source_task = selftest.tasks_dir() / selftest.INSTANCE_ID
    ids = []
    for name in names:
        iid = f"pbselftest__{name.replace('_', '-')}.5e1f7a0"
        shutil.copytree(source_task, tasks / iid)
        shutil.copytree(blobs / selftest.INSTANCE_ID, blobs / iid)
        engine.tag(
            f"{selftest.image_name()}:{selftest.IMAGE_TAG}",
            f"{image_name_from_instance_id(iid)}:{selftest.IMAGE_TAG}",
        )
        ids.append(iid)
    return tasks, blobs, ids


class CreationWatch:
    """The images of the containers the engine creates while a ``with`` block runs.

    Read live from the engine's event stream: the engine replays only its last 256
    events and a scoring session emits far more (each exec is three), so asking
    afterwards loses some. A container of our own, created on exit, marks the end of
    the block's events, so nothing is cut off and nothing is waited for blindly.
    """

    def __init__(self, engine: Engine, marker_image: str) -> None:
        self.engine = engine
        self.marker_image = marker_image
        self.images: list[str] = []
        self.instances: list[tuple[str, str]] = []  # (instance label, image) of each container
        self._created: list[tuple[str, str, str]] = []  # (container id, image, instance label)
        self._ids: set[str] = set()
        self._seen = threading.Condition()

    def __enter__(self) -> CreationWatch:
        self._start_ns = time.time_ns()
        self._stream = self.engine.client.events(
            since=self._start_ns // 10**9 - 1, decode=True, filters={"type": "container", "event": "create"}
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends by being closed under us
            for event in self._stream:
                with self._seen:
                    container = event.get("Actor", {}).get("ID") or event.get("id", "")
                    if int(event.get("timeNano", 0)) >= self._start_ns:
                        attributes = event.get("Actor", {}).get("Attributes", {})
                        label = attributes.get(LABEL_INSTANCE, "")
                        self._created.append((container, event.get("from", ""), label))
                    self._ids.add(container)
                    self._seen.notify_all()

    def __exit__(self, *exc_info: object) -> None:
        with self.engine.container(self.marker_image, labels={LABEL_RUN: "test-event-marker"}) as box:
            marker = box.id
        with self._seen:
            seen = self._seen.wait_for(lambda: marker in self._ids, timeout=60)
        self._stream.close()
        self._reader.join(timeout=10)
        assert seen, "the engine's event stream never showed the marker container"
        self.images = [image for container, image, _ in self._created if container != marker]
        self.instances = [(label, image) for container, image, label in self._created if container != marker]

    def count(self, prefix: str) -> int:
        return sum(image.startswith(prefix) for image in self.images)

    def of(self, instance_id: str) -> dict[str, int]:
        """An instance's containers by our label: off the task image (its sandbox, the compile),
        and off the image the evaluator committed (one per branch tested).

        By label, not by image name: they start from the pinned image id, which clones share.
        """
        images = [image for label, image in self.instances if label == instance_id]
        branches = sum(image.startswith("programbench-compiled/") for image in images)
        return {"task": len(images) - branches, "branches": branches}


def wait_for(
    path: Path, pattern: str = "", proc: subprocess.Popen[bytes] | None = None, timeout: float = 180
) -> None:
    """Until a line of ``path`` matches the regular expression ``pattern`` ('': until it exists).

    Fails at once, with its output, if ``proc`` (the session being watched) ends first.
    Patterns never hold timing text: a loaded machine starts things late.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and re.search(pattern, path.read_text(), re.MULTILINE):
            return
        if proc is not None and proc.poll() is not None:
            said = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"the session ended before {pattern!r} matched in {path}: {said}")
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} never matched a line of {path}")


def session_options(root: Path, out: Path, *extra: str) -> list[str]:
    """A session over the tasks and blobs under ``root`` (see clone_selftest), its run in ``out``."""
    return [
        f"--pb-tasks-dir={root / 'tasks'}",
        f"--pb-blob-dir={root / 'blobs'}",
        f"--pb-output={out}",
        f"--pb-report={out / 'report.json'}",
        "--pb-cpus=1",
        "--pb-pull=never",
        *extra,
    ]


def session_command(*args: str) -> list[str]:
    """A whole pytest session in a process of its own, without a cache to share between tests."""
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def only_row(report: dict[str, Any]) -> dict[str, Any]:
    """The one instance row of a single-item session's --pb-report."""
    [row] = report["instances"]
    return dict(row)


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan stays a zombie until some init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
