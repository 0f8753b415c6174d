"""Scoring with the integrity audit against scoring without it, on real builds.

Target: ratio <= 1.10 on every task. Both sides call ``scoring.score_submission`` in this
process on the same honest submission, with the same pinned image and CPUs; side A passes an
``integrity.Audit``, side B none. Tasks: the self-test's correct submission (C, 18 hidden
tests), and the realistic Rust (``rust-usrlocal``, ``cargo build --release``) and Go (``go
build``) fixtures of tests/realistic.py, whose audits read every file the build wrote (a
Rust target/ directory, Go's build cache), hash and compare them with the reference's
content, and watch the executables of the processes while compile.sh and each branch's
tests run. Runs alternate A B A B after a warmup pair; every run's score must be 1.0 (A's
with no finding). The verdict is on the worst task's median ratio. Each task also reports
``audit_share``: the audit's own seconds (its hooks, which the evaluator waits for, plus the
process watch's CPU time) over the audited run's, a figure machine load moves far less.

    python benchmarks/bench_integrity.py --runs 3                 # selftest, rust, go
    python benchmarks/bench_integrity.py --runs 5 --tasks rust
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import finish, summarize  # the script's own folder is on sys.path

from pytest_programbench import selftest
from pytest_programbench.engine.containers import Engine
from pytest_programbench.model import Instance
from pytest_programbench.scoring.evaluator import score_submission
from pytest_programbench.scoring.integrity import Audit
from pytest_programbench.scoring.verdict import ScoreRequest
from pytest_programbench.selection.tasks import load_tests

TESTS = Path(__file__).resolve().parents[1] / "tests"
REALISTIC = {"rust": ("rust-usrlocal", "release"), "go": ("go", "build")}


def selftest_task(root: Path, engine: Engine) -> tuple[Instance, Path, Path, list[str]]:
    blobs = selftest.write_blob_dir(root / "blobs") / selftest.INSTANCE_ID
    submission = selftest.write_submission("correct", root / "submission")
    instance = Instance(
        instance_id=selftest.INSTANCE_ID,
        language="c",
        difficulty="easy",
        repository="",
        task_dir=str(selftest.tasks_dir() / selftest.INSTANCE_ID),
        image=selftest.image_name(),
        image_tag=selftest.IMAGE_TAG,
    )
    return instance, submission, blobs, []


def realistic_task(name: str, root: Path) -> tuple[Instance, Path, Path, list[str]]:
    """A realistic fixture's task under one instance id, and its honest submission; the tags made."""
    sys.path.insert(0, str(TESTS))
    import realistic
    from programbench.constants import image_name_from_instance_id
    from support import CREATED_TAGS

    fixture_name, kind = REALISTIC[name]
    fixture = realistic.FIXTURES[fixture_name]
    image = realistic.build_image(fixture)
    tasks, blobs, ids = realistic.clone(fixture, root, [kind], image=image)
    iid = ids[kind]
    submission = realistic.write_submission(fixture, kind, root / "submission")
    instance = Instance(
        instance_id=iid,
        language=fixture.language,
        difficulty="easy",
        repository="",
        task_dir=str(tasks / iid),
        image=image_name_from_instance_id(iid),
        image_tag=selftest.IMAGE_TAG,
    )
    made = sorted(CREATED_TAGS)
    CREATED_TAGS.clear()
    return instance, submission, blobs / iid, made


#: Seconds spent in the audit's own code during the current run: its hooks (which the
#: evaluator's thread waits for) and the process watch's thread CPU time (which runs beside it).
SPENT = {"hooks": 0.0, "watch_cpu": 0.0}


def instrument() -> None:
    """Time the audit's hooks and its watch thread, so a run says how much of it was the audit.

    On a shared machine the A/B ratio of whole scorings moves by more than the audit costs;
    the audit's own seconds over the run's are the steadier figure (``audit_share``).
    """
    from pytest_programbench.scoring import integrity

    def timed(method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                SPENT["hooks"] += time.perf_counter() - started

        return call

    for hook in ("task_image", "submission", "after_compile_step", "compiled", "before_results_read",
                 "evaluator_log", "_judge_processes"):  # fmt: skip
        setattr(integrity.Audit, hook, timed(getattr(integrity.Audit, hook)))
    integrity.ProcessWatch.results = timed(integrity.ProcessWatch.results)  # type: ignore[method-assign]
    run = integrity.ProcessWatch._run

    def watched(self: Any) -> None:
        started = time.thread_time()
        try:
            run(self)
        finally:
            SPENT["watch_cpu"] += time.thread_time() - started

    integrity.ProcessWatch._run = watched  # type: ignore[method-assign]


def measure(engine: Engine, name: str, root: Path, runs: int, cpus: int) -> dict[str, Any]:
    if name == "selftest":
        instance, submission, blobs, made = selftest_task(root, engine)
    else:
        instance, submission, blobs, made = realistic_task(name, root)
    try:
        task = load_tests(instance)
        image = engine.image_id(instance.image_ref)
        counter = iter(range(10**6))

        shares: list[float] = []

        def once(audited: bool) -> float:
            out = root / f"run-{next(counter)}"
            audit = Audit(engine, task.get("eval_clean_hashes", [])) if audited else None
            SPENT.update(hooks=0.0, watch_cpu=0.0)
            started = time.perf_counter()
            outcome = score_submission(ScoreRequest(
                instance, submission, blob_dir=blobs, instance_dir=out, cpus=cpus, task=task,
                image=image, audit=audit,
            ))  # fmt: skip
            elapsed = time.perf_counter() - started
            if outcome.score != 1.0 or outcome.findings or (audit is not None and audit.errors):
                raise SystemExit(f"unexpected verdict on {name}: {outcome} {audit and audit.errors}")
            if audited:
                shares.append((SPENT["hooks"] + SPENT["watch_cpu"]) / elapsed)
            return elapsed

        once(True), once(False)  # warmup: image layers, page cache, the reference's pieces
        shares.clear()
        with_audit, without = [], []
        for _ in range(runs):
            with_audit.append(once(True))
            without.append(once(False))
    finally:
        for ref in made:
            engine.client.images.remove(ref)  # untag only: the fixture's image stays, cached
    return {
        "task": name,
        **summarize(with_audit, without),
        # The audit's own seconds (hooks + watch CPU) over the audited run's: 1/(1 - share) is
        # the ratio it costs at most, however loaded the machine is.
        "audit_share_median": statistics.median(shares),
        "audit_share_max": max(shares),
        "with_audit_s": with_audit,
        "without_s": without,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--tasks", default="selftest,rust,go", help="comma list of selftest, rust, go")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="pb-bench-integrity-"))
    instrument()
    results = []
    with Engine() as engine:
        for name in args.tasks.split(","):
            results.append(measure(engine, name, root / name, args.runs, args.cpus))
            done = results[-1]
            print(
                f"{name}: median ratio {done['ratio_median']:.3f}, "
                f"audit share {done['audit_share_median']:.3f}",
                file=sys.stderr,
                flush=True,
            )
    worst = max(results, key=lambda r: r["ratio_median"])
    finish(
        {
            "benchmark": "scoring with the integrity audit vs without",
            "target_ratio": 1.10,
            "runs": args.runs,
            "cpus": args.cpus,
            "ratio_median": worst["ratio_median"],
            "worst_task": worst["task"],
            "tasks": results,
        }
    )


if __name__ == "__main__":
    main(sys.argv[1:])
