"""htmlreport.py on its own: what the page carries, what it leaves out, and that data cannot break it.

tests/test_html.py opens a real session's page in a headless browser; these pin down the
document the page is built from, with no session and no browser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pytest_programbench.reporting import html_page as htmlreport

from .support import row


def counts(**kinds: int) -> dict[str, int]:
    return {"passed": 0, "failed": 0, "error": 0, "not_run": 0, "skipped": 0, **kinds}


HIDDEN = {
    "b1": {"counts": counts(passed=3, failed=1, not_run=1), "failed": ["t1"], "not_run": ["t2"]},
    "b2": {"counts": counts(passed=2, error=1), "error": ["t3"]},
}


def document(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    first = row(
        "a",
        0.5,
        hidden_tests=HIDDEN,
        findings=[{"code": "test_config", "path": "conftest.py", "detail": "submission"}],
        eval_json=str(tmp_path / "run" / "a" / "a.eval.json"),
        trajectory=str(tmp_path / "run" / "a" / "a.traj.json"),
        agent_seconds=10.0,
        eval_seconds=2.5,
    )
    return {
        "versions": {"programbench": "1.2.5"},
        "options": {"pb_language": ["c"]},
        "instances": [first, row("b", 1.0)],
        "summary": {"mean_score": 0.75},
        **extra,
    }


def embedded(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="pb-data">(.*?)</script>', page, re.S)
    assert match, "the page embeds its data in one JSON script element"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_page_data_keeps_counts_drops_names_and_links_relative_to_the_page(tmp_path: Path) -> None:
    data = htmlreport.page_data(document(tmp_path), tmp_path / "reports")
    first, second = data["instances"]
    assert "hidden_tests" not in first and "findings" not in first
    assert first["hidden_counts"] == {"passed": 5, "failed": 1, "error": 1, "not_run": 1, "skipped": 0}
    assert first["links"] == {"eval_json": "../run/a/a.eval.json", "trajectory": "../run/a/a.traj.json"}
    assert first["seconds"] == 12.5
    assert second["links"] == {} and "hidden_counts" not in second
    # The options stay in the JSON report; the page has no use for them.
    assert "options" not in data and data["summary"] == {"mean_score": 0.75}
    # Without a page directory (no file to be relative to) links are file:// URIs.
    absolute = htmlreport.page_data(document(tmp_path), None)["instances"][0]["links"]
    assert absolute["eval_json"] == (tmp_path / "run" / "a" / "a.eval.json").as_uri()


def test_comparison_flips_become_counts_per_instance(tmp_path: Path) -> None:
    comparison = {"mean_delta": 0.1, "flips": {"a": {"now_pass": ["b1/t1", "b1/t2"], "now_fail": ["b2/t3"]}}}
    data = htmlreport.page_data(document(tmp_path, comparison=comparison), None)
    assert data["comparison"] == {"mean_delta": 0.1, "flipped": {"a": {"now_pass": 2, "now_fail": 1}}}


def test_the_page_is_self_contained_and_agent_data_cannot_end_its_script(tmp_path: Path) -> None:
    doc = document(tmp_path)
    hostile = '</script><script>alert(1)</script><!-- "quoted" & more'
    doc["instances"][1]["reason"] = hostile
    page = htmlreport.render(doc)
    # The data element and the page's own script: a "</script" in the data would have ended one early.
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert embedded(page)["instances"][1]["reason"] == hostile
    # Nothing is fetched: no external script, style, image or font.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page
    assert '<meta http-equiv="refresh"' not in page
    live = htmlreport.render(doc, final=False)
    assert f'<meta http-equiv="refresh" content="{htmlreport.REFRESH_SECONDS}">' in live
    assert "<title>ProgramBench results (run in progress)</title>" in live
