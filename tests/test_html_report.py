"""pytest-html's report of a ProgramBench session: score, outcome and passed/total columns,
links to each instance's eval.json and trajectory. A real session on the self-test task,
under xdist, with pytest-html writing the file; the test reads the data it embeds.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_programbench import selftest

pytest.importorskip("pytest_html", reason="pytest-html is in the dev extra")

AGENT = """
from pytest_programbench import selftest

COMPILE = "#!/bin/sh\\nset -e\\ngcc -O2 -o executable rpncalc.c\\n"

def solver(instance, sandbox):
    sandbox.write_file("rpncalc.c", selftest.reference_source())
    sandbox.write_file("compile.sh", COMPILE, mode=0o755)
    return {"steps": 2, "trajectory": {"said": "solved"}}
"""


def embedded(report: Path) -> dict[str, Any]:
    """The JSON pytest-html 4 embeds in the page (its JavaScript renders the table from it)."""
    blob = re.search(r'data-jsonblob="([^"]*)"', report.read_text())
    assert blob, "no data-jsonblob in the report"
    return dict(json.loads(html.unescape(blob.group(1))))


@pytest.mark.pytest_surface
def test_html_report_has_programbench_columns_and_links(
    pytester: pytest.Pytester, selftest_image: str
) -> None:
    pytester.makepyfile(html_agent=AGENT)
    out = pytester.path / "out"
    page = pytester.path / "reports" / "report.html"
    result = pytester.runpytest_subprocess(
        "--pb-selftest",
        "--pb-agent=html_agent:solver",
        "--pb-cpus=1",
        f"--pb-output={out}",
        "--html=reports/report.html",
        "-n",
        "2",
        "-p",
        "no:cacheprovider",
    )
    assert result.parseoutcomes() == {"resolved": 1}
    titles = re.findall(r"<th[^>]*>([^<]*)</th>", page.read_text())
    assert titles[:6] == ["Result", "Test", "Score", "Outcome", "Passed/total", "ProgramBench files"], titles
    data = embedded(page)
    [(nodeid, rows)] = data["tests"].items()
    assert nodeid == f"programbench::instance[{selftest.INSTANCE_ID}]"
    [call] = [r for r in rows if r["testId"] == nodeid]  # the call phase's row
    assert (call["pbScore"], call["pbOutcome"], call["pbPassed"]) == ("1.00", "resolved", "18/18")
    cells = "".join(call["resultsTableRow"])
    assert '<td class="col-pbScore">1.00</td>' in cells, cells
    assert '<td class="col-pbOutcome">resolved</td>' in cells, cells
    assert '<td class="col-pbPassed">18/18</td>' in cells, cells
    links = dict((label, href) for href, label in re.findall(r'<a href="([^"]+)">([^<]+)</a>', cells))
    iid = selftest.INSTANCE_ID
    assert links == {
        "eval.json": f"../out/{iid}/{iid}.eval.json",
        "trajectory": f"../out/{iid}/{iid}.traj.json",
    }
    for href in links.values():  # relative to the page, they open the run's files
        assert (page.parent / href).is_file(), href
    assert json.loads((page.parent / links["trajectory"]).read_text()) == {"said": "solved"}
