"""--pb-html opened in a real headless browser: Debian's chromium, driven by selenium.

The page of a generated run of real size, compared with another run, must load with no
console error and nothing fetched, draw its charts, and show the numbers the JSON report holds.
.ci/run installs chromium and chromium-driver; the dev extra brings selenium.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import synthruns

from pytest_programbench.reporting import html_page as htmlreport
from pytest_programbench.reporting.results import Tally

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are needed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A session's --pb-html and --pb-report, 12 generated instances compared with an earlier run."""
    root = tmp_path_factory.mktemp("html")
    ids = synthruns.task_ids()[:12]
    before = synthruns.make_run(root / "before", ids, seed=4)
    run = synthruns.make_run(root / "now", ids, seed=5)
    pytester_dir = root / "session"
    pytester_dir.mkdir()
    import subprocess
    import sys

    html, report = root / "site" / "report.html", root / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--pb-submissions={run.subs}",
            f"--pb-output={run.out}",
            "--pb-pull=never",
            f"--pb-report={report}",
            f"--pb-html={html}",
            f"--pb-compare={before.out}",
        ],
        cwd=pytester_dir,
        capture_output=True,
        text=True,
    )
    assert html.is_file(), proc.stdout + proc.stderr
    return html, json.loads(report.read_text())


def console_errors(driver: Any) -> list[Any]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_page_is_self_contained(page: tuple[Path, dict[str, Any]]) -> None:
    text = page[0].read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", text)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace is a name, never fetched
    assert "refresh" not in text  # the final page does not reload itself


def test_the_page_renders_the_report_numbers_without_console_errors(
    browser: Any, page: tuple[Path, dict[str, Any]]
) -> None:
    from selenium.webdriver.common.by import By

    html, doc = page
    browser.get(html.as_uri())
    find = browser.find_element
    summary = doc["summary"]
    assert find(By.ID, "mean-score").text == f"{summary['mean_score']:.4f}"
    for key in ("n_instances", "n_items"):
        assert find(By.ID, key.replace("_", "-")).text == str(summary[key])
    for outcome in ("resolved", "almost", "partial", "zero", "error"):
        assert find(By.ID, f"n-{outcome}").text == str(summary[outcome])

    for key in ("language", "difficulty"):
        rects = find(By.ID, f"chart-{key}").find_elements(By.CSS_SELECTOR, "rect")
        shown = {r.get_attribute("data-name"): float(r.get_attribute("data-value")) for r in rects}
        assert shown == pytest.approx({k: v["mean_score"] for k, v in summary[f"by_{key}"].items()})
        assert all(r.size["width"] > 0 for r in rects if float(r.get_attribute("data-value")) > 0)

    bins = find(By.ID, "chart-histogram").find_elements(By.CSS_SELECTOR, "rect")
    expected = Counter(min(9, int(r["score"] * 10)) for r in doc["instances"])
    assert {int(b.get_attribute("data-bin")): int(b.get_attribute("data-value")) for b in bins} == {
        i: expected.get(i, 0) for i in range(10)
    }
    assert max(b.size["height"] for b in bins) > 50
    with_cost = [r for r in doc["instances"] if r.get("agent_cost")]
    assert len(find(By.ID, "chart-cost").find_elements(By.CSS_SELECTOR, "circle")) == len(with_cost) > 0
    assert len(find(By.ID, "chart-time").find_elements(By.CSS_SELECTOR, "circle")) == len(doc["instances"])

    rows = find(By.ID, "table").find_elements(By.CSS_SELECTOR, "tbody tr")
    by_id = {r["instance_id"]: r for r in doc["instances"]}
    assert len(rows) == len(by_id)
    for tr in rows:
        row = by_id[tr.get_attribute("data-instance")]
        cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        assert cells[4] == f"{row['score']:.3f}" and cells[5] == str(row["n_resolved"])
        assert cells[8] == row["outcome"]
        link = tr.find_element(By.LINK_TEXT, "eval.json").get_attribute("href")
        assert link == Path(row["eval_json"]).as_uri()

    c = doc["comparison"]
    delta = find(By.ID, "compare-delta").text
    assert delta == ("+" if c["mean_delta"] >= 0 else "") + f"{c['mean_delta']:.4f}"
    assert len(find(By.ID, "compare-table").find_elements(By.CSS_SELECTOR, "tbody tr")) == len(c["instances"])
    assert console_errors(browser) == []


def test_the_table_sorts_and_filters(browser: Any, page: tuple[Path, dict[str, Any]]) -> None:
    from selenium.webdriver.common.by import By

    html, doc = page
    browser.get(html.as_uri())
    header = browser.find_element(By.CSS_SELECTOR, "#table th[data-column='4']")  # score
    header.click()

    def scores() -> list[float]:
        rows = browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")
        return [float(tr.find_elements(By.TAG_NAME, "td")[4].text) for tr in rows]

    assert scores() == sorted(scores()) and len(scores()) == len(doc["instances"])
    header.click()
    assert scores() == sorted(scores(), reverse=True)
    language = doc["instances"][0]["language"]
    browser.find_element(By.ID, "filter").send_keys(language)
    shown = browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")
    wanted = [r for r in doc["instances"] if language in (r["language"] + r["instance_id"] + r["outcome"])]
    assert len(shown) == len(wanted) < len(doc["instances"])
    assert console_errors(browser) == []


def test_the_page_is_kept_current_while_the_run_goes_on(tmp_path: Path) -> None:
    from pytest_programbench.reporting.outputs import Outputs, OutputsPlugin

    html = tmp_path / "live.html"
    collector = Tally(None, {"run_id": "r"})
    plugin = OutputsPlugin(Outputs(html=str(html)), collector, None)
    collector.rows[("a", 1)] = {
        "instance_id": "a",
        "attempt": 1,
        "language": "c",
        "difficulty": "easy",
        "score": 0.5,
        "n_resolved": 1,
        "n_tests": 2,
        "outcome": "partial",
    }
    plugin.pytest_runtest_logreport(report=None)  # type: ignore[arg-type]
    text = html.read_text()
    assert (
        f'http-equiv="refresh" content="{htmlreport.REFRESH_SECONDS}"' in text and "run in progress" in text
    )
    assert '"instance_id":"a"' in text


def test_hostile_text_stays_data(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    hostile = "</script><script>document.title='owned'</script><!-- & \u2028"
    row = {
        "instance_id": "x__y.1",
        "attempt": 1,
        "language": "c",
        "difficulty": "easy",
        "score": 0.0,
        "n_resolved": 0,
        "n_tests": 3,
        "outcome": "zero",
        "reason": hostile,
    }
    page = tmp_path / "hostile.html"
    page.write_text(htmlreport.render({"instances": [row], "summary": {"mean_score": 0.0}}))
    assert page.read_text().count("</script>") == 2  # the page's own two
    browser.get(page.as_uri())
    assert browser.title == "ProgramBench results"
    cells = browser.find_elements(By.CSS_SELECTOR, "#table tbody td")
    assert any(c.text.startswith(hostile[:40]) for c in cells)  # shown as text, not run
    assert console_errors(browser) == []
