"""Results on reports: what crosses from xdist workers to the controller.

The item's verdict rides on its test report as a plain dict (``report.programbench``)
plus JUnit ``user_properties``; pytest serialises both across xdist, so the
controller sees the same as a single-process run. Only summaries travel here, never
evaluator logs (those stay in ``<id>.eval.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_programbench.errors import ProgramBenchError
from pytest_programbench.keys import SETTINGS_KEY
from pytest_programbench.model import Instance, Outcome

REPORT_ATTR = "programbench"
CATEGORIES = ("resolved", "almost", "partial", "zero")
LETTERS = {"resolved": "R", "almost": "A", "partial": "P", "zero": "Z"}


def instance_of(item: pytest.Item) -> Instance | None:
    callspec = getattr(item, "callspec", None)
    inst = callspec.params.get("pb_instance") if callspec is not None else None
    return inst if isinstance(inst, Instance) else None


def record(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    """Attach the verdict (or the harness error) to the report of a ProgramBench item."""
    inst = instance_of(item)
    if inst is None:
        return
    base = {
        "instance_id": inst.instance_id,
        "attempt": inst.attempt,
        "language": inst.language,
        "difficulty": inst.difficulty,
    }
    outcome = item.funcargs.get("pb_outcome") if hasattr(item, "funcargs") else None
    if report.when == "call" and isinstance(outcome, Outcome):
        data = {**base, **outcome.to_dict(), "outcome": outcome.category}
        threshold = item.config.stash[SETTINGS_KEY].threshold
        if outcome.score < threshold:
            data["reason"] = outcome.failure_reason(threshold)
    elif report.failed and report.when in ("setup", "call"):
        exc = call.excinfo.value if call.excinfo is not None else None
        code = exc.code if isinstance(exc, ProgramBenchError) else type(exc).__name__ if exc else "error"
        message = str(exc).splitlines()[0] if exc is not None and str(exc) else code
        data = {
            **base,
            "score": 0.0,
            "n_resolved": 0,
            "n_tests": 0,
            "outcome": "error",
            "error_code": code,
            "message": message,
        }
    else:
        return
    setattr(report, REPORT_ATTR, data)
    for key in ("score", "n_resolved", "n_tests", "outcome", "language", "difficulty", "error_code"):
        name = {"n_resolved": "pb_passed", "n_tests": "pb_total"}.get(key, f"pb_{key}")
        value = data.get(key)
        # On the item, like record_property: junitxml writes them from the teardown report.
        item.user_properties.append((name, "" if value is None else value))


def teststatus(report: pytest.TestReport) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    data = getattr(report, REPORT_ATTR, None)
    if not isinstance(data, dict) or report.when != "call" or data.get("outcome") not in CATEGORIES:
        return None
    category = data["outcome"]
    color = {"green": True} if report.passed else {"red": True} if category == "zero" else {"yellow": True}
    return category, LETTERS[category], (category.upper(), color)


class Collector:
    """Controller-side: gathers every item's verdict from the reports as they arrive.

    With ``report_path`` it also keeps the ``--pb-report`` JSON current, written
    atomically after each verdict and once more at the end.
    """

    def __init__(self, report_path: Path | None = None, meta: dict[str, Any] | None = None) -> None:
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.report_path = report_path
        self.meta = meta or {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, REPORT_ATTR, None)
        if isinstance(data, dict):
            self.rows[(data["instance_id"], data["attempt"])] = data
            self.write_report()

    def pytest_sessionfinish(self) -> None:
        self.write_report()

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        from pytest_programbench.reporting import summary_lines

        lines = summary_lines(list(self.rows.values()))
        if lines:
            terminalreporter.write_sep("=", "ProgramBench")
            for line in lines:
                terminalreporter.write_line(line)

    def document(self) -> dict[str, Any]:
        from pytest_programbench.reporting import totals

        rows = [self.rows[k] for k in sorted(self.rows)]
        return {**self.meta, "instances": rows, "summary": totals(rows)}

    def write_report(self) -> None:
        if self.report_path is None:
            return
        self.report_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.report_path.with_name(self.report_path.name + f".{os.getpid()}.partial")
        partial.write_text(json.dumps(self.document(), indent=2))
        partial.replace(self.report_path)
