"""Columns of pytest-html's report: score, outcome, passed/total, and links to the run's files.

Registered on the controller only when pytest-html is loaded (its hooks exist only then).
The values come from the verdict each report carries (``report.programbench``), so the
HTML says what the terminal and ``--pb-report`` say, under xdist too. Links are relative
to the HTML file, so the report and the run directory can move together.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_programbench.model import Instance
from pytest_programbench.reporting.results import REPORT_ATTR

#: (column key, header) of the sortable columns; the key names the cell's ``col-`` class.
COLUMNS = (("pbScore", "Score"), ("pbOutcome", "Outcome"), ("pbPassed", "Passed/total"))


class HtmlColumns:
    def __init__(self, html_path: Path, run_dir: Path, instances: dict[str, Instance]) -> None:
        # Where pytest-html writes it: the path as given, variables and ~ expanded, from the cwd.
        self.html_dir = (Path.cwd() / Path(os.path.expandvars(html_path)).expanduser()).resolve().parent
        self.run_dir = run_dir
        self.instances = instances

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        # After "Test": pytest-html sorts by the data-column-type of a "sortable" header.
        headers = [f'<th class="sortable" data-column-type="{key}">{title}</th>' for key, title in COLUMNS]
        cells[2:2] = [*headers, "<th>ProgramBench files</th>"]

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        data = getattr(report, REPORT_ATTR, None)
        values = ["", "", ""]
        if isinstance(data, dict):
            score = data.get("score")
            values = [
                f"{score:.2f}" if isinstance(score, (int, float)) else "",
                str(data.get("outcome", "")),
                f"{data.get('n_resolved', 0)}/{data.get('n_tests', 0)}",
            ]
        keys = [key for key, _ in COLUMNS]
        row = [f'<td class="col-{key}">{html.escape(v)}</td>' for key, v in zip(keys, values, strict=True)]
        cells[2:2] = [*row, f'<td class="col-pbFiles">{self._links(report.nodeid)}</td>']

    def _links(self, nodeid: str) -> str:
        instance = self.instances.get(nodeid)
        if instance is None:
            return ""
        folder = self.run_dir / instance.rel_dir
        iid = instance.instance_id
        files = (("eval.json", f"{iid}.eval.json"), ("trajectory", f"{iid}.traj.json"))
        links = [
            f'<a href="{html.escape(self._href(folder / name))}">{label}</a>'
            for label, name in files
            if (folder / name).is_file()
        ]
        return " ".join(links)

    def _href(self, path: Path) -> str:
        try:
            return Path(os.path.relpath(path.resolve(), self.html_dir)).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            return path.resolve().as_uri()


def register(config: pytest.Config, run_dir: Path, instances: dict[str, Instance]) -> None:
    """Add the columns when pytest-html is loaded and writes a report (``--html``)."""
    html_path: Any = getattr(config.option, "htmlpath", None)
    if config.pluginmanager.hasplugin("html") and html_path:
        config.pluginmanager.register(HtmlColumns(Path(html_path), run_dir, instances), "programbench-html")
