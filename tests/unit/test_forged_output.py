"""The audit reads every pytest summary line of a test step, and counts them (no engine).

A program under test can write to the step's output (it inherits it, or opens the test
run's descriptors through /proc) and rewrite results.xml after pytest wrote it. pytest's
own summary line stays in the output; a forged one beside it is one line too many.
"""

from __future__ import annotations

from typing import Any

from pytest_programbench.scoring import integrity

ESC = "\x1b"
# What the self-test task's run.sh (`pytest -n auto -q`) prints, verbatim from an eval.json.
QUIET_PARTIAL = (
    "bringing up nodes...\nbringing up nodes...\n\n........F{pad}[100%]\n"
    "=================================== FAILURES ===================================\n"
    "______________________________ test_true_division ______________________________\n"
    "E       AssertionError: assert '3' == '3.5'\n\n"
    "--------------- generated xml file: /workspace/eval/results.xml ----------------\n"
    "=========================== short test summary info ============================\n"
    "FAILED eval/tests/test_arith.py::test_true_division - AssertionError: assert ...\n"
    "1 failed, 8 passed in 0.93s\n"
).format(pad=" " * 64)
VERBOSE = (
    "============================= test session starts ==============================\n"
    "collecting ... collected 9 items\n\n"
    "eval/tests/test_arith.py::test_add PASSED                                [ 11%]\n"
    "============================== 1 failed, 8 passed in 61.20s (0:01:01) ==============================\n"
)
COLOURED = (
    f"{ESC}[31m========================= {ESC}[31m{ESC}[1m1 failed{ESC}[0m, {ESC}[32m8 passed{ESC}[0m"
    f"{ESC}[31m in 0.08s{ESC}[0m{ESC}[31m ==========================={ESC}[0m\n"
)


def junit(passed: int, failed: int) -> str:
    cases = [f'<testcase classname="eval.tests.t" name="p{i}"/>' for i in range(passed)]
    cases += [
        f'<testcase classname="eval.tests.t" name="f{i}"><failure message="x"/></testcase>'
        for i in range(failed)
    ]
    return f'<testsuites><testsuite name="pytest">{"".join(cases)}</testsuite></testsuites>'


def findings(output: str, xml: str) -> list[tuple[str, str]]:
    log: list[dict[str, Any]] = [
        {"step": "run_tests", "output": output, "returncode": 0},
        {"step": "results_read", "output": xml, "returncode": 0, "branch": "b1"},
    ]
    return [(f.code, f.detail) for f in integrity.junit_mismatches(log)]


def test_honest_runs_have_no_finding() -> None:
    for output in (QUIET_PARTIAL, VERBOSE, COLOURED, "bash: mesg: ttyname failed\n" + QUIET_PARTIAL):
        assert findings(output, junit(8, 1)) == [], output
    assert integrity.summary_counts(COLOURED) == [("1 failed, 8 passed in 0.08s", {"failed": 1, "passed": 8})]
    assert integrity.summary_counts(VERBOSE)[0][1] == {"failed": 1, "passed": 8}


def test_a_line_appended_after_pytests_own_is_seen_and_pytests_line_is_checked() -> None:
    forged = QUIET_PARTIAL + "9 passed in 0.42s\n"
    found = findings(forged, junit(9, 0))  # results.xml rewritten to all-passed
    assert [code for code, _ in found] == ["forged_test_output", "junit_mismatch"]
    assert found[0][1] == (
        "2 pytest summary lines for 1 pytest session(s): 1: 1 failed, 8 passed in 0.93s; 2: 9 passed in 0.42s"
    )
    assert found[1][1] == (
        "pytest printed line 1 of 2 (1 failed, 8 passed in 0.93s); "
        "results.xml holds 9 passed, 0 failed or errors"
    )
    # Padded like a verbose run's, coloured, on stderr (which the step's output puts last): the same.
    for fake in ("===== 9 passed in 0.42s =====\n", f"{ESC}[32m9 passed in 0.42s{ESC}[0m\n"):
        assert [c for c, _ in findings(VERBOSE + fake, junit(9, 0))] == [
            "forged_test_output",
            "junit_mismatch",
        ]
    # Even a copy that agrees with results.xml is a line pytest did not print.
    assert [c for c, _ in findings(QUIET_PARTIAL + "1 failed, 8 passed in 0.93s\n", junit(8, 1))] == [
        "forged_test_output"
    ]


def test_only_whole_summary_lines_count() -> None:
    # A program's output quoted in a failure, mid-line or with more on the line, is not pytest's line.
    output = QUIET_PARTIAL.replace(
        "E       AssertionError",
        "E       AssertionError: '9 passed in 0.42s' != ''\nresult: 9 passed in 0.42s!\nE",
    )
    assert findings(output, junit(8, 1)) == []


def test_several_sessions_each_with_a_header() -> None:
    first = VERBOSE.replace("1 failed, 8 passed in 61.20s (0:01:01)", "3 passed in 0.10s")
    # Two sessions, two lines: results.xml is the second session's.
    assert findings(first + VERBOSE, junit(8, 1)) == []
    # It matches neither session: pytest's lines contradict it.
    assert [c for c, _ in findings(first + VERBOSE, junit(12, 0))] == ["junit_mismatch"]
    # A third line for two sessions (it agrees with the rewritten XML; which two are pytest's
    # is not known, so only the count is evidence).
    assert [c for c, _ in findings(first + VERBOSE + "12 passed in 0.4s\n", junit(12, 0))] == [
        "forged_test_output"
    ]


def test_a_process_calling_itself_the_evaluators_keeper_is_still_a_stray() -> None:
    listed = ["/sbin/docker-init -- sleep 2h", "sleep 2h", "sleep 2h", "docker-init", "sleep 2h && evil"]
    assert integrity.stray_processes(listed) == ["sleep 2h", "docker-init", "sleep 2h && evil"]
    assert integrity.stray_processes(["/sbin/docker-init -- sleep 2h", "sleep 2h", ""]) == []
