"""The extra outputs at real size: --pb-report, --pb-junit-tests and --pb-html against none of them.

Target: time ratio <= 1.2. N generated instances (default all 200 tasks of the programbench
package, so the real test counts: 247,444 counted hidden tests, the largest task 14,637; see
tests/synthruns.py) are left in a run directory as a finished replay session leaves them, so
every session below reuses them without a container. Runs alternate A B A B, one process each
(no -n), after a warmup pair:

- side A: the session with ``--pb-report``, ``--pb-junit-tests`` and ``--pb-html`` (and the
  terminal summary, always there);
- side B: the same session without the three.

Both sides print the summary and both read each eval.json once for the hidden-test detail (the
failed items' messages need it), so A - B is the price of the outputs themselves; that read is
timed on its own too (in-process, over every eval.json). Peak memory is the session process's
max RSS. A's outputs are checked: N rows, every counted test in the JUnit file, the HTML written.

    python benchmarks/bench_reports.py --n 20 --runs 1     # a quick check
    python benchmarks/bench_reports.py                     # 200 instances, 3 pairs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _support import summarize  # the script's own folder is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import synthruns  # tests/synthruns.py: the generated runs the tests use too

TARGET_RATIO = 1.2
#: Runs pytest in this process and leaves its peak RSS (KiB) in the file named by argv[1].
_MEASURED = (
    "import resource, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "sys.argv[0] = 'pytest'\n"
    "try:\n"
    "    runpy.run_module('pytest', run_name='__main__')\n"
    "finally:\n"
    "    open(out, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
)


def session(run: synthruns.Run, cwd: Path, extra: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of one session."""
    rss = cwd / "rss.txt"
    cmd = [
        sys.executable,
        "-c",
        _MEASURED,
        str(rss),
        "-p",
        "no:cacheprovider",
        "-q",
        f"--pb-submissions={run.subs}",
        f"--pb-output={run.out}",
        "--pb-pull=never",
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: items below the threshold fail, as they should
        raise SystemExit(f"session exited {proc.returncode}:\n{proc.stdout[-3000:]}")
    return elapsed, int(rss.read_text()) // 1024


def check(outputs: dict[str, Path], n: int, total_tests: int) -> None:
    doc = json.loads(outputs["report"].read_text())
    assert len(doc["instances"]) == n, "every instance has a row"
    assert sum(r["n_tests"] for r in doc["instances"]) == total_tests
    with outputs["tests"].open() as f:
        head = f.readline() + f.readline()
    assert f'tests="{total_tests}"' in head, head
    cases = 0
    with outputs["tests"].open() as f:
        cases = sum(line.startswith("    <testcase ") for line in f)
    assert cases == total_tests, (cases, total_tests)
    assert outputs["html"].stat().st_size > 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="instances (the package has 200 tasks)")
    parser.add_argument("--runs", type=int, default=3, help="A/B pairs after the warmup pair")
    args = parser.parse_args()

    ids = synthruns.task_ids()[: args.n]
    with tempfile.TemporaryDirectory(prefix="pb-bench-reports-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        run = synthruns.make_run(root / "run", ids, seed=7)
        size = sum(p.stat().st_size for p in run.out.glob("*/*.eval.json"))
        print(
            f"generated {len(ids)} instances in {time.perf_counter() - started:.1f}s; eval.json total "
            f"{size / 2**20:.0f} MiB",
            file=sys.stderr,
        )
        from pytest_programbench.scoring import detail

        tasks = {iid: synthruns.load_task(iid) for iid in ids}
        started = time.perf_counter()
        total_tests = 0
        for iid in ids:
            hidden = detail.for_instance(run.out / iid / f"{iid}.eval.json", tasks[iid])
            assert hidden is not None
            total_tests += sum(detail.totals(hidden).values())
        detail_s = time.perf_counter() - started

        cwd = root / "cwd"
        cwd.mkdir()
        outputs = {"report": root / "report.json", "tests": root / "tests.xml", "html": root / "report.html"}
        side_a = [
            f"--pb-report={outputs['report']}",
            f"--pb-junit-tests={outputs['tests']}",
            f"--pb-html={outputs['html']}",
        ]
        session(run, cwd, side_a)  # warmup pair
        session(run, cwd, [])
        check(outputs, len(ids), total_tests)
        times_a, times_b, rss_a, rss_b = [], [], [], []
        for _ in range(args.runs):
            for side, times, rss in ((side_a, times_a, rss_a), ([], times_b, rss_b)):
                seconds, peak = session(run, cwd, side)
                times.append(seconds)
                rss.append(peak)
        result = {
            "instances": len(ids),
            "counted_tests": total_tests,
            "eval_json_mib": round(size / 2**20, 1),
            **{k: round(v, 3) for k, v in summarize(times_a, times_b).items()},
            "target_ratio": TARGET_RATIO,
            "peak_rss_mib_a": max(rss_a),
            "peak_rss_mib_b": max(rss_b),
            "detail_read_s_all_instances": round(detail_s, 3),
            "outputs_mib": {k: round(p.stat().st_size / 2**20, 1) for k, p in outputs.items()},
            "cpus": os.cpu_count(),
            "median_a_s": round(statistics.median(times_a), 2),
        }
        print(json.dumps(result, indent=2))
        if result["ratio_median"] > TARGET_RATIO:
            print(f"ratio {result['ratio_median']:.2f} misses the target {TARGET_RATIO}", file=sys.stderr)


if __name__ == "__main__":
    main()
