"""results: the verdict on a report (record), error rows, and the controller's tally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_programbench.errors import TaskInvalid
from pytest_programbench.model import AgentRun, Outcome
from pytest_programbench.reporting import results

from .support import fake_call, fake_item, fake_report, instance

INST = instance("org__tool.abc1234", language="go", difficulty="hard")
NODE = "programbench::instance[org__tool.abc1234]"


def outcome(score: float = 1.0, **fields: object) -> Outcome:
    return Outcome.from_score(INST, score=score, n_resolved=round(score * 4), n_tests=4, **fields)  # type: ignore[arg-type]


def recorded(item: object, report: pytest.TestReport, call: object) -> dict[str, object] | None:
    results.record(item, report, call)  # type: ignore[arg-type]
    return getattr(report, results.REPORT_ATTR, None)


def test_a_verdict_becomes_a_row_with_its_category_as_outcome() -> None:
    item = fake_item(INST, outcome(0.5))
    data = recorded(item, fake_report(outcome="failed"), fake_call())
    assert data is not None
    assert (data["instance_id"], data["language"], data["difficulty"]) == ("org__tool.abc1234", "go", "hard")
    assert (data["score"], data["n_resolved"], data["n_tests"], data["outcome"]) == (0.5, 2, 4, "partial")
    assert data["reason"] == "score 0.50 (2/4 hidden tests) < 1.00"


def test_a_passing_verdict_has_no_reason() -> None:
    data = recorded(fake_item(INST, outcome(0.5), threshold=0.5), fake_report(), fake_call())
    assert data is not None and "reason" not in data


def test_junit_properties_always_and_when_known() -> None:
    item = fake_item(INST, outcome(1.0, eval_seconds=2.0))
    recorded(item, fake_report(), fake_call())
    props = dict(item.user_properties)
    assert [name for name, _ in results.JUNIT_PROPERTIES] == list(props)[: len(results.JUNIT_PROPERTIES)]
    assert (props["pb_score"], props["pb_outcome"], props["pb_error_code"], props["pb_integrity"]) == (
        1.0,
        "resolved",
        "",
        "",
    )
    assert "pb_agent" not in props and "pb_reused" not in props


def test_agent_figures_reach_the_junit_properties() -> None:
    run = AgentRun(name="mini-swe-agent", seconds=3.0, steps=7, cost=0.5)
    item = fake_item(INST, outcome(1.0, agent=run))
    data = recorded(item, fake_report(), fake_call())
    props = dict(item.user_properties)
    assert (props["pb_agent"], props["pb_agent_steps"], props["pb_agent_cost"]) == ("mini-swe-agent", 7, 0.5)
    assert data is not None and data["agent_seconds"] == 3.0


def test_findings_make_the_integrity_text_and_a_report_section() -> None:
    finding = {"code": "hidden_test_dir", "path": "eval/x", "detail": ""}
    item = fake_item(INST, outcome(1.0, findings=[finding]))
    report = fake_report()
    data = recorded(item, report, fake_call())
    assert data is not None
    assert data["integrity"] == "hidden_test_dir eval/x"
    assert data["reason"] == "integrity: hidden_test_dir eval/x"
    assert ("ProgramBench integrity", "hidden_test_dir eval/x") in report.sections


def test_a_harness_error_is_an_error_row_with_its_code_and_first_line() -> None:
    exc = TaskInvalid("/t/task.yaml", "it does not parse\nsecond line")
    data = recorded(fake_item(INST), fake_report("setup", "failed"), fake_call(exc))
    assert data is not None
    assert (data["outcome"], data["error_code"], data["score"], data["n_tests"]) == (
        "error",
        "task_invalid",
        0.0,
        0,
    )
    assert data["message"] == "task file /t/task.yaml is invalid: it does not parse"


def test_an_unexpected_exception_is_named_by_its_type() -> None:
    data = recorded(fake_item(INST), fake_report("call", "failed"), fake_call(KeyError("k")))
    assert data is not None and (data["error_code"], data["message"]) == ("KeyError", "'k'")


def test_an_exception_without_text_uses_its_code_as_message() -> None:
    data = recorded(fake_item(INST), fake_report("setup", "failed"), fake_call(RuntimeError()))
    assert data is not None and data["message"] == "RuntimeError"


def test_error_rows_carry_every_junit_property() -> None:
    item = fake_item(INST)
    recorded(item, fake_report("setup", "failed"), fake_call(RuntimeError("boom")))
    props = dict(item.user_properties)
    assert {name for name, _ in results.JUNIT_PROPERTIES} <= set(props)
    assert (props["pb_outcome"], props["pb_error_code"], props["pb_score"]) == ("error", "RuntimeError", 0.0)


def test_error_rows_have_the_keys_of_a_verdict_row() -> None:
    scored = recorded(fake_item(INST, outcome(1.0)), fake_report(), fake_call())
    err = results.error_row(INST, "not_run", "never ran")
    assert scored is not None
    assert list(err) == list(scored)
    assert (err["message"], err["outcome"], err["integrity"]) == ("never ran", "error", "")


@pytest.mark.parametrize(
    ("when", "outcome_"), [("teardown", "passed"), ("setup", "passed"), ("call", "skipped")]
)
def test_nothing_is_recorded_without_a_verdict_or_a_failure(when: str, outcome_: str) -> None:
    assert recorded(fake_item(INST), fake_report(when, outcome_), fake_call()) is None


def test_items_that_are_not_ours_are_left_alone() -> None:
    assert recorded(fake_item(None), fake_report("call", "failed"), fake_call(RuntimeError())) is None


def test_teststatus_uses_the_category_and_its_letter() -> None:
    report = fake_report(outcome="failed")
    report.programbench = {"outcome": "almost"}  # type: ignore[attr-defined]
    assert results.teststatus(report) == ("almost", "A", ("ALMOST", {"yellow": True}))
    passed = fake_report()
    passed.programbench = {"outcome": "resolved"}  # type: ignore[attr-defined]
    assert results.teststatus(passed) == ("resolved", "R", ("RESOLVED", {"green": True}))
    failed = fake_report(outcome="failed")
    failed.programbench = {"outcome": "zero"}  # type: ignore[attr-defined]
    assert results.teststatus(failed) == ("zero", "Z", ("ZERO", {"red": True}))
    error = fake_report(outcome="failed")
    error.programbench = {"outcome": "error"}  # type: ignore[attr-defined]
    assert results.teststatus(error) is None


def tally(tmp_path: Path | None = None) -> results.Tally:
    return results.Tally(
        tmp_path / "report.json" if tmp_path else None, {"run_id": "r1"}, instances={NODE: INST}
    )


def scored_report(score: float, when: str = "call") -> pytest.TestReport:
    report = fake_report(when, nodeid=NODE)
    report.programbench = results.row_of(Outcome.from_score(INST, score=score, n_resolved=1, n_tests=2))  # type: ignore[attr-defined]
    return report


def test_a_lost_worker_becomes_a_worker_crashed_row() -> None:
    t = tally()
    t.pytest_runtest_logreport(fake_report(outcome="failed", nodeid=NODE, longrepr="worker 'gw0' crashed"))
    [row] = t.rows.values()
    assert (row["outcome"], row["error_code"]) == ("error", "worker_crashed")
    assert row["message"].startswith("worker 'gw0' crashed; it counts 0: rerun it")


def test_a_failure_without_a_verdict_is_no_verdict() -> None:
    t = tally()
    t.pytest_runtest_logreport(fake_report(outcome="failed", nodeid=NODE, longrepr="Something odd"))
    assert t.rows[(INST.instance_id, 1)]["error_code"] == "no_verdict"


def test_a_teardown_error_never_hides_the_verdict() -> None:
    t = tally()
    t.pytest_runtest_logreport(scored_report(0.5))
    teardown = fake_report("teardown", "failed", nodeid=NODE)
    teardown.programbench = results.error_row(INST, "boom", "boom")  # type: ignore[attr-defined]
    t.pytest_runtest_logreport(teardown)
    assert t.rows[(INST.instance_id, 1)]["score"] == 0.5


def test_every_selected_instance_is_counted_interrupted_or_not() -> None:
    t = tally()
    t.collected = True
    t.expected.add(NODE)
    t.add_missing(interrupted=True)
    row = t.rows[(INST.instance_id, 1)]
    assert (row["error_code"], row["outcome"], row["score"]) == ("not_run", "not_run", 0.0)
    assert "interrupted" in row["message"] and "reason" not in row
    t2 = tally()
    t2.collected = True
    t2.expected.add(NODE)
    t2.pytest_runtest_logreport(scored_report(1.0))
    t2.add_missing(interrupted=False)
    assert t2.rows[(INST.instance_id, 1)]["score"] == 1.0


def test_an_instance_deselected_this_session_is_not_run_unless_the_run_directory_has_its_verdict(
    tmp_path: Path,
) -> None:
    t = results.Tally(None, {}, instances={NODE: INST}, run_dir=tmp_path)
    t.collected = True  # NODE selected by --pb-*, deselected by -k: not in expected
    t.add_missing(interrupted=False)
    row = t.rows[(INST.instance_id, 1)]
    assert (row["outcome"], row["node_id"]) == ("not_run", NODE)
    assert "not selected in this session" in row["message"]


def test_nothing_is_added_when_the_session_ended_before_collection() -> None:
    t = tally()  # a preflight usage error: no collection, no rows, no summary
    t.add_missing(interrupted=False)
    assert t.rows == {}


def test_suite_properties_hold_the_aggregates() -> None:
    t = tally()
    t.pytest_runtest_logreport(scored_report(0.5))
    props = dict(t.suite_properties())
    assert (props["pb_items"], props["pb_mean_score"], props["pb_partial"], props["pb_error"]) == (
        1,
        0.5,
        1,
        0,
    )
    assert props["pb_language_go_instances"] == 1 and props["pb_difficulty_hard_mean_score"] == 0.5
    assert props["pb_run_id"] == "r1"


def test_the_json_report_is_written_whole_with_rows_and_summary(tmp_path: Path) -> None:
    t = tally(tmp_path)
    t.pytest_runtest_logreport(scored_report(0.5))
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["run_id"] == "r1"
    assert [r["instance_id"] for r in doc["instances"]] == [INST.instance_id]
    assert doc["summary"]["mean_score"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_report_that_cannot_be_written_is_remembered_not_raised(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")
    t = results.Tally(tmp_path / "blocker" / "report.json", instances={NODE: INST})
    t.write_report()
    assert t.write_failure
    t.report_path = tmp_path / "report.json"
    t.write_report()
    assert t.write_failure == ""
