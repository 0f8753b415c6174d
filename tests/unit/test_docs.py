"""The docs stay true to the code: the options table against --help, every link, the README's size."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS]
FLAG = re.compile(r"--pb-[a-z][a-z-]*[a-z]")


def help_flags() -> set[str]:
    """The --pb-* options `pytest --help` lists (the plugin's group), in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=ROOT / "docs",  # no ini file of ours: nothing but the installed plugin
        check=True,
    ).stdout
    return set(re.findall(r"^\s+(--pb-[a-z-]+)", out, re.MULTILINE))


def table_flags(page: Path) -> set[str]:
    """The options named in the first column of the page's options table."""
    rows = [line for line in page.read_text().splitlines() if line.startswith("| `--pb-")]
    return {flag for row in rows for flag in FLAG.findall(row.split("|")[1])}


def test_the_options_table_names_exactly_the_options_pytest_help_lists() -> None:
    listed = help_flags()
    assert len(listed) > 30, "pytest --help printed no programbench options"
    documented = table_flags(ROOT / "docs" / "options.md")
    assert sorted(listed - documented) == [], "options --help lists that docs/options.md does not"
    assert sorted(documented - listed) == [], "options docs/options.md lists that do not exist"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_its_heading(page: Path) -> None:
    assert page.is_file(), page
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https://, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: no heading #{anchor} in {dest.name}"


def test_the_readme_stays_a_front_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 10 * 1024
    # The two set-up commands a newcomer needs: install and self-test, then the test suite.
    block = readme.split("## Set up", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == ["pip install -e . && pytest --pb-selftest", "tox"]
    # Every page under docs/ is reachable from it.
    for page in DOCS:
        assert f"(docs/{page.name})" in readme, page.name
