"""Controller memory of a replay session with xdist against a plain session of as many trivial tests.

Target: ratio <= 1.5. Results crossing xdist are summaries, not evaluator logs, so the controller of a
``pytest -n 2`` session scoring N submissions should hold little more than one of N trivial tests.

Side A replays N synthetic instances: the self-test task cloned under N instance ids, one local image
tagged under each id's name, a submission per id (every ``--correct-every``-th one ``correct``, whose
18 hidden-test results cross xdist; the rest ``compile_failure``, about a second each). Side B runs a
generated file of N trivial parametrized tests. Both run ``pytest -n 2 -p no:cacheprovider -q`` in
their own directory, each through a tiny ``python -c`` wrapper that calls ``pytest.main`` and then
reads its own peak from ``/proc/self/status`` (VmHWM: the high-water mark of this process's memory
since it was started). The xdist workers are separate child processes, so their memory is not in it
(the wrapper checks that: it finds the workers by parent pid and reads their peaks apart).
``getrusage(RUSAGE_SELF).ru_maxrss`` would not do: Linux carries the high-water mark of the memory a
process had before exec into it, and a child started by vfork+exec (as subprocess does) had its
parent's, so a small controller reads as big as the benchmark script that started it. Measuring from
outside with wait4() is worse still: that also counts the children's peaks. Runs alternate A B A B;
side A's --pb-report must show every instance scored as the self-test task says, none an error.

    python benchmarks/bench_memory.py --n 20       # a quick check
    python benchmarks/bench_memory.py              # 200 instances, one A/B pair (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from _support import cleanup, engine_session, finish, setup  # the script's own folder is on sys.path

from pytest_programbench import selftest

TARGET_RATIO = 1.5
TRACEMALLOC_ENV = "PB_BENCH_TRACEMALLOC"
HWM_SLACK_KB = 2048

# Runs as ``python -c WRAPPER <result.json> <pytest args...>``; kept small so it adds the same little
# to both sides. With PB_BENCH_TRACEMALLOC=K it also records the K biggest allocation sites alive when
# the session finishes (diagnostics only: tracing inflates the peak, so such runs do not compare).
WRAPPER = textwrap.dedent(
    """
    import json, os, resource, sys
    TOP = int(os.environ.get("PB_BENCH_TRACEMALLOC") or 0)
    if TOP:
        import tracemalloc
        tracemalloc.start(8)
    import pytest

    def status(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                return {k: v.split()[0] for k, _, v in (line.partition(":") for line in f) if v.strip()}
        except OSError:
            return {}

    class Probe:
        def __init__(self):
            self.workers, self.top = {}, []

        def scan(self):
            me = str(os.getpid())
            for pid in filter(str.isdigit, os.listdir("/proc")):
                st = status(pid)
                if st.get("PPid") == me and "VmHWM" in st:
                    old = self.workers.get(int(pid), 0)
                    self.workers[int(pid)] = max(old, int(st["VmHWM"]))

        def pytest_testnodeready(self, node):
            self.scan()

        def pytest_testnodedown(self, node, error):
            self.scan()

        @pytest.hookimpl(tryfirst=True)
        def pytest_sessionfinish(self, session):
            self.scan()  # before xdist tears its workers down (its hook is trylast)
            if TOP:
                ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
                snap = tracemalloc.take_snapshot().filter_traces(ignore)
                current, peak = tracemalloc.get_traced_memory()
                self.top = {
                    "traced_current_kb": current // 1024,
                    "traced_peak_kb": peak // 1024,
                    "by_file": [str(s) for s in snap.statistics("filename")[:TOP]],
                    "by_line": [str(s) for s in snap.statistics("lineno")[:TOP]],
                    "by_traceback": [
                        [*s.traceback.format()[-6:], f"{s.size // 1024} KiB in {s.count} blocks"]
                        for s in snap.statistics("traceback")[:TOP]
                    ],
                }

    probe = Probe()
    rc = pytest.main(sys.argv[2:], plugins=[probe])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    own = status("self")  # the same high-water mark, read a moment later (so >= peak, <= peak_after)
    result = {
        "pid": os.getpid(),
        "exit_code": int(rc),
        "ru_maxrss_self_kb": peak,
        "vmhwm_self_kb": int(own.get("VmHWM", -1)),
        "ru_maxrss_self_after_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "vmrss_end_kb": int(own.get("VmRSS", -1)),
        "ru_maxrss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "workers_vmhwm_kb": probe.workers,
        "tracemalloc": probe.top,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(result, f)
    sys.exit(rc)
    """
)

PLAIN_TESTS = """\
import pytest


@pytest.mark.parametrize("i", range({n}))
def test_x(i):
    assert i >= 0
"""


def instance_ids(n: int) -> list[str]:
    return [f"pbselftest__bench-memory-{k}.5e1f7a0" for k in range(n)]


def pytest_cmd(result: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", WRAPPER, str(result), "-n", "2", "-p", "no:cacheprovider", "-q", *args]


def run_side(
    cmd: list[str], cwd: Path, result: Path, ok: tuple[int, ...], env: dict[str, str]
) -> dict[str, Any]:
    """One run of a side: the wrapper's measurement, its wall time and the tail of pytest's output."""
    log = result.with_suffix(".log")
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    elapsed = time.perf_counter() - start
    text = log.read_text(errors="replace")
    if proc.returncode not in ok or not result.is_file():
        raise SystemExit(f"pytest in {cwd} exited {proc.returncode} (expected {ok}):\n{text[-3000:]}")
    measured: dict[str, Any] = json.loads(result.read_text())
    measured["wall_s"] = elapsed
    measured["last_line"] = text.strip().splitlines()[-1] if text.strip() else ""
    return measured


def check_controller_only(side: str, m: dict[str, Any]) -> None:
    """The measured process ran xdist: two worker children, apart from it; RUSAGE_SELF is its own peak."""
    workers = {int(pid): kb for pid, kb in m["workers_vmhwm_kb"].items()}
    problems = []
    if len(workers) != 2 or m["pid"] in workers:
        problems.append(f"expected 2 xdist worker children of pid {m['pid']}, found {sorted(workers)}")
    # ru_maxrss is the larger of VmHWM and the peak carried in at exec (see the module's docstring);
    # it can only be above VmHWM, never below it by more than the kernel's per-CPU counter slack.
    if m["vmhwm_self_kb"] <= 0:
        problems.append("no VmHWM in /proc/self/status")
    elif m["vmhwm_self_kb"] > m["ru_maxrss_self_after_kb"] + HWM_SLACK_KB:
        problems.append(f"VmHWM {m['vmhwm_self_kb']} KiB above ru_maxrss {m['ru_maxrss_self_after_kb']} KiB")
    if problems:
        raise SystemExit(f"side {side}: cannot vouch the measure is the controller's alone: {problems}")


def check_scores(report: Path, expected: dict[str, tuple[int, int, str | None]]) -> dict[str, int]:
    """Every instance scored, as the self-test task says, none a harness error; outcome counts."""
    rows = {r["instance_id"]: r for r in json.loads(report.read_text())["instances"]}
    problems = []
    for iid, (n_resolved, n_tests, error_code) in sorted(expected.items()):
        row = rows.get(iid)
        got = None if row is None else (row["n_resolved"], row["n_tests"], row.get("error_code"))
        if row is None or row["outcome"] == "error" or got != (n_resolved, n_tests, error_code):
            problems.append(
                f"{iid}: got {row and row['outcome']} {got}, expected {(n_resolved, n_tests, error_code)}"
            )
    if unknown := set(rows) - set(expected):
        problems.append(f"instances nobody asked for: {sorted(unknown)[:5]}")
    if problems:
        raise SystemExit(
            f"side A did not score all {len(expected)} instances ({report}):\n  " + "\n  ".join(problems)
        )
    outcomes = [r["outcome"] for r in rows.values()]
    return {o: outcomes.count(o) for o in sorted(set(outcomes))}


def sweep_run(engine: Any, report: Path, rss: Path) -> int:
    """Remove containers labelled with this run's id (or owned by its processes); how many there were."""
    from pytest_programbench.engine.containers import LABEL_OWNER, LABEL_RUN, session_owner

    removed = 0
    if report.is_file():
        removed += engine.sweep({LABEL_RUN: json.loads(report.read_text())["run_id"]})
    if rss.is_file():
        measured = json.loads(rss.read_text())
        host = session_owner().rpartition(":")[0]
        for pid in [measured["pid"], *measured["workers_vmhwm_kb"]]:
            removed += engine.sweep({LABEL_RUN: None, LABEL_OWNER: f"{host}:{pid}"})
    return removed


def mib(kb: int) -> float:
    return round(kb / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--n", type=int, default=200, help="instances on side A, tests on side B (default 200)"
    )
    parser.add_argument("--runs", type=int, default=1, help="A/B pairs (default 1: side A takes minutes)")
    parser.add_argument("--cpus", type=int, default=1, help="--pb-cpus of side A (default 1)")
    parser.add_argument(
        "--correct-every", type=int, default=20, help="every k-th submission is correct (default 20)"
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="K",
        help="diagnostics: trace allocations in both controllers and report their K biggest sites\n"
        "(tracing inflates the peaks: such runs are not a measurement)",
    )
    args = parser.parse_args()
    if args.n < 1 or args.runs < 1 or args.cpus < 1 or args.correct_every < 1 or args.tracemalloc < 0:
        parser.error("--n, --runs, --cpus and --correct-every must be >= 1, --tracemalloc >= 0")

    ids = instance_ids(args.n)
    kinds = ["correct" if k % args.correct_every == 0 else "compile_failure" for k in range(args.n)]
    expected = {iid: selftest.EXPECTED[kind] for iid, kind in zip(ids, kinds, strict=True)}
    env = {k: v for k, v in os.environ.items() if k != TRACEMALLOC_ENV}
    if args.tracemalloc:
        env[TRACEMALLOC_ENV] = str(args.tracemalloc)

    runs_a: list[dict[str, Any]] = []
    runs_b: list[dict[str, Any]] = []
    outcomes: dict[str, int] = {}
    swept = 0
    started = time.perf_counter()
    with (
        engine_session() as engine,
        tempfile.TemporaryDirectory(prefix="bench-memory-", ignore_cleanup_errors=True) as tmp,
    ):
        root = Path(tmp)
        try:
            tasks, blobs, subs = setup(engine, root, ids, kinds)  # bench_replay's: copies, tags, submissions
            plain = root / "plain"
            plain.mkdir()
            (plain / "test_plain.py").write_text(PLAIN_TESTS.format(n=args.n))
            for i in range(args.runs):
                out_a, cwd_a, out_b = root / f"a{i}", root / f"a{i}" / "cwd", root / f"b{i}"
                cwd_a.mkdir(parents=True)
                out_b.mkdir()
                report, rss = out_a / "report.json", out_a / "rss.json"
                try:
                    measured = run_side(
                        pytest_cmd(
                            rss,
                            f"--pb-tasks-dir={tasks}",
                            f"--pb-blob-dir={blobs}",
                            f"--pb-submissions={subs}",
                            "--pb-pull=never",
                            f"--pb-cpus={args.cpus}",
                            f"--pb-output={out_a / 'run'}",
                            f"--pb-report={report}",
                            f"--basetemp={out_a / 'basetemp'}",
                        ),
                        cwd_a,
                        rss,
                        ok=(0, 1),  # 1: the compile failures fail their items
                        env=env,
                    )
                finally:
                    swept += sweep_run(engine, report, rss)
                outcomes = check_scores(report, expected)
                check_controller_only("A", measured)
                runs_a.append(measured)
                runs_b.append(
                    run_side(
                        pytest_cmd(out_b / "rss.json", f"--basetemp={out_b / 'basetemp'}"),
                        plain,
                        out_b / "rss.json",
                        ok=(0,),
                        env=env,
                    )
                )
                check_controller_only("B", runs_b[-1])
                if f"{args.n} passed" not in runs_b[-1]["last_line"]:
                    raise SystemExit(f"side B did not pass {args.n} tests: {runs_b[-1]['last_line']}")
        finally:
            leftovers = cleanup(engine, ids)  # untags the N names only; the self-test image keeps its own
    elapsed = time.perf_counter() - started

    peaks_a = [m["vmhwm_self_kb"] for m in runs_a]
    peaks_b = [m["vmhwm_self_kb"] for m in runs_b]
    ratios = [a / b for a, b in zip(peaks_a, peaks_b, strict=True)]
    report_doc: dict[str, Any] = {
        "benchmark": f"controller peak RSS, pytest -n 2: replay {args.n} instances vs {args.n} trivial tests",
        "target_ratio": TARGET_RATIO,
        "n": args.n,
        "runs": args.runs,
        "cpus_per_container": args.cpus,
        "submissions": {k: kinds.count(k) for k in sorted(set(kinds))},
        "note": f"every {args.correct_every}th submission is correct, so real evaluator results "
        f"(18 hidden tests each) cross xdist; the rest fail to compile",
        "a_outcomes": outcomes,
        "all_scored": True,  # check_scores exits otherwise
        "a_peak_mib": [mib(kb) for kb in peaks_a],
        "b_peak_mib": [mib(kb) for kb in peaks_b],
        "a_median_mib": mib(int(statistics.median(peaks_a))),
        "b_median_mib": mib(int(statistics.median(peaks_b))),
        "delta_median_mib": mib(int(statistics.median(a - b for a, b in zip(peaks_a, peaks_b, strict=True)))),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "a_end_rss_mib": [mib(m["vmrss_end_kb"]) for m in runs_a],
        "b_end_rss_mib": [mib(m["vmrss_end_kb"]) for m in runs_b],
        "a_worker_peaks_mib": [sorted(mib(kb) for kb in m["workers_vmhwm_kb"].values()) for m in runs_a],
        "b_worker_peaks_mib": [sorted(mib(kb) for kb in m["workers_vmhwm_kb"].values()) for m in runs_b],
        "controller_only": "checked: 2 xdist workers are child processes apart from the measured pid, "
        "and its own VmHWM is the measure (at most its ru_maxrss)",
        "a_wall_s": [round(m["wall_s"], 1) for m in runs_a],
        "b_wall_s": [round(m["wall_s"], 1) for m in runs_b],
        "a_last_line": runs_a[-1]["last_line"],
        "b_last_line": runs_b[-1]["last_line"],
        "total_wall_s": round(elapsed, 1),
        "labelled_containers_swept": swept,
        **leftovers,
    }
    if args.tracemalloc:
        report_doc["note_tracemalloc"] = "allocations were traced: peaks are inflated, not a measurement"
        report_doc["a_tracemalloc"] = runs_a[-1]["tracemalloc"]
        report_doc["b_tracemalloc"] = runs_b[-1]["tracemalloc"]
    finish(report_doc)


if __name__ == "__main__":
    main()
