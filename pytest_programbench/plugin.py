"""pytest-programbench: the ProgramBench benchmark as a pytest session.

This module is the table of contents. A session runs the pipeline in this order,
each step in the module named for it:

1. settings  -- ``--pb-*`` options and ini twins, resolved once (settings.py)
2. select    -- read task definitions, apply the selection (tasks.py)
3. collect   -- one parametrized item per instance (items.py)

Without a ``--pb-*`` selection (or its ini twin) the plugin is inert: it adds no
items, imports nothing heavy and never talks to Docker.
"""

from __future__ import annotations

import pytest

from pytest_programbench import settings as _settings
from pytest_programbench.keys import SELECTION_KEY, SETTINGS_KEY


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    settings = _settings.resolve(config)
    config.stash[SETTINGS_KEY] = settings
    if not settings.active:
        return
    from pytest_programbench import tasks

    config.stash[SELECTION_KEY] = tasks.select(settings)
    from pytest_programbench import fixtures

    config.pluginmanager.register(fixtures, "programbench-fixtures")
    config.addinivalue_line(
        "markers",
        "programbench(language, difficulty): a ProgramBench instance (added by pytest-programbench)",
    )
    for name in (*_settings.LANGUAGES, *_settings.DIFFICULTIES):
        config.addinivalue_line("markers", f"{name}: ProgramBench instances that are {name}")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not config.stash[SETTINGS_KEY].active:
        return None
    from pytest_programbench.reporting import header_lines

    return header_lines(config.stash[SETTINGS_KEY], config.stash[SELECTION_KEY])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # tryfirst: our items must exist before -k/-m deselection and --lf filtering run.
    if not config.stash[SETTINGS_KEY].active or not config.stash[SELECTION_KEY].instances:
        return
    from pytest_programbench.items import make_collector

    items.extend(session.genitems(make_collector(session)))
