"""compare.py on its own: baselines from rows and run directories, statuses, flips, the interval.

The whole-session checks (the terminal section, JUnit properties, the gate's exit code) stay
in tests/test_compare.py; here every rule is pinned down with small inputs and no session.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
import synthruns

from pytest_programbench.reporting import compare
from pytest_programbench.reporting.compare import Baseline, Entry

from .support import row


def entry(score: float, not_passed: set[str] | None = None, **fields: object) -> Entry:
    values: dict[str, object] = {"language": "c", "difficulty": "easy", **fields}
    return Entry(
        score=score,
        not_passed=frozenset(not_passed) if not_passed is not None else None,
        **values,  # type: ignore[arg-type]
    )


def test_rows_become_one_entry_per_instance_with_the_mean_over_attempts() -> None:
    hidden = {"b1": {"counts": {}, "failed": ["t1"], "not_run": ["t2"]}}
    rows = [
        row("a", 0.5, attempt=2),
        row("a", 1.0, attempt=1, hidden_tests=hidden),
        row("b", 0.0, outcome="not_run"),  # no verdict: not a score to compare
        row("c", 0.25, language="rust", difficulty="hard"),
    ]
    entries = compare.from_rows(rows)
    assert sorted(entries) == ["a", "c"]
    assert entries["a"].score == pytest.approx(0.75)
    # The first attempt's hidden tests name what did not pass, as branch/name.
    assert entries["a"].not_passed == frozenset({"b1/t1", "b1/t2"})
    assert (entries["c"].language, entries["c"].difficulty, entries["c"].not_passed) == ("rust", "hard", None)


def test_a_report_that_is_not_one_is_a_baseline_error_saying_what_to_give(tmp_path: Path) -> None:
    for text in ("{not json", json.dumps({"instances": {"a": 1}}), json.dumps({"summary": {}})):
        path = tmp_path / "bad.json"
        path.write_text(text)
        with pytest.raises(compare.BaselineInvalid, match=r"not a --pb-report JSON .*give the JSON"):
            compare.load(path)
    with pytest.raises(compare.BaselineInvalid, match=r"no <id>/<id>\.eval\.json of a known task"):
        compare.load(tmp_path)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"instances": [row("a", 0.5)]}))
    assert compare.load(good) == Baseline(str(good), {"a": entry(0.5)})


def test_statuses_deltas_and_resolved_counts_pair_instances_by_id() -> None:
    baseline = Baseline(
        "then.json",
        {
            "up": entry(0.5),
            "down": entry(1.0, language="go"),
            "flat": entry(0.3),
            "gone": entry(0.9),
        },
    )
    now = [
        row("up", 1.0),
        row("down", 0.25, language="go"),
        row("flat", 0.3 + 1e-12),  # float noise is "same"
        row("new", 0.7),
    ]
    c = compare.compare(baseline, now)
    status = {i["instance_id"]: i["status"] for i in c.instances}
    assert status == {"up": "improved", "down": "regressed", "flat": "same", "gone": "gone", "new": "new"}
    assert c.counts == {"paired": 3, "improved": 1, "regressed": 1, "same": 1, "new": 1, "gone": 1}
    # Means and the delta are over the paired instances only; new and gone do not move them.
    assert c.mean_then == pytest.approx((0.5 + 1.0 + 0.3) / 3)
    assert c.mean_now == pytest.approx((1.0 + 0.25 + 0.3) / 3)
    assert c.mean_delta == pytest.approx((0.5 - 0.75 + 0.0) / 3)
    assert (c.resolved_gained, c.resolved_lost) == (["up"], ["down"])
    assert c.by_language == {
        "c": {"instances": 2, "mean_delta": pytest.approx(0.25)},
        "go": {"instances": 1, "mean_delta": pytest.approx(-0.75)},
    }
    assert c.ci is not None and c.ci[0] <= c.mean_delta <= c.ci[1]
    lines = c.lines()
    assert lines[0] == "against then.json: 3 instance(s) in both, 1 new, 1 gone"
    assert "resolved gained 1 (up), lost 1 (down)" in lines[2]
    props = dict(c.suite_properties())
    assert (props["pb_compare_paired"], props["pb_compare_new"], props["pb_compare_gone"]) == (3, 1, 1)
    assert c.to_dict()["ci"]["seed"] == compare.BOOTSTRAP_SEED


def test_flips_need_both_sides_tests_and_ignore_tests_a_side_did_not_count() -> None:
    then = entry(0.5, {"b/t1", "b/t2"}, counted=frozenset({"b/t1", "b/t2", "b/t3"}))
    now = entry(0.5, {"b/t2", "b/t3", "b/t9"})
    c = compare.compare(Baseline("x", {"a": then, "blind": entry(0.5)}), [])
    assert c.flips == {}
    flipped = compare._flips(then, now)
    # t1 now passes; t3 now fails; t9 was never counted by the earlier run, so it has not flipped.
    assert flipped == {"now_pass": ["b/t1"], "now_fail": ["b/t3"]}
    assert compare._flips(entry(0.5), now) is None  # a report row without hidden tests: unknown
    assert compare._flips(then, entry(0.5, {"b/t1", "b/t2"})) is None  # nothing changed


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    deltas = [0.1, -0.05, 0.2, 0.0, 0.3, -0.1, 0.05]
    ci = compare.bootstrap_ci(deltas)
    assert ci is not None and ci == compare.bootstrap_ci(deltas)
    assert ci[0] < statistics.mean(deltas) < ci[1]
    assert compare.bootstrap_ci(deltas, seed=1) != ci
    assert compare.bootstrap_ci([]) is None
    assert compare.bootstrap_ci([0.2] * 5) == (pytest.approx(0.2), pytest.approx(0.2))


def test_a_run_directory_with_attempts_counts_their_mean(tmp_path: Path) -> None:
    from programbench.submission import score_instance, test_results_map

    iid = synthruns.task_ids()[0]
    a = synthruns.make_run(tmp_path / "a", [iid], seed=1)
    b = synthruns.make_run(tmp_path / "b", [iid], seed=2)
    for k, run in ((1, a), (2, b)):
        shutil.copytree(run.out / iid, tmp_path / "attempts" / f"attempt-{k}" / iid)
    baseline = compare.load(tmp_path / "attempts")
    official = [score_instance(r.out / iid / f"{iid}.eval.json", synthruns.load_task(iid)) for r in (a, b)]
    assert list(baseline.entries) == [iid]
    assert baseline.entries[iid].score == pytest.approx(statistics.mean(official))
    counted = test_results_map(a.out / iid / f"{iid}.eval.json", synthruns.load_task(iid))
    # Attempt 1's tests are the ones a comparison names.
    assert baseline.entries[iid].not_passed == frozenset(n for n, ok in counted.items() if not ok)
    assert baseline.entries[iid].counted == frozenset(counted)
