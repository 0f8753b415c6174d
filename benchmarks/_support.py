"""Side-by-side timing of whole commands: alternate A and B, report medians and the ratio."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


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
