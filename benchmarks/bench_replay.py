"""Replay scoring of N submissions: ``pytest -n 2`` against ``programbench eval -w 2``.

Target: ratio <= 1.05. Side A is a whole pytest session scoring N replayed submissions with two
xdist workers; side B is a whole Python process doing what ``programbench eval -w 2`` does: a
2-thread pool over ``programbench.eval.eval_batch._evaluate_instance(force=True)``. Both give every
container the same number of CPUs. The N instances are the self-test task under distinct ids, all
using one image tagged under each name; runs alternate A B A B after a warmup pair, each run writing
into a fresh output directory, and every run's scores are checked to agree between the sides.

A pays a fixed start-up B does not: pytest, its plugins and two xdist workers, before the first
container starts. After each pair the script also times that floor alone (``pytest -n 2`` of one
trivial test, no ProgramBench option) and reports it beside ``a_minus_b_median_s``, so a miss can be
read as start-up or as per-item cost. The default N (32, about 16 items a worker) makes the session
mostly scoring, as a benchmark run of 200 tasks is; with N = 8 the floor alone is several percent.

    python benchmarks/bench_replay.py --runs 3          # N = 32
    python benchmarks/bench_replay.py --n 8 --runs 3    # start-up weighs more
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _support import (  # the script's own folder is on sys.path
    cleanup,
    engine_session,
    finish,
    instance_ids,
    setup,
    summarize,
    time_once,
)

from pytest_programbench import selftest

SIDE_B_FLAG = "--side-b"


def side_a_cmd(tasks: Path, subs: Path, blobs: Path, out: Path, cpus: int) -> list[str]:
    # --opt=value forms: pytest would take a separate value for a path when it picks the rootdir.
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        f"--pb-tasks-dir={tasks}",
        f"--pb-submissions={subs}",
        f"--pb-blob-dir={blobs}",
        f"--pb-output={out / 'run'}",
        f"--pb-report={out / 'report.json'}",
        f"--pb-cpus={cpus}",
        "--pb-pull=never",
        f"--basetemp={out / 'basetemp'}",  # keeps pytest-of-<user> clean; a fresh dir per run anyway
    ]


def floor_cmd(out: Path) -> list[str]:
    """``pytest -n 2`` of one trivial test: the start-up every xdist session pays, ours or not."""
    test = out / "test_floor.py"
    test.write_text("def test_floor():\n    pass\n")
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", str(test)]


def side_b_cmd(tasks: Path, subs: Path, blobs: Path, out: Path, cpus: int) -> list[str]:
    return [sys.executable, __file__, SIDE_B_FLAG, str(tasks), str(subs), str(blobs), str(out), str(cpus)]


def side_b(tasks: str, subs: str, blobs: str, out: str, cpus: str) -> None:
    """What ``programbench eval -w 2 --force --docker-cpus C`` does, for the tasks in ``tasks``."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from programbench.eval import eval_batch
    from programbench.utils import blob_store
    from programbench.utils.load_data import _load_single_instance

    blob_store.BLOB_LOCAL_DIR = blobs  # read at call time by get_blob_dir
    instances = [_load_single_instance(d, include_tests=True) for d in sorted(Path(tasks).iterdir())]
    target = Path(out) / "run"
    summaries = []
    with ThreadPoolExecutor(max_workers=2) as executor:
        futures = [
            executor.submit(
                eval_batch._evaluate_instance,
                instance_id=inst["instance_id"],
                instance=inst,
                source_dir=Path(subs),
                target_dir=target,
                force=True,
                image_tag=selftest.IMAGE_TAG,
                docker_cpus=int(cpus),
            )
            for inst in instances
        ]
        for future in as_completed(futures):
            summary = future.result()
            if summary is not None:
                summaries.append(summary.model_dump())
    (Path(out) / "summaries.json").write_text(json.dumps(summaries, indent=2))


Score = tuple[float, int, int, str | None]


def scores_a(out: Path) -> dict[str, Score]:
    rows = json.loads((out / "report.json").read_text())["instances"]
    return {r["instance_id"]: (r["score"], r["n_resolved"], r["n_tests"], r.get("error_code")) for r in rows}


def scores_b(out: Path) -> dict[str, Score]:
    rows = json.loads((out / "summaries.json").read_text())
    return {r["instance_id"]: (r["score"], r["n_resolved"], r["n_tests"], r["error_code"]) for r in rows}


def verify(out_a: Path, out_b: Path, expected: dict[str, tuple[int, int, str | None]]) -> None:
    """Both sides scored every instance, identically, and as the self-test task says they should."""
    a, b = scores_a(out_a), scores_b(out_b)
    problems = []
    for iid, (n_resolved, n_tests, error_code) in sorted(expected.items()):
        want = (n_resolved / n_tests if n_tests else 0.0, n_resolved, n_tests, error_code)
        got_a, got_b = a.get(iid), b.get(iid)
        if got_a != got_b or got_a is None or got_a[1:] != want[1:]:
            problems.append(f"{iid}: pytest {got_a}, programbench eval {got_b}, expected {want}")
    if problems or set(a) != set(expected) or set(b) != set(expected):
        details = "\n  ".join(problems) or f"instance sets differ: {sorted(a)} vs {sorted(b)}"
        raise SystemExit(f"the two sides disagree on scores ({out_a}, {out_b}):\n  {details}")


def alternate(
    make_a: Callable[[Path], list[str]],
    make_b: Callable[[Path], list[str]],
    *,
    cwd: Path,
    outputs: Path,
    runs: int,
    warmup: int,
    check: Callable[[Path, Path], None],
) -> dict[str, Any]:
    """_support.compare with a fresh output dir per run, a score check and the xdist floor after each pair."""
    times_a: list[float] = []
    times_b: list[float] = []
    floors: list[float] = []
    for i in range(warmup + runs):
        out_a, out_b, out_f = outputs / f"a{i}", outputs / f"b{i}", outputs / f"f{i}"
        for out in (out_a, out_b, out_f):
            out.mkdir(parents=True)  # --basetemp needs its parent
        t_a = time_once(make_a(out_a), cwd, ok=(0, 1))  # 1: a partial submission fails its item
        t_b = time_once(make_b(out_b), cwd, ok=(0,))
        t_f = time_once(floor_cmd(out_f), out_f, ok=(0,))
        check(out_a, out_b)
        if i >= warmup:
            times_a.append(t_a)
            times_b.append(t_b)
            floors.append(t_f)
        for out in (out_a, out_b, out_f):
            shutil.rmtree(out, ignore_errors=True)
    gaps = [a - b for a, b in zip(times_a, times_b, strict=True)]
    return {
        **summarize(times_a, times_b),
        "a_minus_b_median_s": round(statistics.median(gaps), 3),
        "xdist_floor_median_s": round(statistics.median(floors), 3),
        "a_times_s": [round(t, 3) for t in times_a],
        "b_times_s": [round(t, 3) for t in times_b],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="submissions to score (default 32)")
    parser.add_argument("--runs", type=int, default=3, help="timed A/B pairs (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed A/B pairs first (default 1)")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs per scoring container, both sides")
    parser.add_argument(
        "--kinds",
        default="correct,partial",
        help="submission kinds, assigned round-robin (default correct,partial)",
    )
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if bad := [k for k in kinds if k not in selftest.SUBMISSION_KINDS]:
        parser.error(f"unknown kinds {bad}; expected some of {selftest.SUBMISSION_KINDS}")
    if args.n < 1 or args.runs < 1 or args.warmup < 0 or args.cpus < 1:
        parser.error("--n, --runs and --cpus must be >= 1, --warmup >= 0")

    ids = instance_ids(args.n)
    expected = {iid: selftest.EXPECTED[kinds[k % len(kinds)]] for k, iid in enumerate(ids)}
    with engine_session() as engine, tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        root = Path(tmp)
        cwd = root / "cwd"
        cwd.mkdir()
        try:
            tasks, blobs, subs = setup(engine, root, ids, kinds)
            result = alternate(
                lambda out: side_a_cmd(tasks, subs, blobs, out, args.cpus),
                lambda out: side_b_cmd(tasks, subs, blobs, out, args.cpus),
                cwd=cwd,
                outputs=root / "outputs",
                runs=args.runs,
                warmup=args.warmup,
                check=lambda out_a, out_b: verify(out_a, out_b, expected),
            )
        finally:
            leftovers = cleanup(engine, ids)
    report = {
        "benchmark": f"replay {args.n} submissions: pytest -n 2 vs programbench eval -w 2",
        "target_ratio": 1.05,
        "n": args.n,
        "runs": args.runs,
        "warmup": args.warmup,
        "cpus_per_container": args.cpus,
        "kinds": {k: sum(kinds[i % len(kinds)] == k for i in range(args.n)) for k in kinds},
        **result,
        "scores_match": True,  # verify() exits otherwise
        **leftovers,
    }
    finish(report)


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == SIDE_B_FLAG:
        side_b(*sys.argv[2:])
    else:
        main()
