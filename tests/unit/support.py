"""Builders shared by the pure tier: instances, verdict rows and fake reports, no engine."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_programbench.model import Instance, category_of


def instance(iid: str = "org__tool.abc1234", **fields: Any) -> Instance:
    values: dict[str, Any] = {
        "instance_id": iid,
        "language": "c",
        "difficulty": "easy",
        "repository": "org/tool",
        "task_dir": "/nonexistent",
        "image": f"programbench/{iid}",
        "image_tag": "task_cleanroom_v6",
        **fields,
    }
    return Instance(**values)


def row(iid: str, score: float = 1.0, **fields: Any) -> dict[str, Any]:
    """A scored row as the report carries it."""
    return {
        "instance_id": iid,
        "attempt": 1,
        "language": "c",
        "difficulty": "easy",
        "score": score,
        "n_resolved": round(score * 10),
        "n_tests": 10,
        "outcome": category_of(score),
        "error_code": None,
        **fields,
    }


def error(iid: str, code: str = "image_missing", **fields: Any) -> dict[str, Any]:
    """An error row (harness trouble) as the report carries it."""
    return {
        **row(iid, 0.0),
        "n_resolved": 0,
        "n_tests": 0,
        "outcome": "error",
        "error_code": code,
        "message": f"{code}: do something",
        **fields,
    }


def fake_item(inst: Instance | None, outcome: object = None, threshold: float = 1.0) -> Any:
    """What results.record reads of an item: its parameter, its pb_outcome, the settings, properties."""
    from pytest_programbench.keys import SETTINGS_KEY
    from pytest_programbench.selection.settings import Settings

    stash = pytest.Stash()
    stash[SETTINGS_KEY] = Settings(active=True, threshold=threshold)
    params = {"pb_instance": inst} if inst is not None else {}
    return SimpleNamespace(
        callspec=SimpleNamespace(params=params),
        funcargs={"pb_outcome": outcome} if outcome is not None else {},
        config=SimpleNamespace(stash=stash),
        stash=pytest.Stash(),  # the item's own: detail.attach reads what pb_outcome left there
        user_properties=[],
    )


def fake_report(when: str = "call", outcome: str = "passed", nodeid: str = "", longrepr: str = "") -> Any:
    return pytest.TestReport(
        nodeid=nodeid, location=("x", 0, "x"), keywords={}, outcome=outcome, longrepr=longrepr, when=when
    )


def fake_call(exc: BaseException | None = None) -> Any:
    excinfo = None
    if exc is not None:
        try:
            raise exc
        except BaseException:
            excinfo = pytest.ExceptionInfo.from_current()
    return SimpleNamespace(excinfo=excinfo)


def write_task(tasks: Path, iid: str, text: str) -> Path:
    """A task directory in the programbench layout holding only ``task.yaml``."""
    (tasks / iid).mkdir(parents=True, exist_ok=True)
    (tasks / iid / "task.yaml").write_text(text)
    return tasks / iid
