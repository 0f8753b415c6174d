"""Where the test suite's wall time goes: which xdist worker ran what, when, and how long one sat idle.

As a pytest plugin, it appends one JSON line per test (worker, node id, start, end) to the file
named by ``PB_TIMELINE`` (the workers of one session share it)::

    PB_TIMELINE=/tmp/timeline.jsonl PYTHONPATH=benchmarks pytest -n 2 --dist worksteal -p suite_timeline

Then ``python benchmarks/suite_timeline.py /tmp/timeline.jsonl`` prints each worker's busy time
and when it ran out of work, and the modules that took the most worker time. This is how the
idle tail under xdist's default scheduling was found (docs/development.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Generator, Iterable
from typing import Any

import pytest

Row = tuple[str, str, float, float]  # worker, node id, start, end (seconds since the epoch)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    start = time.time()
    try:
        return (yield)
    finally:
        target = os.environ.get("PB_TIMELINE")
        if target:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            with open(target, "a") as f:  # one short write per line: workers' lines do not interleave
                f.write(json.dumps([worker, item.nodeid, start, time.time()]) + "\n")


def summary(rows: Iterable[Row], top: int = 12) -> list[str]:
    """Lines: the span, each worker's busy seconds and when its last test ended, the heaviest modules."""
    rows = list(rows)
    if not rows:
        return ["no tests recorded"]
    first, last = min(r[2] for r in rows), max(r[3] for r in rows)
    lines = [f"span {last - first:.0f} s, {len(rows)} tests"]
    workers: dict[str, list[Row]] = defaultdict(list)
    modules: dict[str, float] = defaultdict(float)
    for row in rows:
        workers[row[0]].append(row)
        modules[row[1].split("::")[0]] += row[3] - row[2]
    for name in sorted(workers):
        mine = workers[name]
        busy = sum(end - start for _, _, start, end in mine)
        done = max(end for *_, end in mine) - first
        lines.append(f"{name}: {len(mine)} tests, busy {busy:.0f} s, out of work at {done:.0f} s")
    lines.append(f"worker time {sum(modules.values()):.0f} s; heaviest modules:")
    for module, seconds in sorted(modules.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        lines.append(f"  {seconds:7.1f} s  {module}")
    return lines


def main(path: str) -> None:
    with open(path) as f:
        rows = [(str(w), str(n), float(a), float(b)) for w, n, a, b in map(json.loads, filter(str.strip, f))]
    print("\n".join(summary(rows)))


if __name__ == "__main__":
    main(sys.argv[1])
