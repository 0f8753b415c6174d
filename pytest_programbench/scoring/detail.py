"""Hidden-test detail: which counted hidden tests of an instance did not pass, read from eval.json.

Nothing is run again: the evaluator's ``<id>.eval.json`` already holds one result per
hidden test. We count the same tests ``programbench info`` counts (active branches,
ignored tests struck out, as ``EvaluationResult.for_branches(...).without_ignored(...)``
does) but read the file with ``json`` rather than pydantic, because a real task has up
to 14,637 of them and a run 247,444. tests/test_detail.py checks the counts against
programbench's own ``test_results_map``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_programbench.model import Instance

#: The evaluator's test status -> what we call it (JUnit's words; system errors are errors).
KIND_OF = {
    "passed": "passed",
    "failure": "failed",
    "error": "error",
    "system_error": "error",
    "skipped": "skipped",
    "not_run": "not_run",
}
#: The kinds that keep a score below 1, in the order a message lists them.
NOT_PASSED = ("failed", "error", "not_run", "skipped")
KINDS = ("passed", *NOT_PASSED)
MESSAGE_CHARS = 200  # of a failure message kept in --pb-junit-tests


def read(eval_json: Path) -> dict[str, Any]:
    data = json.loads(eval_json.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{eval_json} is not an evaluator result")
    return data


def counted(data: dict[str, Any], task: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The test results that count for the score, as ``programbench info`` filters them."""
    from programbench.utils.load_data import get_active_branches, get_ignored_tests

    active = get_active_branches(task)
    ignored = get_ignored_tests(task)
    # for_branches leaves the results alone when the branch lists agree (as sets with repeats).
    scoped = sorted(data.get("test_branches") or []) != sorted(active)
    wanted = set(active)
    for t in data.get("test_results") or []:
        branch = t.get("branch") or ""
        if scoped and branch not in wanted:
            continue
        if ignored and (f"{branch}/{t['name']}" if branch else t["name"]) in ignored:
            continue
        yield t


def branches_of(instance: Instance) -> dict[str, Any]:
    """What ``counted`` needs of a task, its tests.json (no task.yaml, already validated at selection)."""
    tests_json = Path(instance.task_dir) / "tests.json"
    data = json.loads(tests_json.read_text()) if tests_json.is_file() else {}
    return {"branches": data.get("branches") or {}}


def summarise(data: dict[str, Any], task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per branch: counts of each kind and the names of the tests that did not pass.

    ``{"<branch>": {"counts": {"passed": 120, "failed": 2, ...}, "failed": [names], ...}}``;
    a kind with no test has no list.
    """
    out: dict[str, dict[str, Any]] = {}
    for t in counted(data, task):
        branch = out.setdefault(t.get("branch") or "", {"counts": dict.fromkeys(KINDS, 0)})
        kind = KIND_OF.get(t["status"], "error")
        branch["counts"][kind] += 1
        if kind != "passed":
            branch.setdefault(kind, []).append(t["name"])
    # In tests.json's order, not results.xml's: under `pytest -n auto` with two or more
    # workers the XML lists tests as they finish, so the same run would read differently.
    for name, branch in out.items():
        listed = ((task.get("branches") or {}).get(name) or {}).get("tests") or []
        rank = {test: i for i, test in enumerate(listed)}
        for kind in NOT_PASSED:
            if kind in branch:
                branch[kind].sort(key=lambda test: (rank.get(test, len(rank)), test))
    return dict(sorted(out.items()))


def for_instance(eval_json: Path, task: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The detail of one instance's eval.json; None when there is none to read (a harness error)."""
    try:
        return summarise(read(eval_json), task)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def totals(detail: dict[str, dict[str, Any]]) -> dict[str, int]:
    sums = dict.fromkeys(KINDS, 0)
    for branch in detail.values():
        for kind in KINDS:
            sums[kind] += branch["counts"][kind]
    return sums


def describe(detail: dict[str, dict[str, Any]], limit: int = 3, branches: int = 3) -> str:
    """The first few tests that did not pass, by branch: ``b1: failed t1, t2 and 12 more; ...``."""
    parts = []
    shown = [(b, d) for b, d in detail.items() if any(d.get(k) for k in NOT_PASSED)]
    for name, d in shown[:branches]:
        names = [(kind, test) for kind in NOT_PASSED for test in d.get(kind, ())]
        listed = ", ".join(f"{test} ({kind.replace('_', ' ')})" for kind, test in names[:limit])
        more = len(names) - limit
        parts.append(f"{name or '(no branch)'}: {listed}" + (f" and {more} more" if more > 0 else ""))
    if len(shown) > branches:
        parts.append(f"and {len(shown) - branches} more branch(es)")
    return "; ".join(parts)


def suffix(hidden: dict[str, dict[str, Any]] | None, error_code: str | None) -> str:
    """What a failure reason says about the hidden tests; nothing ran when there is an error code."""
    if not hidden or error_code or not any(d.get(k) for d in hidden.values() for k in NOT_PASSED):
        return ""
    return "; did not pass: " + describe(hidden)


def not_passed(detail: dict[str, dict[str, Any]] | None) -> set[str]:
    """``branch/name`` of every counted test that did not pass."""
    return {f"{b}/{t}" for b, d in (detail or {}).items() for k in NOT_PASSED for t in d.get(k, ())}


#: On an item: its hidden-test detail, read once by the test function for its message and its row.
DETAIL_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
PATHS_KEY = pytest.StashKey[dict[str, Any]]()
#: On an item, with --pb-gold-mask: (gold_score, passed, gold tests) of its eval.json, or None.
GOLD_KEY = pytest.StashKey["tuple[float, int, int] | None"]()


def of_item(request: pytest.FixtureRequest, instance: Instance) -> dict[str, dict[str, Any]] | None:
    """Read the item's eval.json (where pb_outcome left it) and keep the detail on the item."""
    from pytest_programbench.scoring.evaluator import eval_json_path

    instance_dir: Path = request.getfixturevalue("pb_instance_dir")
    task: dict[str, Any] = request.getfixturevalue("pb_task")
    eval_json = eval_json_path(instance_dir, instance.instance_id)
    trajectory = instance_dir / f"{instance.instance_id}.traj.json"
    paths = {"eval_json": str(eval_json)} if eval_json.is_file() else {}
    if trajectory.is_file():
        paths["trajectory"] = str(trajectory)
    request.node.stash[PATHS_KEY] = paths
    try:
        data = read(eval_json) if paths else None
        hidden = summarise(data, task) if data is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        data = hidden = None
    if data is not None and hidden is not None:
        request.node.stash[DETAIL_KEY] = hidden
        from pytest_programbench.scoring.gold import mask_of

        mask = mask_of(request.config)
        if mask is not None:  # --pb-gold-mask: the same counted tests, measured against the reference's
            request.node.stash[GOLD_KEY] = mask.score(instance.instance_id, counted(data, task))
    return hidden


def attach(item: pytest.Item, row: dict[str, Any]) -> None:
    """Put the item's detail and file paths on its report row (they cross xdist with it)."""
    paths: dict[str, Any] = item.stash.get(PATHS_KEY, {})
    row.update(paths)
    if GOLD_KEY in item.stash:
        from pytest_programbench.scoring.gold import add_gold_score

        add_gold_score(row, item.stash[GOLD_KEY])
    hidden = item.stash.get(DETAIL_KEY, None)
    if hidden is not None:
        row["hidden_tests"] = hidden
        if row.get("reason") and not row.get("findings"):
            row["reason"] += suffix(hidden, row.get("error_code"))
