"""The summary's account of a resumed run (pure: rows in, lines out)."""

from __future__ import annotations

from typing import Any

from pytest_programbench.reporting import summary_lines, totals


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
        "verdicts from the run directory: 1 reused, 1 re-scored in part, 1 re-scored in full",
        "  b: re-scored branches br1, br2",
        "  c: re-scored in full: its eval.json has error_code compile_failed",
    ]
    summary = totals(ROWS)
    assert (summary["reused"], summary["rescored_part"], summary["rescored_full"]) == (1, 1, 1)


def test_a_fresh_run_says_nothing_about_verdicts() -> None:
    assert not any("verdicts" in line for line in summary_lines([row("d")]))
