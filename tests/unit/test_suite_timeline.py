"""benchmarks/suite_timeline.py: the per-worker summary of a suite's timeline, and the plugin writing it."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def suite_timeline(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as -p finds it: PYTHONPATH=benchmarks
    return importlib.import_module("suite_timeline")


def test_each_worker_says_how_busy_it_was_and_when_it_ran_out_of_work(suite_timeline: ModuleType) -> None:
    rows = [
        ("gw0", "tests/test_a.py::one", 100.0, 150.0),
        ("gw0", "tests/test_a.py::two", 150.0, 400.0),
        ("gw1", "tests/test_b.py::three", 100.0, 110.0),
        ("gw1", "tests/unit/test_c.py::four", 110.0, 111.0),
    ]
    assert suite_timeline.summary(rows, top=2) == [
        "span 300 s, 4 tests",
        "gw0: 2 tests, busy 300 s, out of work at 300 s",
        "gw1: 2 tests, busy 11 s, out of work at 11 s",
        "worker time 311 s; heaviest modules:",
        "    300.0 s  tests/test_a.py",
        "     10.0 s  tests/test_b.py",
    ]
    assert suite_timeline.summary([]) == ["no tests recorded"]


def test_the_plugin_writes_a_line_per_test(
    suite_timeline: ModuleType, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = pytester.path / "timeline.jsonl"
    monkeypatch.setenv("PB_TIMELINE", str(target))
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # this test's own worker, under -n 2
    pytester.makepyfile("def test_one(): pass\ndef test_two(): assert False\n")
    # -W: the module is already imported (by the fixture), so pytest cannot rewrite it, and says so.
    result = pytester.runpytest(
        "-p", "suite_timeline", "-p", "no:programbench", "-W", "ignore::pytest.PytestAssertRewriteWarning"
    )
    result.assert_outcomes(passed=1, failed=1)
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(w, n.split("::")[1]) for w, n, _, _ in rows] == [("main", "test_one"), ("main", "test_two")]
    assert all(end >= start for _, _, start, end in rows)
