"""A score does not depend on -n: time-sensitive hidden tests at -n 1 and at -n = 2x the engine's cores.

The official evaluator starts each scoring container with ``--cpus N`` and
``PYTEST_XDIST_AUTO_NUM_WORKERS=N``, and a task's ``pytest -n auto`` then runs N workers
in it. Unshared, each of ``-n`` concurrent containers would get all the engine's cores
(the official 10, clamped) and run as many workers: ``-n`` times more tests at once than
cores. With the share rule each gets one CPU at ``-n`` = 2x cores (its floor): twice as
many tests as cores. The variant of the self-test task built here has tests that must
end within a few times what their work takes on a core of its own, measured on this
engine first, so they pass at the second load and not at the first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support import CreationWatch, clone_selftest, run_session

from pytest_programbench import selftest
from pytest_programbench.containers import LABEL_RUN, Engine

BRANCH = "c9u5a4e0d1f7"
TESTS = 6
#: Seconds one burn takes in a container of its own with one CPU (as measured on the engine).
BURN_SECONDS = 0.3
#: A test fails when its best of three burns takes longer than this many times BURN_SECONDS.
#: At -n = 2x cores the share rule gives a test half a core (one pytest worker per container,
#: one CPU each, twice as many containers as cores); unshared, 1 / (2 x min(10, cores)) of one
#: (min(10, cores) workers in each). 12 leaves the shared case room for a busy machine (this
#: suite runs beside other tests: at 3.5, CI runs lost 1 to 4 points of 6 at -n 4 with the
#: rule in place), and the unshared case loses points from 7 cores up (14x). On fewer cores
#: the scores cannot tell the two apart, and the CPUs each container got (asserted below) are
#: what fails when the rule is broken.
SLOWDOWN_ALLOWED = 12

BURN = '''"""The work of one time-sensitive hidden test: a fixed number of interpreter steps."""
import time


def burn(steps):
    """Wall seconds of ``steps`` loop iterations."""
    start = time.monotonic()
    x = 0
    for i in range(steps):
        x += i * i
    return time.monotonic() - start
'''

TEST_MODULE = """from _burn import burn

STEPS = {steps}
BUDGET = {budget:.3f}  # seconds


def _timed():
    took = min(burn(STEPS) for _ in range(3))
    assert took < BUDGET, f"took {{took:.2f}} s, more than the {{BUDGET}} s allowed"

"""


def hidden_tests(steps: int, budget: float) -> list[tuple[str, int, bytes | None]]:
    """The branch archive's members: the self-test task's run.sh, the burn and TESTS timed tests."""
    run_sh = (selftest.branches_dir() / selftest.branch_names()[0] / "eval" / "run.sh").read_bytes()
    module = TEST_MODULE.format(steps=steps, budget=budget)
    module += "".join(f"\ndef test_burn_{i}():\n    _timed()\n" for i in range(TESTS))
    return [
        ("eval/", 0o755, None),
        ("eval/run.sh", 0o755, run_sh),
        ("eval/tests/", 0o755, None),
        ("eval/tests/_burn.py", 0o644, BURN.encode()),
        ("eval/tests/test_timed.py", 0o644, module.encode()),
    ]


def calibrate(engine: Engine, image: str) -> tuple[int, float]:
    """Loop steps that take BURN_SECONDS (to twice that) on one core of this engine now, and what they took.

    Measured in a container of the task image with one CPU, as a hidden test runs; the
    best of five, as the hidden tests take their best of three.
    """
    steps = 1_000_000
    with engine.container(image, labels={LABEL_RUN: "test-cpu-share-calibration"}, nano_cpus=10**9) as box:
        while True:  # doubled until one burn is long enough to time well
            probe = f"{BURN}\nprint(*[burn({steps}) for _ in range(5)])"
            said = engine.exec(box, probe, interpreter=("python3", "-c"))
            assert said.returncode == 0, said.output
            took = min(float(t) for t in said.output.split())
            if took >= BURN_SECONDS:
                return steps, took
            steps *= 2


def time_sensitive_task(engine: Engine, root: Path, names: list[str], steps: int, budget: float) -> list[str]:
    """Self-test clones whose one active branch is TESTS timed tests; a correct submission for each."""
    _, blobs, ids = clone_selftest(engine, root, names)
    tests = {
        "branches": {
            BRANCH: {
                "ignore_reason": "",
                "ignored": False,
                "ignored_tests": [],
                "tests": [f"eval.tests.test_timed.test_burn_{i}" for i in range(TESTS)],
            }
        }
    }
    for iid in ids:
        (root / "tasks" / iid / "tests.json").write_text(json.dumps(tests, indent=2))
        for old in (blobs / iid / "tests").iterdir():
            old.unlink()
        selftest.write_targz(blobs / iid / "tests" / f"{BRANCH}.tar.gz", hidden_tests(steps, budget))
        selftest.write_submission("correct", root / "runs" / iid)
    return ids


def scored(root: Path, out: Path, workers: int) -> tuple[str, dict[str, Any]]:
    """A session at ``-n workers`` replaying the correct submissions with the official CPU count."""
    # --pb-cpus=10, the official value, after session_options' 1: the rule must do the sharing.
    return run_session(root, out, f"--pb-submissions={root / 'runs'}", "-n", str(workers), "--pb-cpus=10")


def test_scores_of_time_sensitive_tests_are_equal_at_n_1_and_at_twice_the_cores(
    engine: Engine, selftest_image: str, tmp_path: Path
) -> None:
    cores = engine.cpu_count()
    wide = 2 * cores
    steps, took = calibrate(engine, selftest_image)
    ids = time_sensitive_task(
        engine, tmp_path, [f"cpu_share_{n}" for n in range(wide)], steps, SLOWDOWN_ALLOWED * took
    )

    runs = {}
    for workers in (1, wide):
        with CreationWatch(engine, selftest_image, inspect=True) as watch:
            said, rows = scored(tmp_path, tmp_path / f"n{workers}", workers)
        assert set(rows) == set(ids), said
        runs[workers] = rows
        # Every container the evaluator started for an item (its compile, its branch) had the
        # item's share of the engine: the cores alone at -n 1, one CPU at 2x cores.
        share = max(1, min(cores, cores // workers))
        for iid in ids:
            cpus = watch.cpus_of(iid)
            assert len(cpus) >= 2, (iid, watch.instances)
            assert cpus == [share] * len(cpus), (workers, iid, cpus)

    # On a core of its own each test passes: the calibration holds, the comparison means something.
    assert all(r["outcome"] == "resolved" and r["n_tests"] == TESTS for r in runs[1].values()), runs[1]

    def scores(rows: dict[str, Any]) -> dict[str, tuple[int, int, float]]:
        return {i: (r["n_resolved"], r["n_tests"], r["score"]) for i, r in rows.items()}

    assert scores(runs[wide]) == scores(runs[1]), runs[wide]
