"""A resumed run of N finished instances against ``--collect-only`` of the same N.

Target: ratio <= 2 (reuse must be nearly free). A first session (``-n 2``) scores N synthetic
instances into one run directory: the self-test task cloned under N instance ids, one local image
tagged under each id's name, a submission per id (every ``--correct-every``-th one ``correct``, the
rest ``partial``: 15/18, a complete verdict without an error code; a ``compile_failure`` has one,
and resume scores those again in full as ``programbench eval`` does). Its report must show every
instance scored as the self-test task says. Then, after a warmup pair, runs alternate A B A B:

- side A: the same command again, without ``-n`` (a single process, the honest measure of reuse),
  with the same ``--pb-output``: every instance must come back ``"reused": true`` with the first
  session's score, no container may be created (Docker's ``create`` events during the run, of our
  images or our run id, must be none) and no ``*.eval.json`` or marker in the run directory may change;
- side B: the same command with ``--collect-only``: the floor of a session over these N items.

The report gives medians and the ratio of A to B (``_support.summarize``) and the per-instance cost
of reuse, (A - B) / N. With ``--profile`` (or when the ratio misses the target) one more resumed
session runs under cProfile and the heaviest functions are printed to stderr.

    python benchmarks/bench_resume.py --n 10 --runs 2     # a quick check
    python benchmarks/bench_resume.py                     # 50 instances, 5 pairs
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _support import (
    COMPILED_PREFIX,
    cleanup,
    engine_session,
    finish,
    image_ref,
    setup,
    summarize,  # the script's own folder is on sys.path
)

from pytest_programbench import selftest

TARGET_RATIO = 2.0
Score = tuple[float, int, int, str | None]


def instance_ids(n: int) -> list[str]:
    return [f"pbselftest__bench-resume-{k}.5e1f7a0" for k in range(n)]


def session_cmd(tasks: Path, blobs: Path, subs: Path, out: Path, report: Path, *extra: str) -> list[str]:
    # --opt=value forms: pytest would take a separate value for a path when it picks the rootdir.
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--pb-tasks-dir={tasks}",
        f"--pb-blob-dir={blobs}",
        f"--pb-submissions={subs}",
        "--pb-pull=never",
        "--pb-cpus=1",
        f"--pb-output={out}",
        f"--pb-report={report}",
        "-q",
        *extra,
    ]


def run(cmd: Sequence[str], cwd: Path, log: Path, ok: Sequence[int]) -> tuple[float, str]:
    """Wall time and last output line of one run."""
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        elapsed = time.perf_counter() - start
    text = log.read_text(errors="replace")
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)}\nexited {proc.returncode} (expected {ok}):\n{text[-3000:]}")
    lines = text.strip().splitlines()
    return elapsed, lines[-1] if lines else ""


def read_scores(report: Path) -> dict[str, dict[str, Any]]:
    return {r["instance_id"]: r for r in json.loads(report.read_text())["instances"]}


def score_of(row: dict[str, Any]) -> Score:
    return (row["score"], row["n_resolved"], row["n_tests"], row.get("error_code"))


def check_first(report: Path, expected: dict[str, tuple[int, int, str | None]]) -> dict[str, Score]:
    """The first session scored every instance as the self-test task says, none reused or an error."""
    rows = read_scores(report)
    problems = []
    for iid, (n_resolved, n_tests, error_code) in sorted(expected.items()):
        row = rows.get(iid)
        got = None if row is None else score_of(row)[1:]
        if (
            row is None
            or row["outcome"] == "error"
            or row.get("reused")
            or got != (n_resolved, n_tests, error_code)
        ):
            problems.append(f"{iid}: got {row and (row['outcome'], row.get('reused'))} {got}")
    if unknown := set(rows) - set(expected):
        problems.append(f"instances nobody asked for: {sorted(unknown)[:5]}")
    if problems:
        raise SystemExit(
            f"the first session did not score all {len(expected)} ({report}):\n  " + "\n  ".join(problems)
        )
    return {iid: score_of(row) for iid, row in rows.items()}


def check_resumed(report: Path, first: dict[str, Score]) -> None:
    """Every instance reused, with the first session's score."""
    rows = read_scores(report)
    problems = [
        f"{iid}: reused={row and row.get('reused')} score {row and score_of(row)}, first session {want}"
        for iid, want in sorted(first.items())
        if (row := rows.get(iid)) is None or row.get("reused") is not True or score_of(row) != want
    ]
    if extra := set(rows) - set(first):
        problems.append(f"instances the first session did not have: {sorted(extra)[:5]}")
    if problems:
        raise SystemExit(
            f"the resumed session did not reuse all {len(first)} ({report}):\n  " + "\n  ".join(problems)
        )


def done_files(run_dir: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every verdict and marker in the run directory."""
    found = [*run_dir.rglob("*.eval.json"), *run_dir.rglob("programbench.json")]
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.stat().st_size) for p in found}


class CreateWatch:
    """Container ``create`` events, streamed live from before a run until a sentinel after it.

    Docker keeps only its last 256 events for ``--since`` queries, too few while other sessions
    churn containers, so the stream is opened before the run and read as it goes; after the run an
    image tag (the sentinel) is made and the stream read up to its event, so nothing is missed.
    """

    def __init__(self, engine: Any, ids: list[str]) -> None:
        self.engine = engine
        self.images = {image_ref(iid) for iid in ids}
        self.compiled = tuple(f"{COMPILED_PREFIX}{iid}:" for iid in ids)
        self.sentinel = f"pbbench-resume-sentinel:{uuid.uuid4().hex[:12]}"
        self.creates: list[dict[str, str]] = []
        self.seen = threading.Event()

    def __enter__(self) -> CreateWatch:
        # Returns once the daemon has subscribed us (the response headers are in).
        self.stream = self.engine.client.api.events(
            since=f"{time.time():.9f}",
            filters={"type": ["container", "image"], "event": ["create", "tag"]},
            decode=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        for event in self.stream:
            attrs = event.get("Actor", {}).get("Attributes", {})
            if event.get("Type") == "image":
                if attrs.get("name") == self.sentinel:
                    self.seen.set()
                    return
            else:
                self.creates.append(attrs)

    def stop(self) -> None:
        """Read the stream up to the sentinel: every create of the run is in ``self.creates``."""
        self.engine.tag(f"{selftest.image_name()}:{selftest.IMAGE_TAG}", self.sentinel)
        try:
            if not self.seen.wait(60):
                raise SystemExit("Docker events never delivered the sentinel: cannot vouch for no containers")
        finally:
            self.engine.client.images.remove(self.sentinel)

    def count(self, report: Path) -> dict[str, int]:
        """Creates of our images (or labelled with the run id in ``report``), and of any image."""
        from pytest_programbench.engine.containers import LABEL_RUN

        run_id = json.loads(report.read_text())["run_id"]
        ours = sum(
            a.get("image", "") in self.images
            or a.get("image", "").startswith(self.compiled)
            or a.get(LABEL_RUN) == run_id
            for a in self.creates
        )
        return {"ours": ours, "all": len(self.creates)}

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stream.close()
        self.thread.join(5)


def profile(cmd: list[str], cwd: Path, root: Path, top: int) -> None:
    """One more resumed session under cProfile (and -X importtime); where its time goes, on stderr."""
    prof = root / "resume.prof"
    log = root / "profile.log"
    profiled = [cmd[0], "-X", "importtime", "-m", "cProfile", "-o", str(prof), *cmd[1:]]
    run(profiled, cwd, log, ok=(0, 1))
    out = io.StringIO()
    stats = pstats.Stats(str(prof), stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats("pytest_programbench", top)
    imports = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if parts[1].isdigit():
                imports.append((int(parts[1]), parts[2]))
    imports.sort(reverse=True)
    lines = [f"{us / 1e3:8.1f} ms  {name}" for us, name in imports[:top]]
    print(
        f"--- cProfile of a resumed session ({prof}) ---\n{out.getvalue()}\n"
        f"--- -X importtime: top cumulative imports ---\n" + "\n".join(lines),
        file=sys.stderr,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="finished instances (default 50)")
    parser.add_argument("--runs", type=int, default=5, help="timed A/B pairs (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed A/B pairs first (default 1)")
    parser.add_argument(
        "--correct-every", type=int, default=10, help="every k-th submission is correct (default 10)"
    )
    parser.add_argument("--profile", action="store_true", help="profile a resumed session even within target")
    parser.add_argument(
        "--profile-top", type=int, default=30, help="functions and imports to print (default 30)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (for a look)")
    args = parser.parse_args()
    if args.n < 1 or args.runs < 1 or args.warmup < 0 or args.correct_every < 1:
        parser.error("--n, --runs and --correct-every must be >= 1, --warmup >= 0")

    ids = instance_ids(args.n)
    # Not compile_failure: an eval.json with an error_code is re-scored on resume, never reused.
    kinds = ["correct" if k % args.correct_every == 0 else "partial" for k in range(args.n)]
    expected = {iid: selftest.EXPECTED[kind] for iid, kind in zip(ids, kinds, strict=True)}
    started = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="bench-resume-")
    root = Path(tmp)
    swept = 0
    report_first, report_a, report_b = root / "first.json", root / "a.json", root / "b.json"
    try:
        with engine_session() as engine:
            try:
                tasks, blobs, subs = setup(engine, root, ids, kinds)  # bench_replay's: copies, tags, subs
                cwd, out, logs = root / "cwd", root / "run", root / "logs"
                cwd.mkdir()
                logs.mkdir()
                first_cmd = session_cmd(tasks, blobs, subs, out, report_first, "-n", "2")
                with CreateWatch(engine, ids) as watch:
                    first_s, first_line = run(first_cmd, cwd, logs / "first.log", ok=(0, 1))
                    watch.stop()
                first = check_first(report_first, expected)
                first_creates = watch.count(report_first)
                if first_creates["ours"] < args.n:  # one compile container per instance at least
                    raise SystemExit(
                        f"Docker events saw {first_creates} container creates during the first session of "
                        f"{args.n} instances: the no-container check cannot be trusted"
                    )
                before = done_files(out)
                if len(before) != 2 * args.n:
                    raise SystemExit(
                        f"expected {2 * args.n} verdicts and markers in {out}, found {len(before)}"
                    )

                cmd_a = session_cmd(tasks, blobs, subs, out, report_a)
                cmd_b = session_cmd(tasks, blobs, subs, out, report_b, "--collect-only")
                times_a: list[float] = []
                times_b: list[float] = []
                creates_all: list[int] = []
                last_a = last_b = ""
                for i in range(args.warmup + args.runs):
                    report_a.unlink(missing_ok=True)
                    with CreateWatch(engine, ids) as watch:
                        t_a, last_a = run(cmd_a, cwd, logs / f"a{i}.log", ok=(0, 1))
                        watch.stop()
                    creates = watch.count(report_a)
                    if creates["ours"]:
                        raise SystemExit(
                            f"resumed session {i} created {creates['ours']} container(s) of ours"
                        )
                    check_resumed(report_a, first)
                    if (now := done_files(out)) != before:
                        changed = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
                        raise SystemExit(f"resumed session {i} touched verdicts or markers: {changed[:5]}")
                    t_b, last_b = run(cmd_b, cwd, logs / f"b{i}.log", ok=(0,))
                    if f"{args.n} tests collected" not in last_b:
                        raise SystemExit(f"side B did not collect {args.n} tests: {last_b}")
                    if i >= args.warmup:
                        times_a.append(t_a)
                        times_b.append(t_b)
                        creates_all.append(creates["all"])
                result = summarize(times_a, times_b)
                per_instance_ms = 1e3 * (result["a_median_s"] - result["b_median_s"]) / args.n
                print(
                    f"breakdown: resumed {result['a_median_s']:.2f}s"
                    f" = collect-only {result['b_median_s']:.2f}s"
                    f" + {args.n} x {per_instance_ms:.1f} ms reuse per instance",
                    file=sys.stderr,
                )
                if args.profile or result["ratio_median"] > TARGET_RATIO:
                    profile(cmd_a, cwd, root, args.profile_top)
            finally:
                with contextlib.suppress(Exception):
                    from pytest_programbench.engine.containers import LABEL_RUN

                    if report_first.is_file():
                        swept = engine.sweep({LABEL_RUN: json.loads(report_first.read_text())["run_id"]})
                leftovers = cleanup(engine, ids)  # untags the N names only; the self-test image keeps its own
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    report: dict[str, Any] = {
        "benchmark": f"resumed run of {args.n} finished instances vs --collect-only of the same {args.n}",
        "target_ratio": TARGET_RATIO,
        "n": args.n,
        "runs": args.runs,
        "warmup": args.warmup,
        "submissions": {k: kinds.count(k) for k in sorted(set(kinds))},
        "first_session_s": round(first_s, 1),
        "first_session_last_line": first_line,
        "first_session_container_creates": first_creates["ours"],
        **result,
        "a_times_s": [round(t, 3) for t in times_a],
        "b_times_s": [round(t, 3) for t in times_b],
        "reuse_ms_per_instance": round(per_instance_ms, 2),
        "all_reused_same_score": True,  # check_resumed exits otherwise
        "containers_created_by_resumed_runs": 0,  # container_creates is checked after every A run
        "any_container_creates_during_a_median": statistics.median(creates_all),
        "verdicts_and_markers_untouched": True,  # done_files is compared after every A run
        "a_last_line": last_a,
        "b_last_line": last_b,
        "total_wall_s": round(time.perf_counter() - started, 1),
        "labelled_containers_swept": swept,
        **leftovers,
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "cpus": os.cpu_count(),
    }
    finish(report)


if __name__ == "__main__":
    main()
