"""The session's extra outputs: hidden tests as JUnit, the comparison with an earlier run, HTML.

``--pb-junit-tests``, ``--pb-compare``/``--pb-compare-fail`` and ``--pb-html`` are
resolved here (CLI > ini, like every ``--pb-*`` option) into a frozen :class:`Outputs`,
and :class:`OutputsPlugin`, a controller-only plugin, writes them from the rows the
results collector gathered. It is registered before the collector, so at session end
the collector's own ``tryfirst`` sessionfinish (which completes the rows) runs first.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pytest

from pytest_programbench import files
from pytest_programbench.scoring import detail
from pytest_programbench.selection.settings import Option, _base, _raw, _usage, parse_fraction

if TYPE_CHECKING:
    from pytest_programbench.model import Instance
    from pytest_programbench.reporting.compare import Baseline, Comparison
    from pytest_programbench.reporting.package import Packaged
    from pytest_programbench.reporting.results import Tally

OPTIONS = (
    Option(
        "--pb-junit-tests",
        "Write a second JUnit XML to FILE: one testsuite per instance, one testcase per counted hidden test",
        "file",
        metavar="FILE",
    ),
    Option(
        "--pb-compare",
        "Compare with an earlier run: a --pb-report JSON or a run directory (ours or programbench eval's)",
        "path",
        metavar="PATH",
    ),
    Option(
        "--pb-compare-fail",
        "With --pb-compare: fail the session when the mean score drops by more than DELTA (e.g. 0.02)",
        "float",
        metavar="DELTA",
    ),
    Option(
        "--pb-html",
        "Write a self-contained HTML report with plots to FILE, kept current",
        "file",
        metavar="FILE",
    ),
    Option(
        "--pb-package",
        "At the end, package the run as a leaderboard submission in DIR (programbench submit package, plus "
        "the agent, model, settings, versions, per-instance cost/steps/tokens/time and trajectories), then "
        "check it with programbench submit verify",
        "path",
        metavar="DIR",
    ),
)
HTML_EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class Outputs:
    junit_tests: str = ""
    compare: str = ""
    compare_fail: float | None = None
    html: str = ""
    package: str = ""


def resolve(config: pytest.Config) -> Outputs:
    raw = {opt.dest: _raw(config, opt) for opt in OPTIONS}
    kwargs: dict[str, Any] = {}
    for dest, name in (
        ("pb_junit_tests", "junit_tests"),
        ("pb_html", "html"),
        ("pb_compare", "compare"),
        ("pb_package", "package"),
    ):
        value, where = raw[dest]
        if value is None:
            continue
        path = (_base(config, where) / os.path.expanduser(str(value))).resolve()
        if name == "compare" and not path.exists():
            raise _usage(where, value, f"{path} does not exist; give a --pb-report JSON or a run directory")
        kwargs[name] = str(path)
    if "package" in kwargs:
        _check_package(config, Path(kwargs["package"]), raw["pb_package"][1])
    value, where = raw["pb_compare_fail"]
    if value is not None:
        kwargs["compare_fail"] = parse_fraction(value, where)  # a drop in score: 0..1 too
        if "compare" not in kwargs:
            raise _usage(where, value, "it needs --pb-compare PATH (the run to compare with)")
    return Outputs(**kwargs)


def _check_package(config: pytest.Config, dest: Path, where: str) -> None:
    """A leaderboard submission is one attempt per instance of submissions, in a directory of its own."""
    from pytest_programbench.keys import RUN_DIR_KEY, SETTINGS_KEY

    settings = config.stash[SETTINGS_KEY]
    if settings.gold:
        raise _usage(
            where, str(dest), "a --pb-gold run scores references, not submissions: nothing to submit"
        )
    if settings.attempts > 1:
        raise _usage(
            where, str(dest), "a leaderboard submission has one attempt per instance; drop --pb-attempts"
        )
    run_dir = config.stash[RUN_DIR_KEY].resolve()
    if dest == run_dir or run_dir in dest.parents or dest in run_dir.parents:
        raise _usage(where, str(dest), f"give a directory apart from the run directory {run_dir}")


class OutputsPlugin:
    """Controller-side: writes the extra outputs from the collector's rows."""

    def __init__(self, outputs: Outputs, collector: Tally, baseline: Baseline | None) -> None:
        self.outputs = outputs
        self.collector = collector
        self.baseline = baseline
        self.comparison: Comparison | None = None
        self.gate_failure = ""
        self.failures: list[str] = []
        self._html_written = 0.0
        self.packaged: Packaged | None = None

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        o = self.outputs
        lines = [
            f"programbench: {flag} {path}"
            for flag, path in (("--pb-junit-tests", o.junit_tests), ("--pb-html", o.html))
            if path
        ]
        if self.baseline is not None:
            gate = (
                f"; the session fails if the mean drops by more than {o.compare_fail:g}"
                if o.compare_fail is not None
                else ""
            )
            lines.append(
                f"programbench: comparing with {self.baseline.source} "
                f"({len(self.baseline.entries)} instance(s)){gate}"
            )
        return lines

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.outputs.html and time.monotonic() - self._html_written >= HTML_EVERY_SECONDS:
            self.write_html(final=False)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # Runs after the collector's sessionfinish (registered later, so called first): rows complete.
        from _pytest.junitxml import xml_key

        if self.baseline is not None:
            from pytest_programbench.reporting.compare import compare

            self.comparison = compare(self.baseline, list(self.collector.rows.values()))
            self.collector.meta["comparison"] = self.comparison.to_dict()
            self.collector.write_report()
            xml = session.config.stash.get(xml_key, None)
            if xml is not None:
                for name, value in self.comparison.suite_properties():
                    xml.add_global_property(name, value)
            fail = self.outputs.compare_fail
            if fail is not None and self.comparison.mean_delta < -fail - 1e-12:
                self.gate_failure = (
                    f"--pb-compare-fail {fail:g}: the mean score dropped by "
                    f"{-self.comparison.mean_delta:.4f} "
                    f"(more than {fail:g}) against {self.baseline.source}"
                )
                if session.exitstatus == pytest.ExitCode.OK:
                    session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.outputs.junit_tests:
            self._attempt("--pb-junit-tests", self.write_junit_tests)
        if self.outputs.html:
            self.write_html(final=True)
        if self.outputs.package and self.collector.collected:
            self.write_package(session)

    def write_package(self, session: pytest.Session) -> None:
        """``--pb-package``: the run as a leaderboard submission; a failure fails the session."""
        from pytest_programbench.reporting.package import package

        config = session.config
        assert self.collector.run_dir is not None
        try:
            self.packaged = package(
                self.collector.run_dir,
                Path(self.outputs.package),
                [self.collector.rows[k] for k in sorted(self.collector.rows)],
                self.collector.meta,
                agent_config=_agent_config(config),
                engines=_engines(config),
                command=["pytest", *config.invocation_params.args],
            )
        except Exception as exc:  # the summary matters more; the failure is said there and fails the run
            from pytest_programbench.reporting.package import Packaged

            self.packaged = Packaged(
                Path(self.outputs.package), ok=False, error=f"{type(exc).__name__}: {exc}"
            )
        if not self.packaged.ok and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _attempt(self, what: str, write: Any) -> None:
        try:
            write()
        except OSError as exc:
            self.failures.append(f"warning: {what} could not be written: {exc}")

    def write_html(self, *, final: bool) -> None:
        from pytest_programbench.reporting.html_page import render

        def write() -> None:
            path = Path(self.outputs.html)
            path.parent.mkdir(parents=True, exist_ok=True)
            document = self.collector.document()
            if self.comparison is not None:
                document["comparison"] = self.comparison.to_dict()
            files.write_text(path, render(document, final=final, html_dir=path.parent))

        self._html_written = time.monotonic()
        self._attempt("--pb-html", write)

    def write_junit_tests(self) -> None:
        path = Path(self.outputs.junit_tests)
        path.parent.mkdir(parents=True, exist_ok=True)
        instances = {(i.instance_id, i.attempt): i for i in self.collector.instances.values()}
        rows = [self.collector.rows[k] for k in sorted(self.collector.rows)]
        partial = files.partial_path(path)
        try:
            with partial.open("w", encoding="utf-8") as out:
                write_junit_tests(out, rows, instances)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        lines = list(self.failures)
        if self.comparison is not None:
            terminalreporter.write_sep("=", "ProgramBench comparison")
            lines = self.comparison.lines() + lines
        if self.gate_failure:
            lines.append(self.gate_failure)
        from pytest_programbench.text import printable

        for line in lines:  # they name hidden tests, which a submission's results.xml can name
            terminalreporter.write_line(printable(line))
        if self.packaged is not None:
            terminalreporter.write_sep("=", "ProgramBench leaderboard package")
            for line in self.packaged.lines():
                terminalreporter.write_line(printable(line))


def _agent_config(config: pytest.Config) -> Any:
    """The agent's configuration as it ran: mini-swe-agent's merged config, or the --pb-agent-config YAML."""
    from pytest_programbench.keys import SETTINGS_KEY

    settings = config.stash[SETTINGS_KEY]
    if settings.agent == "mini-swe-agent":
        from pytest_programbench.agents.mini_agent import load_config

        return load_config(settings)
    if settings.agent_config:
        import yaml

        return yaml.safe_load(Path(settings.agent_config).read_text())
    return None


def _engines(config: pytest.Config) -> list[dict[str, Any]]:
    """Each engine's version and cores, and the CPUs a scoring container got there (the share rule)."""
    from pytest_programbench.engine.containers import Engine
    from pytest_programbench.engine.fleet import FLEET_KEY, scoring_cpus
    from pytest_programbench.keys import SETTINGS_KEY

    settings = config.stash[SETTINGS_KEY]
    fleet = config.stash[FLEET_KEY]
    workers = int(getattr(config.option, "numprocesses", None) or 1)
    out = []
    for spec in fleet.engines:
        entry: dict[str, Any] = {"url": spec.url, "slots": spec.slots}
        try:
            with Engine(spec.url, timeout=30) as engine:
                cores = engine.cpu_count()
                wanted = max(1, min(settings.cpus or 10, cores))
                entry.update(
                    version=engine.version(),
                    podman=engine.is_podman(),
                    cores=cores,
                    scoring_cpus=scoring_cpus(
                        cores, wanted, fleet.workers_on(spec.url, workers), settings.branch_workers
                    ),
                )
        except Exception as exc:  # recorded as unknown: the package is still worth writing
            entry["error"] = str(exc)
        out.append(entry)
    return out


_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
)


def _attr(text: object) -> str:
    """A quoted XML attribute value; characters XML cannot hold become '?'."""
    value = str(text)
    if not value.isprintable():  # the rare case: control characters, newlines
        return '"' + _NOT_XML.sub("?", value).translate(_ESCAPES) + '"'
    return (
        '"'
        + value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
        + '"'
    )


def _short(message: object) -> str:
    text = str(message or "").strip()
    first = text.splitlines()[0] if text else ""
    return first[: detail.MESSAGE_CHARS]


#: JUnit element for each kind that did not pass, and the message when the evaluator gave none.
_ELEMENT = {
    "failed": ("failure", "failed"),
    "error": ("error", "error"),
    "skipped": ("skipped", "skipped"),
    "not_run": ("skipped", "not run"),
}


def write_junit_tests(
    out: TextIO, rows: list[dict[str, Any]], instances: dict[tuple[str, int], Instance]
) -> None:
    """Stream one testsuite per row, one testcase per counted hidden test read again from eval.json.

    Only one instance's results are in memory at a time; the totals come from the rows' detail.
    """
    sums = dict.fromkeys(detail.KINDS, 0)
    for row in rows:
        for kind, n in detail.totals(row.get("hidden_tests") or {}).items():
            sums[kind] += n
    out.write('<?xml version="1.0" encoding="utf-8"?>\n')
    out.write(
        f'<testsuites name="programbench hidden tests" tests="{sum(sums.values())}" '
        f'failures="{sums["failed"]}" errors="{sums["error"]}" '
        f'skipped="{sums["skipped"] + sums["not_run"]}">\n'
    )
    for row in rows:
        inst = instances.get((row["instance_id"], row["attempt"]))
        suite = row["instance_id"] + (f" #{row['attempt']}" if row["attempt"] > 1 else "")
        results: list[dict[str, Any]] = []
        if inst is not None and row.get("eval_json") and row.get("hidden_tests") is not None:
            try:
                results = list(detail.counted(detail.read(Path(row["eval_json"])), detail.branches_of(inst)))
            except (OSError, ValueError, KeyError, TypeError):
                results = []
        counts = detail.totals(row.get("hidden_tests") or {})
        out.write(
            f"  <testsuite name={_attr(suite)} tests={_attr(len(results))} "
            f"failures={_attr(counts['failed'])} "
            f"errors={_attr(counts['error'])} skipped={_attr(counts['skipped'] + counts['not_run'])}>\n"
        )
        out.write("    <properties>")
        for key in ("score", "n_resolved", "n_tests", "outcome", "language", "difficulty", "error_code"):
            out.write(f"<property name={_attr('pb_' + key)} value={_attr(row.get(key) or '')}/>")
        out.write("</properties>\n")
        out.write("".join(_testcases(row["instance_id"], results)))
        out.write("  </testsuite>\n")
    out.write("</testsuites>\n")


def _testcases(instance_id: str, results: list[dict[str, Any]]) -> Iterator[str]:
    """The testcase elements of one instance (247,444 in a full run: kept to string work)."""
    classnames: dict[str, str] = {}
    for t in results:
        branch = t.get("branch") or ""
        classname = classnames.get(branch)
        if classname is None:
            classname = classnames[branch] = _attr(f"{instance_id}.{branch}" if branch else instance_id)
        head = f"    <testcase classname={classname} name={_attr(t['name'])}"
        kind = detail.KIND_OF.get(t["status"], "error")
        if kind == "passed":
            yield head + "/>\n"
            continue
        element, default = _ELEMENT[kind]
        extra = t.get("extra") or {}
        message = _short(extra.get("message") or extra.get("error_code") or default)
        yield f"{head}><{element} type={_attr(t['status'])} message={_attr(message)}/></testcase>\n"
