"""Scoring with the integrity audit against scoring without it, on the self-test task.

Target: ratio <= 1.10. Both sides call ``scoring.score_submission`` in this process on the same
submission (the self-test's correct one, 18 hidden tests, so compile and both branches run), with
the same pinned image and CPUs; side A passes an ``integrity.Audit``, side B none. Runs alternate
A B A B after a warmup pair; each run writes into a fresh instance directory, and every run's
score must be 1.0 (A's with no finding).

    python benchmarks/bench_integrity.py --runs 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _support import finish, summarize  # the script's own folder is on sys.path

from pytest_programbench import selftest
from pytest_programbench.containers import Engine
from pytest_programbench.integrity import Audit
from pytest_programbench.model import Instance
from pytest_programbench.scoring import score_submission
from pytest_programbench.tasks import load_tests


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=1)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="pb-bench-integrity-"))
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
    task = load_tests(instance)
    with Engine() as engine:
        image = engine.image_id(instance.image_ref)
        counter = iter(range(10**6))

        def once(audited: bool) -> float:
            out = root / f"run-{next(counter)}"
            audit = Audit(engine, task.get("eval_clean_hashes", [])) if audited else None
            started = time.perf_counter()
            outcome = score_submission(
                instance, submission, blob_dir=blobs, instance_dir=out, cpus=args.cpus, task=task,
                image=image, audit=audit,
            )  # fmt: skip
            elapsed = time.perf_counter() - started
            if outcome.score != 1.0 or outcome.findings:
                raise SystemExit(f"unexpected verdict: {outcome}")
            return elapsed

        once(True), once(False)  # warmup: image layers and page cache
        with_audit, without = [], []
        for _ in range(args.runs):
            with_audit.append(once(True))
            without.append(once(False))
    finish(
        {
            "benchmark": "scoring with the integrity audit vs without",
            "target_ratio": 1.10,
            "runs": args.runs,
            "cpus": args.cpus,
            **summarize(with_audit, without),
            "with_audit_s": with_audit,
            "without_s": without,
        }
    )


if __name__ == "__main__":
    main(sys.argv[1:])
