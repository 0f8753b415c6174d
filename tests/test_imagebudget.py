"""The disk budget and the prefetch, on the real engine with task images pulled from a real registry.

Three task images, each with a random layer of its own, published to a local registry and
absent from the engine; a budget of two and a half of them. One session (no -n: items run
in order, so "the next item" is known) scores all three while a sampler watches the
engine's task-image bytes and its event stream records pulls and container ends.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry import Registry
from support import CreationWatch, clone_selftest, session_command, session_options

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_INSTANCE, LABEL_RUN, Engine
from pytest_programbench.engine.imagebudget import Ledger

NAMES = ["budget-a", "budget-b", "budget-c"]

# Each agent waits (boundedly) for the next item's image before it builds: if the prefetch
# works, the next image arrives while this item is still running.
WAITING_AGENT = """
import json, time
from pathlib import Path
from pytest_programbench.selftest import scripted_agent

NEXT = json.loads((Path(__file__).parent / "next.json").read_text())

def pytest_programbench_agent(config, instance):
    def agent(instance, sandbox):
        upcoming = NEXT.get(instance.instance_id)
        if upcoming:
            import docker
            client = docker.from_env()
            for _ in range(240):
                if client.images.list(name=upcoming.rsplit(":", 1)[0]):
                    break
                time.sleep(0.5)
        return scripted_agent(instance, sandbox)
    return agent
"""


@pytest.fixture(scope="module")
def published(
    engine: Engine, selftest_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Registry, Path, dict[str, str]]]:
    """(registry, task root, instance id -> image ref under the registry); nothing of it stays local."""
    from programbench import constants

    root = tmp_path_factory.mktemp("budget")
    with Registry(root / "registry") as registry:
        _, _, ids = clone_selftest(engine, root, NAMES)
        org = f"{registry.host}/programbench"
        refs = {}
        for iid in ids:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(constants, "DOCKER_ORG", org)
                refs[iid] = f"{constants.image_name_from_instance_id(iid)}:{selftest.IMAGE_TAG}"
            context = root / f"ctx-{iid}"
            context.mkdir()
            token = uuid.uuid4().hex
            (context / "Dockerfile").write_text(
                f"ARG BASE\nFROM ${{BASE}}\nRUN echo {token} > /tmp/pb-budget.id"
                " && head -c 8000000 /dev/urandom > /tmp/pb-budget.bin\n"
            )
            local = f"pytest-programbench/budget-test:{token[:12]}"
            engine.build(str(context), local, {"BASE": selftest_image})
            registry.push(engine, local, refs[iid])
            engine.client.images.remove(engine.client.images.get(local).id, force=True)
        for iid in ids:  # the clone tags under the default org are not used here
            engine.remove_image(f"{constants.image_name_from_instance_id(iid)}:{selftest.IMAGE_TAG}")
        yield registry, root, refs
        for ref in refs.values():
            engine.remove_image(ref)


class Sampler(CreationWatch):
    """The engine's pulls and container ends (see CreationWatch), and the most task-image bytes
    present at once, sampled every 0.2 s."""

    def __init__(self, engine: Engine, refs: list[str], marker_image: str) -> None:
        super().__init__(
            engine, marker_image, filters={"type": ["image", "container"], "event": ["pull", "destroy"]}
        )
        self.refs = refs
        self.peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Sampler:
        super().__enter__()
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            present = 0
            for ref in self.refs:
                with contextlib.suppress(Exception):  # absent (or going away while we look)
                    present += self.engine.image_size(ref)
            self.peak = max(self.peak, present)
            self._stop.wait(0.2)

    def __exit__(self, *exc_info: object) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            self._stop.set()
            self._sampler.join(timeout=10)


def test_a_budget_of_two_and_a_half_images_scores_all_three_within_it_and_prefetches(
    engine: Engine, published: tuple[Registry, Path, dict[str, str]], tmp_path: Path
) -> None:
    registry, root, refs = published
    order = sorted(refs)  # the items run in instance-id order
    (tmp_path / "next.json").write_text(json.dumps({a: refs[b] for a, b in itertools.pairwise(order)}))
    (tmp_path / "conftest.py").write_text(WAITING_AGENT)
    bystander = f"pytest-programbench/budget-bystander:{uuid.uuid4().hex[:12]}"  # not a task image
    engine.tag(f"{selftest.image_name()}:{selftest.IMAGE_TAG}", bystander)
    size = max(_published_size(engine, ref) for ref in refs.values())
    budget = int(size * 2.5)
    out = tmp_path / "out"
    try:
        with Sampler(engine, list(refs.values()), bystander) as sampler:
            done = subprocess.run(
                session_command(
                    *session_options(root, out, "--pb-pull=missing", f"--pb-image-budget={budget}")
                ),
                cwd=tmp_path,
                env={**os.environ, "PROGRAMBENCH_DOCKER_ORG": f"{registry.host}/programbench"},
                capture_output=True,
                text=True,
                timeout=900,
            )
        said = done.stdout + done.stderr
        rows = {r["instance_id"]: r for r in json.loads((out / "report.json").read_text())["instances"]}
        # Every item scored: none lost its image while it ran (its pin would have said so).
        assert [rows[i]["outcome"] for i in order] == ["resolved"] * 3, said
        assert 0 < sampler.peak <= budget, (sampler.peak, budget)
        assert sum(r.get("evicted_bytes", 0) for r in rows.values()) > 0, rows  # it had to evict
        assert sum(r.get("pulled_bytes", 0) for r in rows.values()) >= 3 * size * 0.9, rows
        assert f"task images on {engine.host}: pulled" in said, said
        assert engine.image_exists(bystander)
        for iid in order:  # the evaluator's committed images did not stay either
            assert engine.client.images.list(name=f"programbench-compiled/{iid}") == []
        # Prefetch: each next image was pulled before the item before it ended (its last container went).
        pulled_at = {
            e["id"]: e["timeNano"]
            for e in sampler.events
            if e.get("Type") == "image" and e.get("Action") == "pull"
        }
        for current, upcoming in itertools.pairwise(order):
            ends = [
                e["timeNano"]
                for e in sampler.events
                if e.get("Type") == "container"
                and e.get("Action") == "destroy"
                and e.get("Actor", {}).get("Attributes", {}).get(LABEL_INSTANCE) == current
            ]
            assert refs[upcoming] in pulled_at, sampler.events
            assert ends and pulled_at[refs[upcoming]] < max(ends), (current, upcoming)
    finally:
        engine.remove_image(bystander)


def _published_size(engine: Engine, ref: str) -> int:
    """The image's size on the engine (pulled once to measure, then removed again)."""
    repository, _, tag = ref.rpartition(":")
    engine.client.images.pull(repository, tag=tag)
    try:
        return engine.image_size(ref)
    finally:
        engine.remove_image(ref)


def test_eviction_spares_held_images_and_images_a_container_uses(
    engine: Engine, published: tuple[Registry, Path, dict[str, str]], tmp_path: Path
) -> None:
    _, _, refs = published
    first, second, third = (refs[i] for i in sorted(refs))
    for ref in (first, second):
        repository, _, tag = ref.rpartition(":")
        engine.client.images.pull(repository, tag=tag)
    ledger = Ledger(engine, budget=1, shared_dir=tmp_path)  # room for nothing
    try:
        ledger.hold(first, "item-1")
        ledger.booked_pull(first)  # held: stays although over budget
        assert engine.image_exists(first)
        with engine.container(second, labels={LABEL_RUN: "test-budget"}):
            ledger.booked_pull(second)  # a container was made from it: stays
            assert engine.image_exists(second)
            assert ledger.make_room(third) == 0
        assert ledger.release({"item-1"}) == 0  # budget 1, not 0: nothing goes on release
        evicted = ledger.make_room(third)
        assert evicted > 0 and not engine.image_exists(first) and not engine.image_exists(second)
    finally:
        for ref in (first, second):
            engine.remove_image(ref)
