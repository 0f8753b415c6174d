"""Results on reports: what crosses from xdist workers to the controller.

The item's verdict rides on its test report as a plain dict (``report.programbench``)
plus JUnit ``user_properties``; pytest serialises both across xdist, so the
controller sees the same as a single-process run. Only summaries travel here, never
evaluator logs (those stay in ``<id>.eval.json``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_programbench import files
from pytest_programbench.errors import ProgramBenchError
from pytest_programbench.keys import SETTINGS_KEY
from pytest_programbench.model import CATEGORIES, ERROR, LETTERS, OUTCOMES, Instance, Outcome

if TYPE_CHECKING:
    from pytest_programbench.scoring.gold import Mask

REPORT_ATTR = "programbench"
REPORT_EVERY_SECONDS = 1.0
#: Per-testcase JUnit properties: (property, report key); always written.
JUNIT_PROPERTIES = (
    ("pb_score", "score"),
    ("pb_passed", "n_resolved"),
    ("pb_total", "n_tests"),
    ("pb_outcome", "outcome"),
    ("pb_language", "language"),
    ("pb_difficulty", "difficulty"),
    ("pb_error_code", "error_code"),
    ("pb_eval_seconds", "eval_seconds"),
    ("pb_integrity", "integrity"),
)
#: Written only when known (an agent ran, or the verdict was reused).
JUNIT_IF_KNOWN = (
    ("pb_agent", "agent"),
    ("pb_agent_seconds", "agent_seconds"),
    ("pb_agent_steps", "agent_steps"),
    ("pb_agent_cost", "agent_cost"),
    ("pb_agent_exit_status", "agent_exit_status"),
    ("pb_agent_timed_out", "agent_timed_out"),
    ("pb_reused", "reused"),
    ("pb_official_score", "official_score"),
    ("pb_gold_score", "gold_score"),
    ("pb_image_id", "image_id"),
    ("pb_rescored", "rescored"),
    ("pb_engine", "engine"),
    ("pb_pulled_bytes", "pulled_bytes"),
    ("pb_evicted_bytes", "evicted_bytes"),
)


def instance_of(item: pytest.Item) -> Instance | None:
    callspec = getattr(item, "callspec", None)
    inst = callspec.params.get("pb_instance") if callspec is not None else None
    return inst if isinstance(inst, Instance) else None


def record(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    """Attach the verdict (or the harness error) to the report of a ProgramBench item."""
    inst = instance_of(item)
    if inst is None:
        return
    outcome = item.funcargs.get("pb_outcome") if hasattr(item, "funcargs") else None
    if report.when == "call" and isinstance(outcome, Outcome):
        data = row_of(outcome, item.config.stash[SETTINGS_KEY].threshold, inst)
        if outcome.findings:
            from pytest_programbench.text import printable

            lines = [printable(part) for part in data["integrity"].split("; ")]
            report.sections.append(("ProgramBench integrity", "\n".join(lines)))
        from pytest_programbench.scoring.detail import attach

        attach(item, data)
    elif report.failed and report.when in ("setup", "call"):
        exc = call.excinfo.value if call.excinfo is not None else None
        code = exc.code if isinstance(exc, ProgramBenchError) else type(exc).__name__ if exc else "error"
        message = str(exc).splitlines()[0] if exc is not None and str(exc) else code
        data = error_row(inst, code, message)
    else:
        return
    from pytest_programbench.engine.fleet import ENGINE_KEY, ROW_KEY

    if ENGINE_KEY in item.stash:
        data["engine"] = item.stash[ENGINE_KEY]
    extra: dict[str, Any] = item.stash.get(ROW_KEY, {})
    data.update(extra)
    setattr(report, REPORT_ATTR, data)
    # On the item, like record_property: junitxml writes them from the teardown report.
    for name, key in JUNIT_PROPERTIES:
        value = data.get(key)
        item.user_properties.append((name, "" if value is None else value))
    for name, key in JUNIT_IF_KNOWN:
        if data.get(key) not in (None, False, ""):
            item.user_properties.append((name, data[key]))


def row_of(outcome: Outcome, threshold: float = 1.0, instance: Instance | None = None) -> dict[str, Any]:
    """A verdict as the reports carry it: its flat fields, plus the words a reader needs.

    ``integrity`` is the audit's findings in one line ("" without any); ``reason``, why
    a scored item did not pass (or what the audit found), is there only when there is one;
    ``node_id`` (given the instance) is the item's node id, to paste back as an argument.
    """
    data = outcome.to_dict()
    if instance is not None:
        from pytest_programbench.selection.items import nodeid_of

        data["node_id"] = nodeid_of(instance)
    data["integrity"] = ""
    if outcome.outcome in CATEGORIES and outcome.score < threshold:
        data["reason"] = outcome.failure_reason(threshold)
    if outcome.findings:
        from pytest_programbench.scoring.integrity import describe

        data["integrity"] = describe(outcome.findings, limit=len(outcome.findings))
        data.setdefault("reason", f"integrity: {describe(outcome.findings)}")
    return data


def not_run_row(inst: Instance, cause: str) -> dict[str, Any]:
    """A selected item with no verdict in this session or the run directory: counts 0 in the mean."""
    return row_of(Outcome.not_run(inst, cause), instance=inst)


def error_row(inst: Instance, code: str, message: str) -> dict[str, Any]:
    """A row for an item that has no score: harness trouble, a dead worker, a run cut short."""
    return row_of(Outcome.error(inst, code, message), instance=inst)


def teststatus(report: pytest.TestReport) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    data = getattr(report, REPORT_ATTR, None)
    if not isinstance(data, dict) or report.when != "call" or data.get("outcome") not in CATEGORIES:
        return None
    category = data["outcome"]
    color = {"green": True} if report.passed else {"red": True} if category == "zero" else {"yellow": True}
    word = category.upper() + (" (integrity findings)" if data.get("findings") else "")
    return category, LETTERS[category], (word, color)


class Tally:
    """Controller-side tally of the verdicts (not a pytest collector): one row per item, from its reports.

    With ``report_path`` it also keeps the ``--pb-report`` JSON current, written
    atomically after each verdict and once more at the end. The aggregates become
    suite-level JUnit properties here, on the controller, so they exist under xdist too.
    """

    def __init__(
        self,
        report_path: Path | None = None,
        meta: dict[str, Any] | None = None,
        *,
        threshold: float = 1.0,
        integrity: str = "report",
        instances: dict[str, Instance] | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.report_path = report_path
        self.meta = meta or {}
        self.threshold = threshold
        self.integrity = integrity
        #: Every instance item by node id, and the node ids this session selected to run.
        self.instances = instances or {}
        self.expected: set[str] = set()
        self.collected = False  # False when the session ended before collection (a preflight error)
        #: Where earlier sessions' verdicts are, for the selected instances this session did not run.
        self.run_dir = run_dir
        self._written = 0.0
        self.write_failure = ""  # why the last --pb-report write failed; the run goes on regardless
        #: --pb-gold-mask: verdicts taken from the run directory get their gold_score here (gold.py)
        self.gold_mask: Mask | None = None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collected = not session.config.option.collectonly
        self.expected.update(item.nodeid for item in session.items if item.nodeid in self.instances)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        # Under xdist the controller collects nothing; each worker reports what it selected.
        self.collected = True
        self.expected.update(i for i in ids if i in self.instances)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, REPORT_ATTR, None)
        inst = self.instances.get(report.nodeid)
        if not isinstance(data, dict) and report.failed and inst is not None:
            # No verdict rode on this report: xdist lost the worker running the item.
            text = str(report.longrepr or "").strip().splitlines()
            crashed = any("crashed" in line for line in text)
            message = text[0] if text else "the item failed without a verdict"
            if crashed:
                message += "; it counts 0: rerun it (finished work resumes from the run directory)"
            data = error_row(inst, "worker_crashed" if crashed else "no_verdict", message)
        if isinstance(data, dict):
            key = (data["instance_id"], data["attempt"])
            if data.get("outcome") != ERROR or key not in self.rows:
                self.rows[key] = data  # a teardown error never hides the item's verdict
            # Current within a second, without rewriting the whole file per item (N^2 on big runs).
            if time.monotonic() - self._written >= REPORT_EVERY_SECONDS:
                self.write_report()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # tryfirst: before junitxml's own sessionfinish writes the file.
        # Private pytest API, used here only: the stash key of the --junitxml writer, the one
        # way to add suite-level properties from the controller (record_testsuite_property is
        # a fixture, per worker). Checked by tests/unit/test_private_apis.py.
        from _pytest.junitxml import xml_key

        self.add_missing(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)

        xml = session.config.stash.get(xml_key, None)
        if xml is not None and self.rows:
            for name, value in self.suite_properties():
                xml.add_global_property(name, value)
        self.write_report()

    def add_missing(self, *, interrupted: bool) -> None:
        """Count every selected instance, so the summary covers the whole run directory.

        An instance this session gave no verdict takes the one an earlier session (or the
        official tools) left in the run directory, marked as such; failing that it is a
        "not run" row that counts 0 in the mean, as the leaderboard counts an unattempted task.
        """
        if not self.collected:
            return
        from pytest_programbench.scoring.resume import earlier_verdict

        if interrupted:
            cause = "the session was interrupted before this instance finished"
        else:
            cause = "the session ended before this instance ran (-x/--maxfail, or a crash)"
        for nodeid, inst in sorted(self.instances.items()):
            key = (inst.instance_id, inst.attempt)
            if key in self.rows:
                continue
            found = earlier_verdict(inst, self.run_dir / inst.rel_dir) if self.run_dir else None
            if found is not None:
                outcome, source = found
                if self.integrity == "strict":
                    outcome = outcome.counted_strictly()
                self.rows[key] = {**row_of(outcome, self.threshold, inst), "session": source}
                if self.gold_mask is not None and self.run_dir is not None:
                    from pytest_programbench.scoring.gold import add_gold_score, gold_score_of

                    eval_json = self.run_dir / inst.rel_dir / f"{inst.instance_id}.eval.json"
                    add_gold_score(self.rows[key], gold_score_of(self.gold_mask, inst, eval_json))
            elif nodeid in self.expected:
                self.rows[key] = not_run_row(inst, cause)
            else:
                self.rows[key] = not_run_row(
                    inst, "not selected in this session (-k, -m, --lf or node ids), no verdict yet"
                )

    def suite_properties(self) -> list[tuple[str, object]]:
        from pytest_programbench.reporting.summary import totals

        summary = totals(list(self.rows.values()), threshold=self.threshold, integrity=self.integrity)
        props: list[tuple[str, object]] = [
            ("pb_items", summary["n_items"]),
            ("pb_instances", summary["n_instances"]),
            ("pb_mean_score", round(summary["mean_score"], 6)),
            ("pb_errors_count_as", summary["errors_count_as"]),
            ("pb_flagged", summary["flagged"]),
            ("pb_integrity_mode", summary["integrity"]),
            *((f"pb_{c}", summary[c]) for c in OUTCOMES),
        ]
        if "mean_gold_score" in summary:
            props += [("pb_mean_gold_score", round(summary["mean_gold_score"], 6))]
        props += [(k.replace("@", "_at_"), round(v, 6)) for k, v in summary.items() if k.startswith("pass@")]
        for key in ("by_language", "by_difficulty"):
            for name, agg in summary[key].items():
                prefix = f"pb_{key[3:]}_{name}"
                props += [
                    (f"{prefix}_instances", agg["instances"]),
                    (f"{prefix}_mean_score", round(agg["mean_score"], 6)),
                    (f"{prefix}_resolved", agg["resolved"]),
                    (f"{prefix}_almost", agg["almost"]),
                ]
        props += [(f"pb_{k}", v) for k, v in self.meta.items() if isinstance(v, str)]
        props += [(f"pb_version_{k}", v) for k, v in self.meta.get("versions", {}).items()]
        return props

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        from pytest_programbench.reporting.summary import summary_lines
        from pytest_programbench.text import printable

        if not self.collected:
            return
        lines = summary_lines(list(self.rows.values()), threshold=self.threshold, integrity=self.integrity)
        if self.run_dir is not None and lines:
            lines.append(f"run directory: {self.run_dir}")
        if self.write_failure:
            lines.append(
                f"warning: --pb-report {self.report_path} could not be written: {self.write_failure}"
            )
        if lines:
            terminalreporter.write_sep("=", "ProgramBench")
            for line in lines:  # rows hold file and test names, agent and evaluator messages
                terminalreporter.write_line(printable(line))

    def document(self) -> dict[str, Any]:
        from pytest_programbench.reporting.summary import totals

        rows = [self.rows[k] for k in sorted(self.rows)]
        summary = totals(rows, threshold=self.threshold, integrity=self.integrity)
        return {**self.meta, "instances": rows, "summary": summary}

    def write_report(self) -> None:
        """Rewrite the JSON report; a failure (a full disk) is remembered and shown, never raised."""
        if self.report_path is None:
            return
        try:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            files.write_text(self.report_path, report_text(self.document()))
        except OSError as exc:
            self.write_failure = str(exc) or type(exc).__name__
        else:
            self.write_failure = ""
        self._written = time.monotonic()


def report_text(document: dict[str, Any]) -> str:
    """The report as JSON: indented, but each instance row on one line.

    Rows hold every hidden test that did not pass (up to 247,444 names in a full run), and
    json's C encoder only runs without ``indent``; so the rows are encoded compactly, in C,
    and the rest of the document (meta, summary, comparison) is indented as before.
    """
    rows = document.get("instances", [])
    marker = "\u0000pb-rows\u0000"  # a string no key or value of ours holds
    outline = json.dumps({**document, "instances": marker}, indent=2, default=str)
    body = "[\n" + ",\n".join("    " + json.dumps(r, default=str) for r in rows) + "\n  ]" if rows else "[]"
    return outline.replace(json.dumps(marker), body, 1)
