"""detail.py on its own: the failed item's message, and counting as `programbench info` counts."""

from __future__ import annotations

import json
from pathlib import Path

import synthruns

from pytest_programbench.scoring import detail


def test_describe_lists_the_first_few_by_branch() -> None:
    hidden = {
        "b1": {"counts": {}, "failed": ["t1", "t2"], "not_run": ["t3", "t4", "t5"]},
        "b2": {"counts": {}, "error": ["e1"]},
        "b3": {"counts": {}},
        "b4": {"counts": {}, "skipped": ["s1"]},
        "b5": {"counts": {}, "failed": ["f1"]},
    }
    assert detail.describe(hidden) == (
        "b1: t1 (failed), t2 (failed), t3 (not run) and 2 more; b2: e1 (error); b4: s1 (skipped); "
        "and 1 more branch(es)"
    )


def test_detail_follows_ignored_tests_and_branches_like_programbench_info(tmp_path: Path) -> None:
    # A task with ignored tests: they are in eval.json but must not be counted or listed.
    iid = next(
        i
        for i in synthruns.task_ids()
        if any(b.get("ignored_tests") for b in synthruns.load_task(i)["branches"].values())
    )
    path = tmp_path / f"{iid}.eval.json"
    data = synthruns.eval_result(iid, seed=3)
    data["test_results"].append({"name": "stray", "branch": "not-a-branch", "status": "failure", "extra": {}})
    data["test_branches"] = [*data["test_branches"], "not-a-branch"]  # scoped: the stray one drops
    path.write_text(json.dumps(data))
    hidden = detail.for_instance(path, synthruns.load_task(iid))
    assert hidden is not None
    truth = synthruns.kinds_in_eval_json(path, iid)
    assert synthruns.kinds_in_detail(hidden) == {n: k for n, k in truth.items() if k != "passed"}
    assert sum(detail.totals(hidden).values()) == len(synthruns.official_map(path, iid))
    assert detail.for_instance(tmp_path / "missing.eval.json", synthruns.load_task(iid)) is None
