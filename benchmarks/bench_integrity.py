"""Scoring with the integrity audit against scoring without it, on real builds.

Target: ratio <= 1.10 on every task. Both sides call ``scoring.score_submission`` in this
process on the same honest submission, with the same pinned image and CPUs; side A passes an
``integrity.Audit``, side B none. Tasks: the self-test's correct submission (C, 18 hidden
tests), and the realistic Rust (``rust-usrlocal``, ``cargo build --release``) and Go (``go
build``) fixtures of tests/realistic.py, whose audits read every file the build wrote (a
Rust target/ directory, Go's build cache), hash and compare them with the reference's
content, and watch the executables of the processes while compile.sh and each branch's
tests run. Runs alternate A B A B after a warmup pair; every run's score must be 1.0 (A's
with no finding). The verdict is on the worst task's median ratio.

    python benchmarks/bench_integrity.py --runs 3                 # selftest, rust, go
    python benchmarks/bench_integrity.py --runs 5 --tasks rust
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import finish, summarize  # the script's own folder is on sys.path

from pytest_programbench import selftest
from pytest_programbench.containers import Engine
from pytest_programbench.integrity import Audit
from pytest_programbench.model import Instance
from pytest_programbench.scoring import score_submission
from pytest_programbench.tasks import load_tests

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


def measure(engine: Engine, name: str, root: Path, runs: int, cpus: int) -> dict[str, Any]:
    if name == "selftest":
        instance, submission, blobs, made = selftest_task(root, engine)
    else:
        instance, submission, blobs, made = realistic_task(name, root)
    try:
        task = load_tests(instance)
        image = engine.image_id(instance.image_ref)
        counter = iter(range(10**6))

        def once(audited: bool) -> float:
            out = root / f"run-{next(counter)}"
            audit = Audit(engine, task.get("eval_clean_hashes", [])) if audited else None
            started = time.perf_counter()
            outcome = score_submission(
                instance, submission, blob_dir=blobs, instance_dir=out, cpus=cpus, task=task,
                image=image, audit=audit,
            )  # fmt: skip
            elapsed = time.perf_counter() - started
            if outcome.score != 1.0 or outcome.findings or (audit is not None and audit.errors):
                raise SystemExit(f"unexpected verdict on {name}: {outcome} {audit and audit.errors}")
            return elapsed

        once(True), once(False)  # warmup: image layers, page cache, the reference's pieces
        with_audit, without = [], []
        for _ in range(runs):
            with_audit.append(once(True))
            without.append(once(False))
    finally:
        for ref in made:
            engine.client.images.remove(ref)  # untag only: the fixture's image stays, cached
    return {"task": name, **summarize(with_audit, without), "with_audit_s": with_audit, "without_s": without}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--tasks", default="selftest,rust,go", help="comma list of selftest, rust, go")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="pb-bench-integrity-"))
    results = []
    with Engine() as engine:
        for name in args.tasks.split(","):
            results.append(measure(engine, name, root / name, args.runs, args.cpus))
            print(f"{name}: median ratio {results[-1]['ratio_median']:.3f}", file=sys.stderr, flush=True)
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
