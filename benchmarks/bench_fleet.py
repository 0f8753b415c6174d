"""The fleet on real engines: two engines against one, a cold run with prefetch against a warm one,
and the peak disk of task images with a budget against without.

1. throughput: N items whose agent mostly waits (``sleep WAIT`` in its sandbox, as an LLM agent
   waits on its model, then the scripted self-test build), on one engine with one slot (-n 1)
   and on two engines with one slot each (-n 2): wall(one) / wall(two). Target >= 1.8. Also
   the same ratio of the items' own window (progress.log, first line to last), without the
   session's fixed start and end.
2. cold / warm: the same N items, task images served by a local registry; cold = absent from the
   engine (each pulled, the next one prefetched while the current item's agent waits), warm =
   already present. wall(cold) / wall(warm). Target <= 1.15.
3. peak disk: most task-image bytes present at once (sampled every 0.2 s) without a budget and
   with ``--pb-image-budget`` of 1.5 images, cold, -n 1. peak(budget) / peak(none).

Runs the second dockerd of tests/engines.py (stopped again at the end) and a docker-registry.

    python benchmarks/bench_fleet.py --only throughput --n 8 --wait 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from _support import run_session  # the script's own folder is on sys.path; it puts tests/ there too
from engines import LOCK, SecondEngine
from registry import Registry

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_RUN, Engine
from pytest_programbench.errors import EngineUnavailable

WAITING_AGENT = """
from pytest_programbench.selftest import scripted_agent

def pytest_programbench_agent(config, instance):
    def agent(instance, sandbox):
        sandbox.exec("sleep {wait}")
        return scripted_agent(instance, sandbox)
    return agent
"""


def clone(engine: Engine, root: Path, n: int, org: str = "") -> dict[str, str]:
    """N self-test clones under ``root``: instance id -> image ref (under ``org`` when given)."""
    import shutil

    from programbench import constants

    tasks, blobs = root / "tasks", root / "blobs"
    selftest.write_blob_dir(blobs)
    refs = {}
    for k in range(n):
        iid = f"pbselftest__bench-{k}.5e1f7a0"
        shutil.copytree(selftest.tasks_dir() / selftest.INSTANCE_ID, tasks / iid)
        shutil.copytree(blobs / selftest.INSTANCE_ID, blobs / iid)
        saved = constants.DOCKER_ORG
        constants.DOCKER_ORG = org or saved
        refs[iid] = f"{constants.image_name_from_instance_id(iid)}:{selftest.IMAGE_TAG}"
        constants.DOCKER_ORG = saved
    return refs


def session(root: Path, out: Path, *args: str, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    said, rows = run_session(root, out, *args, env=env, timeout=3600)
    elapsed = time.perf_counter() - start
    if any(r["outcome"] != "resolved" for r in rows.values()):
        raise SystemExit(f"a benchmark session did not resolve everything:\n{said[-3000:]}")
    return elapsed


def items_window(out: Path) -> int:
    """Whole seconds from the first item's first line in progress.log to the last item's last:
    the items' own time, without the session's start (xdist workers, collection) and end."""

    def seconds(line: str) -> int:
        hours, minutes, secs = (int(part) for part in line.split()[0].split(":"))
        return hours * 3600 + minutes * 60 + secs

    lines = [line for line in (out / "progress.log").read_text().splitlines() if line.strip()]
    return (seconds(lines[-1]) - seconds(lines[0])) % 86400 + 1


@contextlib.contextmanager
def peak_of(engine: Engine, refs: list[str]) -> Iterator[list[int]]:
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            present = 0
            for ref in refs:
                with contextlib.suppress(Exception):
                    present += engine.image_size(ref)
            peak[0] = max(peak[0], present)
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def throughput(engine: Engine, base: Path, n: int) -> dict[str, float]:
    from filelock import FileLock

    with FileLock(LOCK):  # a test module using the second engine stops it when it ends
        return _throughput(engine, base, n)


def _throughput(engine: Engine, base: Path, n: int) -> dict[str, float]:
    second = SecondEngine()
    second.start()
    image = f"{selftest.image_name()}:{selftest.IMAGE_TAG}"
    root = base / "tasks-throughput"
    refs = clone(engine, root, n)
    try:
        second.load(image)
        with Engine(second.host) as other:
            for ref in refs.values():
                engine.tag(image, ref)
                other.tag(image, ref)
        one = session(root, base / "one", "-n", "1", f"--pb-docker-host={engine.host}", "--pb-pull=never")
        two = session(
            root,
            base / "two",
            "-n",
            "2",
            f"--pb-docker-host={engine.host}",
            f"--pb-docker-host={second.host}",
            "--pb-pull=never",
        )
    finally:  # a failed session (or a second engine gone) leaves no tag behind either
        for ref in refs.values():
            engine.remove_image(ref)
        with contextlib.suppress(EngineUnavailable), Engine(second.host) as other:
            for ref in refs.values():
                other.remove_image(ref)
            other.sweep({LABEL_RUN: None})
        second.stop()
    window_one, window_two = items_window(base / "one"), items_window(base / "two")
    return {
        "one_engine_s": one,
        "two_engines_s": two,
        "ratio_one_over_two": one / two,
        "items_window_one_engine_s": window_one,
        "items_window_two_engines_s": window_two,
        "items_ratio_one_over_two": window_one / window_two,
    }


def registry_runs(engine: Engine, base: Path, n: int) -> dict[str, float]:
    with Registry(base / "registry") as registry:
        org = f"{registry.host}/programbench"
        root = base / "tasks-registry"
        refs = clone(engine, root, n, org)
        image = f"{selftest.image_name()}:{selftest.IMAGE_TAG}"
        for ref in refs.values():  # distinct images: a random layer each
            context = base / f"ctx-{uuid.uuid4().hex[:8]}"
            context.mkdir()
            (context / "Dockerfile").write_text(
                "ARG BASE\nFROM ${BASE}\n"
                f"RUN head -c 30000000 /dev/urandom > /tmp/pb-bench.bin && echo {uuid.uuid4().hex}\n"
            )
            local = f"pytest-programbench/bench-fleet:{uuid.uuid4().hex[:12]}"
            engine.build(str(context), local, {"BASE": image})
            registry.push(engine, local, ref)
            engine.remove_image(local)
        env = {**os.environ, "PROGRAMBENCH_DOCKER_ORG": org}

        def absent() -> None:
            for ref in refs.values():
                engine.remove_image(ref)

        try:
            absent()
            with peak_of(engine, list(refs.values())) as peak_none:
                cold = session(root, base / "cold", "--pb-pull=missing", env=env)
            warm = session(root, base / "warm", "--pb-pull=never", env=env)
            absent()
            repository, _, tag = next(iter(refs.values())).rpartition(":")
            engine.client.images.pull(repository, tag=tag)
            size = engine.image_size(next(iter(refs.values())))
            absent()
            with peak_of(engine, list(refs.values())) as peak_budget:
                budget = f"--pb-image-budget={int(size * 1.5)}"
                session(root, base / "budget", "--pb-pull=missing", budget, env=env)
        finally:
            absent()
    return {
        "cold_s": cold,
        "warm_s": warm,
        "ratio_cold_over_warm": cold / warm,
        "image_bytes": size,
        "peak_bytes_no_budget": peak_none[0],
        "peak_bytes_budget_1.5_images": peak_budget[0],
        "ratio_peak_budget_over_none": peak_budget[0] / max(1, peak_none[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4, help="items per session")
    parser.add_argument("--wait", type=int, default=20, help="seconds each agent waits")
    parser.add_argument("--only", choices=["throughput", "registry"], default=None)
    args = parser.parse_args()
    results: dict[str, object] = {"n": args.n, "wait_s": args.wait}
    verdicts: list[tuple[str, float, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="pb-bench-fleet-") as tmp, Engine() as engine:
        base = Path(tmp)
        for name in ("tasks-throughput", "tasks-registry"):
            (base / name).mkdir()
            (base / name / "conftest.py").write_text(WAITING_AGENT.format(wait=args.wait))
        if args.only in (None, "throughput"):
            results["throughput"] = measured = throughput(engine, base, args.n)
            # A speed-up, so at least its target (the one exception to _support.finish's "at most").
            verdicts.append(("throughput", measured["ratio_one_over_two"], ">=", 1.8))
        if args.only in (None, "registry"):
            results["registry"] = measured = registry_runs(engine, base, args.n)
            verdicts.append(("cold/warm", measured["ratio_cold_over_warm"], "<=", 1.15))
    print(json.dumps(results, indent=2))
    missed = False
    for name, ratio, sense, target in verdicts:
        ok = ratio >= target if sense == ">=" else ratio <= target
        missed |= not ok
        print(f"{'PASS' if ok else 'FAIL'} bench_fleet {name}: ratio {ratio:.3f} (target {sense} {target:g})")
    if missed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
