"""Shared fixtures of the test suite: a real Docker engine and the images CI builds."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pytest_programbench.containers import Engine

#: Built by images/base/build-offline.sh (CI) or from debian:bookworm-slim.
BASE_IMAGE = os.environ.get("PB_TEST_BASE_IMAGE", "pytest-programbench/base:bookworm")


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The real engine. Its absence is an error, not a skip: CI always has one."""
    with Engine() as eng:
        yield eng


@pytest.fixture(scope="session")
def base_image(engine: Engine) -> str:
    engine.require_image(BASE_IMAGE, "Build it with images/base/build-offline.sh (what .ci/run does)")
    return BASE_IMAGE
