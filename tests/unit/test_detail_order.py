"""Hidden-test detail lists tests in tests.json's order, whatever order results.xml had."""

from __future__ import annotations

from pytest_programbench.scoring import detail

TASK = {
    "branches": {
        "b1": {"ignored": False, "ignored_tests": [], "tests": ["t.test_a", "t.test_chain", "t.test_sub"]},
    }
}


def results(*names_and_status: tuple[str, str]) -> dict[str, object]:
    rows = [{"name": n, "branch": "b1", "status": s, "extra": {}} for n, s in names_and_status]
    return {"test_branches": ["b1"], "test_results": rows}


def test_two_xdist_workers_finishing_in_either_order_give_the_same_detail() -> None:
    # `pytest -n auto` with two workers: the XML lists tests as they finish.
    one = results(("t.test_a", "passed"), ("t.test_sub", "failure"), ("t.test_chain", "failure"))
    other = results(("t.test_chain", "failure"), ("t.test_a", "passed"), ("t.test_sub", "failure"))
    assert detail.summarise(one, TASK) == detail.summarise(other, TASK)
    summary = detail.summarise(one, TASK)
    assert summary["b1"]["failed"] == ["t.test_chain", "t.test_sub"]
    assert detail.describe(summary) == "b1: t.test_chain (failed), t.test_sub (failed)"


def test_tests_not_in_tests_json_come_last_by_name() -> None:
    found = results(("t.zz_extra", "failure"), ("t.test_sub", "failure"), ("t.aa_extra", "failure"))
    assert detail.summarise(found, TASK)["b1"]["failed"] == ["t.test_sub", "t.aa_extra", "t.zz_extra"]
