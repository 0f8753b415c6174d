"""The summary's account of a resumed run (pure: rows in, lines out)."""

from __future__ import annotations

from typing import Any

from pytest_programbench.reporting.summary import summary_lines, totals


def row(iid: str, **resume: Any) -> dict[str, Any]:
    return {
        "instance_id": iid,
        "attempt": 1,
        "language": "c",
        "difficulty": "easy",
        "score": 1.0,
        "n_resolved": 18,
        "n_tests": 18,
        "outcome": "resolved",
        "error_code": None,
        **resume,
    }


ROWS = [
    row("a", reused=True),
    row("b", rescored="part", rescored_branches=["br1", "br2"], rescore_reason=""),
    row(
        "c",
        rescored="full",
        rescored_branches=[],
        rescore_reason="its eval.json has error_code compile_failed",
    ),
    row("d"),
]


def test_the_summary_counts_reused_and_rescored_verdicts_and_names_the_branches() -> None:
    lines = summary_lines(ROWS)
    assert [line.split()[-1] for line in lines[1:5]] == ["(reused)", "br2)", "compile_failed)", "resolved"]
    assert "(re-scored branches br1, br2)" in lines[2]
    tail = lines[lines.index("mean score 1.000 over 4 item(s); 4 resolved") + 1 :]
    assert tail == [
        "the mean counts every selected item; errors and items not run count 0 (the leaderboard's rule)",
        "verdicts from the run directory: 1 reused, 1 re-scored in part, 1 re-scored in full",
        "  b: re-scored branches br1, br2",
        "  c: re-scored in full: its eval.json has error_code compile_failed",
    ]
    summary = totals(ROWS)
    assert (summary["reused"], summary["rescored_part"], summary["rescored_full"]) == (1, 1, 1)


def test_a_fresh_run_says_nothing_about_verdicts() -> None:
    assert not any("verdicts" in line for line in summary_lines([row("d")]))


def test_items_not_run_count_zero_and_are_listed_once_not_as_table_rows() -> None:
    rows = [row("a"), {**row("b"), "score": 0.0, "outcome": "not_run", "error_code": "not_run"}]
    lines = summary_lines(rows)
    assert [line.split()[0] for line in lines[1:2]] == ["a"]  # the table: verdicts only
    assert not any(line.startswith("b ") for line in lines)
    assert "mean score 0.500 over 2 item(s); 1 resolved, 1 not_run" in lines
    assert any(line.startswith("1 selected item(s) not run") and line.endswith(": b") for line in lines)
    assert "mean over the 1 item(s) with a verdict: 1.000" in lines
    summary = totals(rows)
    assert (summary["not_run"], summary["n_ran"], summary["mean_score"], summary["mean_score_ran"]) == (
        1,
        1,
        0.5,
        1.0,
    )


def test_verdicts_merged_from_the_run_directory_are_marked_and_counted() -> None:
    rows = [row("a", session="earlier"), row("b", session="official"), row("c")]
    lines = summary_lines(rows)
    assert "(from an earlier session)" in lines[1] and "(from an official eval.json)" in lines[2]
    assert (
        "merged from the run directory: 1 verdict(s) of earlier sessions, 1 from official eval.json files"
        in lines
    )
    assert (totals(rows)["earlier"], totals(rows)["official"]) == (1, 1)
