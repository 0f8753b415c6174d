"""A score does not depend on -n: what each scoring container is given, at -n 1 and at -n = 2x cores.

The official evaluator starts each scoring container with ``--cpus N`` and
``PYTEST_XDIST_AUTO_NUM_WORKERS=N``, and a task's ``pytest -n auto`` then runs N workers
in it. Unshared, each of ``-n`` concurrent containers would get all the engine's cores
(the official 10, clamped) and run as many workers: ``-n`` times more tests at once than
cores. With the share rule each gets cores // -n, at least one: at ``-n`` = 2x cores, one
CPU and one pytest worker. This test reads what every container the evaluator started was
given (``docker inspect``), not how long anything took; how much slower a time-sensitive
hidden test runs at each load is ``benchmarks/bench_cpu_share.py``'s to measure.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from support import CreationWatch, clone_selftest, run_session

from pytest_programbench import selftest
from pytest_programbench.engine.containers import Engine

KIND = "partial"  # 15 of 18: a score that would move if a container's tests saw another CPU count


def given(watch: CreationWatch, instance_id: str) -> list[tuple[float, str, str]]:
    """(``--cpus``, ``--cpuset-cpus``, PYTEST_XDIST_AUTO_NUM_WORKERS) of each container of the instance."""
    out = []
    for event in watch.events:
        if event.get("Action") != "create" or watch.label(event) != instance_id:
            continue
        attrs = watch.inspected[event["Actor"]["ID"]]  # inspected as it was created
        env = dict(e.split("=", 1) for e in attrs["Config"]["Env"] or [])
        host = attrs["HostConfig"]
        out.append((host["NanoCpus"] / 1e9, host["CpusetCpus"], env.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")))
    return out


def test_each_scoring_container_gets_its_share_and_the_scores_are_equal_at_n_1_and_twice_the_cores(
    engine: Engine, selftest_image: str, tmp_path: Path
) -> None:
    cores = engine.cpu_count()
    wide = 2 * cores
    _, _, ids = clone_selftest(engine, tmp_path, [f"cpu_share_{n}" for n in range(wide)])
    for iid in ids:
        selftest.write_submission(KIND, tmp_path / "runs" / iid)

    rows: dict[int, dict[str, Any]] = {}
    # All the clones are one submission: at -n 1 one of them is scored (one at a time, each would
    # be given the same), at 2x the cores all of them, at once.
    for workers, scored in ((1, ids[:1]), (wide, ids)):
        with CreationWatch(engine, selftest_image, inspect=True) as watch:
            # --pb-cpus=10, the official value, after session_options' 1: the rule must do the sharing.
            said, rows[workers] = run_session(
                tmp_path,
                tmp_path / f"n{workers}",
                f"--pb-submissions={tmp_path / 'runs'}",
                "--pb-instance=^(" + "|".join(re.escape(i) for i in scored) + ")$",
                "-n",
                str(workers),
                "--pb-cpus=10",
            )
        assert set(rows[workers]) == set(scored), said
        # Every container the evaluator started for an item (its compile, each branch) had the
        # item's share of the engine, unpinned, and told pytest-xdist as many workers.
        share = max(1, min(10, cores, cores // workers))
        for iid in scored:
            containers = given(watch, iid)
            assert len(containers) == 3, (iid, containers)  # compile + the two active branches
            assert containers == [(share, "", str(share))] * 3, (workers, iid, containers)

    def scores(found: dict[str, Any]) -> dict[str, tuple[int, int, float, str | None]]:
        return {i: (r["n_resolved"], r["n_tests"], r["score"], r["error_code"]) for i, r in found.items()}

    assert set(scores(rows[wide]).values()) == set(scores(rows[1]).values())  # one value: all equal
    assert len(set(scores(rows[wide]).values())) == 1
    expected = selftest.EXPECTED[KIND]
    assert {(n, total, code) for n, total, _, code in scores(rows[1]).values()} == {expected}
