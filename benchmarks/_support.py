"""What the benchmarks share: side-by-side timing (alternate A and B, medians, the verdict) and
the self-test task cloned under many ids on the engine, with the cleanup that removes it."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_programbench import selftest

# The test suite's helpers (engines, registry, support): benchmarks run whole sessions as its tests do.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import run_session

__all__ = ["run_session"]

COMPILED_PREFIX = "programbench-compiled/"  # the Evaluator commits its compile container under this


def time_once(cmd: Sequence[str], cwd: Path, ok: Sequence[int] = (0, 5)) -> float:
    """Wall time of one run; pytest's 5 (no tests collected) is a normal end for an empty dir."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed


def compare(a: Sequence[str], b: Sequence[str], cwd: Path, runs: int, warmup: int = 1) -> dict[str, float]:
    """Run A and B in turn (A B A B ...) so drift hits both; ratio is the median of pairwise ratios."""
    for _ in range(warmup):
        time_once(a, cwd)
        time_once(b, cwd)
    times_a, times_b = [], []
    for _ in range(runs):
        times_a.append(time_once(a, cwd))
        times_b.append(time_once(b, cwd))
    return summarize(times_a, times_b)


def finish(report: dict[str, Any]) -> None:
    """Print the report and its verdict line; exit 1 on a miss. The one rule for every benchmark.

    PASS when the median of the per-run A/B ratios (``ratio_median``, from :func:`summarize`:
    A and B alternate, so machine drift hits both sides of a pair) is at most ``target_ratio``.
    The median, not the max: one run slowed by a neighbour on a shared machine is not a verdict.
    """
    ratio, target = float(report["ratio_median"]), float(report["target_ratio"])
    report["verdict"] = "PASS" if ratio <= target else "FAIL"
    print(json.dumps(report, indent=2))
    print(f"{report['verdict']} {report['benchmark']}: median ratio {ratio:.3f} (target <= {target:g})")
    if report["verdict"] != "PASS":
        raise SystemExit(1)


def summarize(times_a: Sequence[float], times_b: Sequence[float]) -> dict[str, float]:
    """Medians of each side and the median of the pairwise ratios A/B (robust to drift)."""
    ratios = [x / y for x, y in zip(times_a, times_b, strict=True)]
    return {
        "a_median_s": statistics.median(times_a),
        "b_median_s": statistics.median(times_b),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def instance_ids(n: int) -> list[str]:
    return [f"pbselftest__bench-replay-{k}.5e1f7a0" for k in range(n)]


def image_ref(iid: str) -> str:
    # Imported late: programbench.constants freezes its environment variables on first import.
    from programbench.constants import image_name_from_instance_id

    return f"{image_name_from_instance_id(iid)}:{selftest.IMAGE_TAG}"


def setup(engine: Any, root: Path, ids: list[str], kinds: list[str]) -> tuple[Path, Path, Path]:
    """Tasks dir, blob dir and submissions dir of the self-test task cloned under ``ids``."""
    tasks, blobs, subs = root / "tasks", root / "blobs", root / "submissions"
    source_image = f"{selftest.image_name()}:{selftest.IMAGE_TAG}"
    engine.require_image(source_image, "Build it from images/selftest (see images/build-test-images.sh)")
    selftest.clone(engine, tasks, blobs, ids)
    for k, iid in enumerate(ids):
        selftest.write_submission(kinds[k % len(kinds)], subs / iid)
    return tasks, blobs, subs


def cleanup(engine: Any, ids: list[str]) -> dict[str, int]:
    """Remove every container and image this benchmark made; count what had to go besides the tags."""
    from docker.errors import NotFound

    ours = {image_ref(iid) for iid in ids}
    compiled = tuple(f"{COMPILED_PREFIX}{iid}:" for iid in ids)

    def is_ours(ref: str) -> bool:
        return ref in ours or ref.startswith(compiled)

    containers = 0
    for box in engine.client.containers.list(all=True, ignore_removed=True):
        if is_ours(str(box.attrs.get("Config", {}).get("Image", ""))):
            engine.remove(box)
            containers += 1
    images = 0
    for image in engine.client.images.list(name=COMPILED_PREFIX.rstrip("/")):
        for tag in image.tags:
            if tag.startswith(compiled):
                with contextlib.suppress(NotFound):
                    engine.client.images.remove(tag, force=True)
                images += 1
    for ref in ours:  # untag only: the self-test image keeps its own name
        with contextlib.suppress(NotFound):
            engine.client.images.remove(ref)
    return {"leftover_containers_removed": containers, "leftover_images_removed": images}


@contextlib.contextmanager
def engine_session() -> Iterator[Any]:
    from pytest_programbench.engine.containers import Engine

    with Engine() as engine:
        yield engine
