"""Generated run directories of real size, that a session reuses without starting a container.

For each chosen task of the programbench package (its real tests.json, so real test names and
counts: 247,444 counted tests over the 200 tasks), ``make_run`` writes what a finished replay
session leaves: ``<out>/<id>/<id>.eval.json`` with one result per test of every active branch
(ignored tests too, as the evaluator reports them), the submission archive in the run directory
and in the replay directory, and our ``programbench.json`` marker vouching for both. Statuses are
drawn from a seeded generator per instance, so two runs with different seeds differ in known
ways (``statuses`` tells which). No test is ``not_run``: ``programbench eval`` would evaluate
such a branch again, and these sessions must only reuse.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_programbench import files
from pytest_programbench.scoring import detail, resume

KINDS = ("passed", "failure", "error", "skipped")


def package_tasks_dir() -> Path:
    from programbench.constants import TASKS_DIR

    return Path(TASKS_DIR)


def task_ids() -> list[str]:
    """The package's 200 tasks (its testorg fixture left out, as the plugin does)."""
    return sorted(
        p.parent.name
        for p in package_tasks_dir().glob("*/task.yaml")
        if not p.parent.name.startswith("testorg")
    )


def load_task(iid: str) -> dict[str, Any]:
    from programbench.utils.load_data import _load_single_instance

    task: dict[str, Any] = _load_single_instance(package_tasks_dir() / iid, include_tests=True)
    return task


def pass_rate(iid: str, seed: int) -> float:
    """An instance's chance that a test passes: spread over 0..1, a few exactly 1."""
    rate = random.Random(f"{seed}:{iid}:rate").random()
    return 1.0 if rate > 0.9 else rate


def statuses(iid: str, seed: int) -> dict[str, str]:
    """``branch/name`` -> evaluator status of every test of every active branch of ``iid``."""
    task = load_task(iid)
    rng = random.Random(f"{seed}:{iid}")
    rate = pass_rate(iid, seed)
    out = {}
    for branch, info in task["branches"].items():
        if info.get("ignored"):
            continue
        for name in info["tests"]:
            r = rng.random()
            out[f"{branch}/{name}"] = (
                "passed" if r < rate else KINDS[1 + int((r - rate) / max(1e-9, 1 - rate) * 3) % 3]
            )
    return out


def eval_result(iid: str, seed: int) -> dict[str, Any]:
    task = load_task(iid)
    results = []
    for full, status in statuses(iid, seed).items():
        branch, name = full.split("/", 1)
        extra: dict[str, Any] = {"time": 0.01}
        if status != "passed":
            extra["message"] = f"AssertionError: {name} <expected> & 'got' differ"
            extra["text"] = "Traceback (most recent call last):\n  ...\nAssertionError\n" * 3
        results.append({"name": name, "branch": branch, "status": status, "extra": extra})
    active = [b for b, info in task["branches"].items() if not info.get("ignored")]
    return {
        "test_results": results,
        "error_code": None,
        "error_details": None,
        "log": [],
        "solution_branch": "submission",
        "test_branches": active,
        "test_branch_errors": {},
        "executable_hash": "0" * 64,
        "warnings": [],
    }


def _archive(iid: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"#!/bin/sh\necho " + iid.encode() + b"\n"
        info = tarfile.TarInfo("compile.sh")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass(frozen=True)
class Run:
    subs: Path  # the replay directory: --pb-submissions
    out: Path  # the run directory: --pb-output
    ids: list[str]


def make_run(root: Path, ids: list[str], seed: int) -> Run:
    subs, out = root / "subs", root / "out"
    for k, iid in enumerate(ids):
        archive = _archive(iid)
        source = subs / iid / "submission.tar.gz"
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(archive)
        instance_dir = out / iid
        instance_dir.mkdir(parents=True, exist_ok=True)
        (instance_dir / "submission.tar.gz").write_bytes(archive)
        eval_json = instance_dir / f"{iid}.eval.json"
        eval_json.write_text(json.dumps(eval_result(iid, seed)))
        marker = {
            "outcome": {
                "agent": "synthetic",
                "agent_seconds": 60.0 + 7 * k,
                "agent_steps": 10 + k % 40,
                "agent_cost": round(0.05 * (1 + k % 20), 2),
                "eval_seconds": 30.0 + k % 13,
            },
            "submission_sha256": files.sha256(instance_dir / "submission.tar.gz"),
            "source_sha256": files.sha256(source),
            "eval_sha256": files.sha256(eval_json),
        }
        (instance_dir / resume.DONE_MARKER).write_text(json.dumps(marker))
    return Run(subs, out, ids)


# -- the truth a generated run's readers are checked against -----------------------------------


def official_map(eval_json: Path, iid: str) -> dict[str, bool]:
    from programbench.submission import test_results_map

    return test_results_map(eval_json, load_task(iid))


def kinds_in_eval_json(eval_json: Path, iid: str) -> dict[str, str]:
    """``branch/name`` -> our kind, from the eval.json filtered as programbench info filters it."""
    from programbench.eval.eval import EvaluationResult
    from programbench.utils.load_data import get_active_branches, get_ignored_tests

    task = load_task(iid)
    result = EvaluationResult.model_validate_json(eval_json.read_text())
    result = result.for_branches(get_active_branches(task)).without_ignored(get_ignored_tests(task))
    return {t.full_name: detail.KIND_OF[t.status] for t in result.test_results}


def kinds_in_detail(hidden: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {f"{b}/{t}": k for b, d in hidden.items() for k in detail.NOT_PASSED for t in d.get(k, ())}
