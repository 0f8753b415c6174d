"""The names a conftest.py imports from the package's top, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pytest_programbench


@pytest.mark.parametrize("name", pytest_programbench.__all__)
def test_each_public_name_resolves(name: str) -> None:
    assert getattr(pytest_programbench, name) is not None
    assert name in dir(pytest_programbench)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        pytest_programbench.nonesuch  # noqa: B018


def test_importing_the_package_loads_neither_docker_nor_the_evaluator() -> None:
    code = (
        "import sys, pytest_programbench\n"
        "from pytest_programbench import Instance, Outcome\n"
        "print(sorted(m for m in ('docker', 'programbench') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_stage_of_a_name_is_where_it_is_defined() -> None:
    from pytest_programbench.engine.containers import Engine
    from pytest_programbench.scoring.evaluator import score_submission

    assert pytest_programbench.Engine is Engine
    assert pytest_programbench.score_submission is score_submission
