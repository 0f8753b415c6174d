"""files.replacing: the one write-then-rename helper (whole or nothing, optionally durable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_programbench import files


@pytest.mark.parametrize("durable", [False, True])
def test_the_file_appears_whole_under_its_name(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "eval.json"
    with files.replacing(target, durable=durable) as partial:
        partial.write_text("{}")
        assert not target.exists()  # nothing under the final name until the block ends
    assert target.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]


def test_a_failure_keeps_the_old_file_and_leaves_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "agent.json"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"), files.replacing(target) as partial:
        partial.write_text("half")
        raise OSError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["agent.json"]


def test_a_block_that_drops_its_partial_replaces_nothing(tmp_path: Path) -> None:
    target = tmp_path / "eval.json"
    target.write_text("as it was")
    with files.replacing(target, durable=True) as partial:
        partial.write_text("as it was")
        partial.unlink()
    assert target.read_text() == "as it was"


def test_write_text_is_replacing(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    files.write_text(target, "one")
    files.write_text(target, "two", durable=True)
    assert target.read_text() == "two"
    assert (
        files.partial_path(target).name.startswith("report.json.") and not files.partial_path(target).exists()
    )
