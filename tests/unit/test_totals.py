"""reporting: totals, aggregates and the summary's lines, from rows alone."""

from __future__ import annotations

import pytest

from pytest_programbench.model import Selection
from pytest_programbench.reporting import summary as reporting
from pytest_programbench.selection.settings import Settings

from .support import error, instance, row


def test_errors_count_as_zero_in_the_mean() -> None:
    summary = reporting.totals([row("a", 1.0), row("b", 0.5), error("c")])
    assert summary["mean_score"] == pytest.approx(0.5)
    assert summary["errors_count_as"] == 0.0
    assert (summary["n_items"], summary["n_instances"]) == (3, 3)


def test_counts_per_outcome_cover_every_outcome() -> None:
    rows = [row("a", 1.0), row("b", 0.97), row("c", 0.3), row("d", 0.0), error("e"), error("f")]
    summary = reporting.totals(rows)
    assert [summary[o] for o in reporting.OUTCOMES] == [1, 1, 1, 1, 2, 0]


def test_no_rows_is_a_zero_mean_not_a_division_error() -> None:
    summary = reporting.totals([])
    assert (summary["n_items"], summary["mean_score"]) == (0, 0.0)
    assert reporting.summary_lines([]) == []


def test_flagged_and_resume_counts() -> None:
    rows = [
        row("a", findings=[{"code": "test_config", "path": "conftest.py", "detail": "x"}]),
        row("b", reused=True),
        row("c", rescored="part"),
        row("d", rescored="full"),
        row("e", rescored="full"),
    ]
    summary = reporting.totals(rows, integrity="strict")
    assert (summary["flagged"], summary["reused"], summary["rescored_part"], summary["rescored_full"]) == (
        1,
        1,
        1,
        2,
    )
    assert summary["integrity"] == "strict"


def test_one_attempt_has_no_pass_at_k() -> None:
    summary = reporting.totals([row("a"), row("b")])
    assert "per_instance" not in summary
    assert not [k for k in summary if k.startswith("pass@")]


def test_pass_at_k_counts_an_instance_once_if_any_attempt_passed() -> None:
    rows = [
        row("a", 0.2, attempt=1),
        row("a", 1.0, attempt=2),
        row("a", 0.0, attempt=3),
        row("b", 0.9, attempt=1),
        row("b", 0.9, attempt=2),
        error("b", attempt=3),
    ]
    summary = reporting.totals(rows)
    assert summary["pass@3"] == pytest.approx(0.5)
    assert summary["per_instance"]["a"] == {
        "attempts": 3,
        "mean_score": pytest.approx(0.4),
        "passed_any": True,
    }
    assert summary["per_instance"]["b"]["passed_any"] is False
    assert summary["n_instances"] == 2


def test_pass_at_k_follows_the_threshold() -> None:
    rows = [row("a", 0.9, attempt=1), row("a", 0.5, attempt=2)]
    assert reporting.totals(rows)["pass@2"] == 0.0
    assert reporting.totals(rows, threshold=0.8)["pass@2"] == 1.0


def test_an_errored_attempt_never_passes_even_at_threshold_zero() -> None:
    stats = reporting.per_instance([error("a", attempt=1), error("a", attempt=2)], threshold=0.0)
    assert stats["a"]["passed_any"] is False


def test_aggregates_in_the_known_order_then_unknown_names_sorted() -> None:
    rows = [
        row("a", language="java"),
        row("b", language="zig"),
        row("c", language="rust"),
        row("d", language="go"),
        row("e", language="ada"),
    ]
    assert list(reporting.aggregates(rows, "language")) == ["rust", "go", "java", "ada", "zig"]
    by_difficulty = reporting.aggregates(
        [row("a", difficulty="unrated"), row("b", difficulty="hard"), row("c", difficulty="easy")],
        "difficulty",
    )
    assert list(by_difficulty) == ["easy", "hard", "unrated"]


def test_aggregates_count_instances_items_resolved_almost_errors() -> None:
    rows = [
        row("a", 1.0, language="go"),
        row("a", 0.96, language="go", attempt=2),
        error("b", language="go"),
        row("c", 0.5, language="c"),
    ]
    go = reporting.aggregates(rows, "language")["go"]
    assert go == {
        "instances": 2,
        "items": 3,
        "mean_score": pytest.approx((1.0 + 0.96) / 3),
        "resolved": 1,
        "almost": 1,
        "errors": 1,
    }


def test_summary_has_a_row_per_item_sorted_and_an_overall_line() -> None:
    lines = reporting.summary_lines([row("b", 0.5), row("a", 1.0)])
    assert lines[0].split() == [
        "instance",
        "lang",
        "diff",
        "score",
        "passed",
        "steps",
        "cost",
        "time",
        "outcome",
    ]
    assert lines[1].split()[:5] == ["a", "c", "easy", "1.00", "10/10"]
    assert lines[2].split()[:5] == ["b", "c", "easy", "0.50", "5/10"]
    assert "mean score 0.750 over 2 item(s); 1 resolved, 1 partial" in lines


def test_an_error_row_shows_dashes_and_its_cause_under_the_error_rule() -> None:
    lines = reporting.summary_lines([row("a"), error("b", "image_missing")])
    [b] = [line for line in lines if line.startswith("b ")]
    assert b.split()[3:5] == ["-", "-"]
    assert b.split()[-2:] == ["error", "(image_missing)"]
    at = lines.index("errors count as score 0 in the mean (the official rule); their causes:")
    assert lines[at + 1] == "  b: image_missing: do something"


def test_agent_steps_cost_and_time_appear_in_the_row() -> None:
    [_, line, *_] = reporting.summary_lines(
        [row("a", agent_steps=12, agent_cost=0.456, agent_seconds=30.0, eval_seconds=12.5)]
    )
    assert line.split()[5:8] == ["12", "$0.46", "42.5s"]


@pytest.mark.parametrize(("seconds", "shown"), [(5.0, "5.0s"), (150.0, "2.5m"), (7200.0, "2.0h")])
def test_durations(seconds: float, shown: str) -> None:
    assert reporting._duration(seconds) == shown


def test_later_attempts_are_labelled_and_get_a_per_instance_section() -> None:
    lines = reporting.summary_lines([row("a", 1.0, attempt=1), row("a", 0.0, attempt=2)])
    assert any(line.startswith("a #2 ") for line in lines)
    at = lines.index("per instance over attempts:")
    assert lines[at + 1].split() == ["a", "mean", "0.500", "over", "2", "pass@2", "yes"]


def test_aggregate_lines_show_errors_only_when_there_are_some() -> None:
    lines = reporting.summary_lines([row("a", language="rust"), error("b", language="go")])
    [rust] = [line for line in lines if line.startswith("language rust")]
    [go] = [line for line in lines if line.startswith("language go")]
    assert "errors" not in rust
    assert go.endswith("errors 1")


def test_integrity_section_lists_findings_and_says_what_they_did() -> None:
    finding = {"code": "test_config", "path": "conftest.py", "detail": "pytest would load it"}
    flagged = row("a", 0.0, findings=[finding], official_score=1.0)
    lines = reporting.summary_lines([flagged, row("b")], integrity="strict")
    at = lines.index("Integrity: 1 of 2 item(s) flagged, counted as 0 (--pb-integrity strict):")
    assert lines[at + 1] == "  a (official 1.00):"
    assert "test_config" in lines[at + 2] and "conftest.py" in lines[at + 2]
    report_mode = reporting.summary_lines([row("a", findings=[finding])])
    assert any("official scores kept" in line for line in report_mode)


def test_header_counts_per_language_in_the_known_order() -> None:
    sel = Selection(
        instances=(
            instance("x", language="go"),
            instance("y", language="rust"),
            instance("z", language="go"),
        ),
        tasks_dir="/t",
        source="the programbench package",
        available=200,
    )
    lines = reporting.header_lines(Settings(active=True, languages=("go", "rust")), sel)
    assert lines[0] == "programbench: 3 instances (rust 1, go 2) of 200 in the programbench package"
    assert lines[1].startswith("programbench: selection language=go,rust; image tag task_cleanroom_v6")


def test_header_for_an_empty_selection_says_nothing_to_run() -> None:
    sel = Selection(instances=(), tasks_dir="/t", source="DIR", available=7)
    [line] = reporting.header_lines(Settings(active=True, difficulties=("hard",)), sel)
    assert line == "programbench: no instance matches difficulty=hard (of 7 in DIR); nothing to run"


def test_header_names_submissions_it_will_not_score_and_truncates_long_lists() -> None:
    ids = tuple(f"id{i:02}" for i in range(25))
    sel = Selection(
        instances=(instance("x"),), tasks_dir="/t", source="S", available=1, unselected_submissions=ids
    )
    lines = reporting.header_lines(Settings(active=True), sel)
    [note] = [line for line in lines if "not selected" in line]
    assert note.startswith("programbench: 25 submission(s) in the run directory not selected: id00, id01")
    assert note.endswith("id19 (+5 more)")


def test_header_shows_force_and_branch_settings_only_off_their_defaults() -> None:
    sel = Selection(instances=(instance("x"),), tasks_dir="/t", source="S", available=1)
    quiet = reporting.header_lines(Settings(active=True), sel)
    assert not any("force" in line or "branch" in line for line in quiet)
    loud = reporting.header_lines(Settings(active=True, force=True, branch_workers=2, branch_retries=0), sel)
    assert "programbench: 2 branch worker(s) per instance, 0 branch retries" in loud
    assert any(line.startswith("programbench: --pb-force: ") for line in loud)
