"""pytest-programbench: the ProgramBench benchmark run as a pytest session.

The names a ``conftest.py`` uses are here, loaded on first use: ``import pytest_programbench``
imports nothing heavy (no Docker client, no evaluator), so pytest's start-up stays quick. The
stages live in the subpackages: ``selection``, ``engine``, ``agents``, ``scoring``, ``reporting``
(docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it ("" after the colon: the module itself)
_PUBLIC = {
    "Instance": "pytest_programbench.model",
    "AgentRun": "pytest_programbench.model",
    "Submission": "pytest_programbench.model",
    "Outcome": "pytest_programbench.model",
    "Agent": "pytest_programbench.agents.agent",
    "CommandAgent": "pytest_programbench.agents.agent",
    "Sandbox": "pytest_programbench.agents.sandbox",
    "Limits": "pytest_programbench.agents.sandbox",
    "open_sandbox": "pytest_programbench.agents.sandbox",
    "Engine": "pytest_programbench.engine.containers",
    "LABEL_RUN": "pytest_programbench.engine.containers",
    "LABEL_OWNER": "pytest_programbench.engine.containers",
    "session_owner": "pytest_programbench.engine.containers",
    "ScoreRequest": "pytest_programbench.scoring.verdict",
    "score_submission": "pytest_programbench.scoring.evaluator",
    "Audit": "pytest_programbench.scoring.integrity",
    "load_tests": "pytest_programbench.selection.tasks",
    "RUN_DIR_KEY": "pytest_programbench.keys",
    "errors": "",
    "selftest": "",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    where = _PUBLIC.get(name)
    if where is None:
        raise AttributeError(f"module 'pytest_programbench' has no attribute {name!r}")
    value = (
        importlib.import_module(f"pytest_programbench.{name}")
        if where == ""
        else getattr(importlib.import_module(where), name)
    )
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
