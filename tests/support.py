"""Helpers the real-engine tests share: import them from here (``from support import ...``).

Fixtures stay in conftest.py; plain functions and classes live here, so no test module
imports conftest.py or another test module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_INSTANCE, LABEL_RUN, Engine

#: Built by images/base/build-offline.sh (CI) or from debian:bookworm-slim.
BASE_IMAGE = os.environ.get("PB_TEST_BASE_IMAGE", "pytest-programbench/base:bookworm")

#: Tags this process created on the engine; the session's end (conftest.py) removes those still there.
CREATED_TAGS: set[str] = set()

#: Makes this process's clone ids (and so their image tags) its own: an xdist worker, or
#: another session on a shared engine, never removes a tag this one still uses.
SESSION_TOKEN = uuid.uuid4().hex[:6]


def created_tag(ref: str) -> str:
    """Record ``ref`` as a tag the suite made, so the session removes it at the end."""
    CREATED_TAGS.add(ref)
    return ref


def remove_created_tags() -> None:
    """Untag every tag recorded with created_tag (an image with other tags is only untagged)."""
    if not CREATED_TAGS:
        return
    from docker.errors import DockerException, NotFound

    with Engine() as eng:
        for ref in sorted(CREATED_TAGS):
            try:
                eng.client.images.remove(ref)
            except NotFound:
                pass  # removed already, by its test or the plugin's sweep
            except DockerException as exc:
                print(f"conftest: could not remove the test tag {ref}: {exc}")
    CREATED_TAGS.clear()


def clone_selftest(engine: Engine, root: Path, names: list[str]) -> tuple[Path, Path, list[str]]:
    """The self-test task under several instance ids: tasks dir, blob dir, image tagged per id.

    Lets one session score several submissions (one per instance id) with one image. The
    ids end in this process's token (after the commit part, so ``pbselftest__<name>\\.``
    still selects them); their tags are removed when the session ends.
    """
    from programbench.constants import image_name_from_instance_id

    tasks, blobs = root / "tasks", root / "blobs"
    ids = [f"pbselftest__{name.replace('_', '-')}.5e1f7a0{SESSION_TOKEN}" for name in names]
    selftest.clone(engine, tasks, blobs, ids)
    for iid in ids:
        created_tag(f"{image_name_from_instance_id(iid)}:{selftest.IMAGE_TAG}")
    return tasks, blobs, ids


def programbench_eval(
    tasks: Path,
    blobs: Path,
    runs: Path,
    out: Path,
    iids: Iterable[str],
    *,
    cpus: int,
    force: bool = True,
    workers: int = 2,
) -> dict[str, Any]:
    """What ``programbench eval [--force] -w <workers>`` gives each instance, through its own batch
    function (``eval_batch._evaluate_instance``, on a thread pool as the command runs it), its blob
    store pointed at ``blobs``: the summaries by instance id. Without ``force`` it resumes what
    ``out`` holds, as the command does."""
    from programbench.eval import eval_batch
    from programbench.utils import blob_store
    from programbench.utils.load_data import _load_single_instance

    def one(iid: str) -> Any:
        return eval_batch._evaluate_instance(
            instance_id=iid,
            instance=_load_single_instance(tasks / iid, include_tests=True),
            source_dir=runs,
            target_dir=out,
            force=force,
            docker_cpus=cpus,
        )

    ids = list(iids)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(blob_store, "BLOB_LOCAL_DIR", str(blobs))  # read at call time
        with ThreadPoolExecutor(workers) as pool:
            return dict(zip(ids, pool.map(one, ids), strict=True))


class CreationWatch:
    """What the engine does while a ``with`` block runs: its events, and the containers it creates.

    Read live from the engine's event stream: the engine replays only its last 256
    events and a scoring session emits far more (each exec is three), so asking
    afterwards loses some. A container of our own, made and removed on exit, marks the
    end of the block's events, so nothing is cut off and nothing is waited for blindly.
    ``filters`` (default: container creations) choose the events kept in ``events``;
    with ``inspect``, each container is inspected as it is created, while it still exists.
    """

    def __init__(
        self,
        engine: Engine,
        marker_image: str,
        *,
        filters: dict[str, Any] | None = None,
        inspect: bool = False,
    ) -> None:
        self.engine = engine
        self.marker_image = marker_image
        self.filters = filters or {"type": "container", "event": "create"}
        self.inspect = inspect
        self.events: list[dict[str, Any]] = []  # raw, in order, the marker's own left out
        self.inspected: dict[str, dict[str, Any]] = {}  # container id -> docker inspect, with inspect
        self.images: list[str] = []
        self.instances: list[tuple[str, str]] = []  # (instance label, image) of each container
        self._ids: set[str] = set()
        self._seen = threading.Condition()

    def __enter__(self) -> CreationWatch:
        self._start_ns = time.time_ns()
        self._stream = self.engine.client.events(
            since=self._start_ns // 10**9 - 1, decode=True, filters=self.filters
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends by being closed under us
            for event in self._stream:
                container = event.get("Actor", {}).get("ID") or event.get("id", "")
                if self.inspect and event.get("Action") == "create":
                    with contextlib.suppress(Exception):  # gone already: missing from inspected
                        self.inspected[container] = self.engine.client.api.inspect_container(container)
                with self._seen:
                    if int(event.get("timeNano", 0)) >= self._start_ns:
                        self.events.append(event)
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
        self.events = [e for e in self.events if (e.get("Actor", {}).get("ID") or e.get("id")) != marker]
        created = [e for e in self.events if e.get("Type") == "container" and e.get("Action") == "create"]
        self.images = [e.get("from", "") for e in created]
        self.instances = [(self.label(e), e.get("from", "")) for e in created]

    @staticmethod
    def label(event: dict[str, Any], name: str = LABEL_INSTANCE) -> str:
        return str(event.get("Actor", {}).get("Attributes", {}).get(name, ""))

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

    def cpus_of(self, instance_id: str) -> list[float | None]:
        """``docker run --cpus`` of each container labelled with the instance (None: not inspected)."""
        out: list[float | None] = []
        for event in self.events:
            if event.get("Action") == "create" and self.label(event) == instance_id:
                attrs = self.inspected.get(event.get("Actor", {}).get("ID", ""))
                out.append(None if attrs is None else attrs["HostConfig"]["NanoCpus"] / 1e9)
        return out


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


# mini-swe-agent sessions driven by its own DeterministicModel (test_mini_agent, test_examples).
COMPILE_SH = "#!/bin/sh\nset -e\ngcc -O2 -o executable rpncalc.c\n"
SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
COST_PER_STEP = 0.25


def model_output(command: str, cost: float = COST_PER_STEP) -> dict[str, Any]:
    """One DeterministicModel answer (the shape of mini's ``make_output``) running ``command``."""
    return {
        "role": "assistant",
        "content": "scripted step",
        "extra": {"actions": [{"command": command}], "cost": cost},
    }


def heredoc(path: str, text: str) -> str:
    # A quoted delimiter: the shell expands nothing in the body (the C source has $ and backslashes).
    assert "\nPB_EOF\n" not in f"\n{text}"
    return f"cat > {path} <<'PB_EOF'\n{text}PB_EOF"


def solving_commands() -> list[str]:
    """What a model that knows the answer would do: write the files, build, check, submit."""
    return [
        heredoc("rpncalc.c", selftest.reference_source()),
        heredoc("compile.sh", COMPILE_SH) + "\nchmod +x compile.sh",
        "./compile.sh && ./executable 2 3 +",
        SUBMIT,
    ]


def deterministic_config(commands: list[str], **overrides: Any) -> dict[str, Any]:
    """A --pb-agent-config that swaps the model for DeterministicModel answering ``commands`` in turn."""
    model = {
        "model_class": "deterministic",
        "model_name": "deterministic",
        "outputs": [model_output(c) for c in commands],
    }
    return {**overrides, "model": {**model, **overrides.get("model", {})}}


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def assert_no_container_left(engine: Engine, document: dict[str, Any]) -> None:
    run_id = document["run_id"]
    assert run_id
    leftovers = engine.labelled({LABEL_RUN: run_id})
    assert [c.name for c in leftovers] == []


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


def run_session(
    root: Path, out: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 900
) -> tuple[str, dict[str, dict[str, Any]]]:
    """A session of ``session_options(root, out, *extra)`` run in ``root``: its output and its
    --pb-report rows by instance id."""
    done = subprocess.run(
        session_command(*session_options(root, out, *extra)),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    report = json.loads((out / "report.json").read_text())
    return done.stdout + done.stderr, {r["instance_id"]: r for r in report["instances"]}


# A conftest.py text replacing the scoring fixture, so collection behaviour runs end to end
# without Docker; it also proves the fixture is overridable from conftest.py.
FAKE_OUTCOME = """
import pytest

class Outcome:
    score = 1.0

@pytest.fixture
def pb_outcome(pb_instance):
    return Outcome()
"""
