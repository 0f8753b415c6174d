"""How much slower a CPU-bound hidden test runs at -n = 2x cores than at -n 1, under the share rule.

Target: ratio <= 2.5. A variant of the self-test task whose one branch is TESTS tests that
each burn a fixed number of interpreter steps (calibrated to ~0.3 s on one core of this
engine) is cloned under 2x cores instance ids with a correct submission each, and replayed
with ``--pb-cpus=10`` (the official value) at -n 2x cores (side A) and at -n 1 (side B), A B
A B after a warm-up pair. A run's figure is the median test time that the hidden tests' own
JUnit XML records (``<id>.eval.json``), so start-up and compile do not count.

The share rule gives each scoring container cores // -n CPUs, at least one, and
``PYTEST_XDIST_AUTO_NUM_WORKERS`` as many: at -n 1 one container's workers have a core
each, at -n 2x cores 2x cores one-worker containers share the cores, half a core each, so
the ratio should sit near 2. Unshared, every container would get all the cores and run as
many workers: 2 x min(10, cores) workers per core, a ratio near 2 x min(10, cores) (4 on
two cores). tests/test_cpu_share.py checks what each container is given; this measures
what that does to a time-sensitive test.

    python benchmarks/bench_cpu_share.py --runs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _support import finish, run_session, summarize  # the script's own folder is on sys.path
from support import clone_selftest, remove_created_tags

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_RUN, Engine

BRANCH = "c9u5a4e0d1f7"
TESTS = 6
#: Seconds one burn takes in a container of its own with one CPU (as measured on the engine).
BURN_SECONDS = 0.3
TARGET = 2.5

BURN = '''"""The work of one CPU-bound hidden test: a fixed number of interpreter steps."""


def burn(steps):
    x = 0
    for i in range(steps):
        x += i * i
    return x
'''

TEST_MODULE = """from _burn import burn

STEPS = {steps}
"""


def calibrate(engine: Engine, image: str) -> int:
    """Loop steps that take BURN_SECONDS (to twice that) on one core of this engine now."""
    steps = 1_000_000
    timing = "import time\nstart = time.monotonic()\nburn({steps})\nprint(time.monotonic() - start)"
    with engine.container(image, labels={LABEL_RUN: "bench-cpu-share-calibration"}, nano_cpus=10**9) as box:
        while True:  # doubled until one burn is long enough to time well
            said = engine.exec(box, BURN + timing.format(steps=steps), interpreter=("python3", "-c"))
            if said.returncode != 0:
                raise SystemExit(said.output)
            if float(said.output) >= BURN_SECONDS:
                return steps
            steps *= 2


def hidden_tests(steps: int) -> list[tuple[str, int, bytes | None]]:
    """The branch archive: the self-test task's run.sh, the burn and TESTS tests of three burns each."""
    run_sh = (selftest.branches_dir() / selftest.branch_names()[0] / "eval" / "run.sh").read_bytes()
    module = TEST_MODULE.format(steps=steps)
    module += "".join(
        f"\ndef test_burn_{i}():\n    for _ in range(3):\n        burn(STEPS)\n" for i in range(TESTS)
    )
    return [
        ("eval/", 0o755, None),
        ("eval/run.sh", 0o755, run_sh),
        ("eval/tests/", 0o755, None),
        ("eval/tests/_burn.py", 0o644, BURN.encode()),
        ("eval/tests/test_burn.py", 0o644, module.encode()),
    ]


def build_task(engine: Engine, root: Path, n: int, steps: int) -> list[str]:
    _, blobs, ids = clone_selftest(engine, root, [f"bench_cpu_share_{k}" for k in range(n)])
    tests = {
        "branches": {
            BRANCH: {
                "ignore_reason": "",
                "ignored": False,
                "ignored_tests": [],
                "tests": [f"eval.tests.test_burn.test_burn_{i}" for i in range(TESTS)],
            }
        }
    }
    for iid in ids:
        (root / "tasks" / iid / "tests.json").write_text(json.dumps(tests, indent=2))
        for old in (blobs / iid / "tests").iterdir():
            old.unlink()
        selftest.write_targz(blobs / iid / "tests" / f"{BRANCH}.tar.gz", hidden_tests(steps))
        selftest.write_submission("correct", root / "runs" / iid)
    return ids


def median_test_seconds(root: Path, out: Path, workers: int, ids: list[str]) -> float:
    """One replay session at -n ``workers``; the median of every hidden test's own time."""
    said, rows = run_session(
        root, out, f"--pb-submissions={root / 'runs'}", "-n", str(workers), "--pb-cpus=10"
    )
    if set(rows) != set(ids) or any(r["n_tests"] != TESTS for r in rows.values()):
        raise SystemExit(f"the session at -n {workers} did not score every instance:\n{said[-3000:]}")
    times = []
    for iid in ids:
        result = json.loads((out / iid / f"{iid}.eval.json").read_text())
        times += [float(t["extra"]["time"]) for t in result["test_results"] if "time" in t["extra"]]
    return statistics.median(times)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="pb-bench-cpu-share-"))
    try:
        with Engine() as engine:
            image = f"{selftest.image_name()}:{selftest.IMAGE_TAG}"
            engine.require_image(image, "Build it from images/selftest (see images/build-test-images.sh)")
            cores = engine.cpu_count()
            wide = 2 * cores
            steps = calibrate(engine, image)
            ids = build_task(engine, root, wide, steps)
        outs = iter(range(10**6))

        def once(workers: int) -> float:
            return median_test_seconds(root, root / f"out-{next(outs)}", workers, ids)

        once(wide), once(1)  # warm-up: image layers, page cache
        at_wide, at_one = [], []
        for _ in range(args.runs):
            at_wide.append(once(wide))
            at_one.append(once(1))
    finally:
        remove_created_tags()
    finish(
        {
            "benchmark": f"median hidden-test time at -n {wide} (2x cores) vs -n 1, --pb-cpus=10",
            "target_ratio": TARGET,
            "runs": args.runs,
            "cores": cores,
            "burn_steps": steps,
            "unshared_expectation": 2 * min(10, cores),
            **summarize(at_wide, at_one),
            "at_wide_s": at_wide,
            "at_one_s": at_one,
        }
    )


if __name__ == "__main__":
    main(sys.argv[1:])
