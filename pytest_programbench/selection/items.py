"""Collect: turn the selection into parametrized pytest items.

All instances hang off one collector with node id ``programbench``; each item is the
function :func:`instance` parametrized with one :class:`Instance`, so node ids read
``programbench::instance[sharkdp__hexyl.5e8a3d6]`` and everything pytest does with
parametrized tests (``-k``, ``-m``, ``--lf``, xdist's same-list check) just works.

The collector's path is a virtual ``programbench`` in the directory pytest starts in:
pytest routes hooks to a node through the conftest files of its path's directories, so
that path is what lets the user's conftest.py hooks see these items.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from pytest_programbench.keys import SELECTION_KEY, SETTINGS_KEY

if TYPE_CHECKING:
    from pytest_programbench.model import Instance
    from pytest_programbench.selection.settings import Settings

COLLECTOR_NAME = "programbench"


class ProgramBenchCollector(pytest.Module):
    """The benchmark as a pseudo-module: no file is imported, instances are its items.

    Private pytest API, used here only: ``Module._getobj`` (the module object, here this
    one instead of an imported file) and ``Module._genfunctions``. Both exist unchanged
    from pytest 8.0 to 9.x; tox's ``*-pytestmin`` envs and tests/unit/test_private_apis.py
    catch a release that changes them.
    """

    def _getobj(self) -> ModuleType:
        return sys.modules[__name__]

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        # _genfunctions runs pytest_generate_tests (ours below, and any conftest's)
        # and builds the Function items exactly as for a test module.
        return list(self._genfunctions("instance", instance))


def nodeid_of(inst: Instance) -> str:
    """The node id pytest gives an instance's item (the collector's nodeid is fixed, see below)."""
    return f"{COLLECTOR_NAME}::{instance.__name__}[{inst.param_id}]"


def make_collector(session: pytest.Session) -> ProgramBenchCollector:
    # Where pytest was started, not the rootdir: a path option written with a space can move the
    # rootdir elsewhere, and then the conftest.py next to the user would not see these items.
    path = Path(session.config.invocation_params.dir) / COLLECTOR_NAME
    return ProgramBenchCollector.from_parent(session, path=path, name=COLLECTOR_NAME, nodeid=COLLECTOR_NAME)


def select_items(
    collected: list[pytest.Item], ours: list[pytest.Item], settings: Settings
) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """What a ProgramBench session runs, and what it deselects.

    Other tests pytest collected (a project's own tests) are deselected unless
    ``--pb-keep-other-tests``; with instance node ids as arguments, only those instances run.
    """
    dropped = [] if settings.keep_other_tests else list(collected)
    kept = list(collected) if settings.keep_other_tests else []
    wanted = {i for i in settings.node_ids if i}
    for item in ours:
        param = getattr(getattr(item, "callspec", None), "id", "")
        (kept if not wanted or param in wanted else dropped).append(item)
    return kept, dropped


def marks_for(inst: Instance) -> list[Any]:
    return [
        pytest.mark.programbench(language=inst.language, difficulty=inst.difficulty),
        getattr(pytest.mark, inst.language),
        getattr(pytest.mark, inst.difficulty),
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function is not instance:
        return
    selection = metafunc.config.stash[SELECTION_KEY]
    metafunc.parametrize(
        "pb_instance",
        [pytest.param(inst, id=inst.param_id, marks=marks_for(inst)) for inst in selection.instances],
    )


def instance(pb_instance: Instance, pb_outcome: Any, request: pytest.FixtureRequest) -> None:
    """One ProgramBench instance: passes when its hidden-test score reaches the threshold."""
    from pytest_programbench.scoring import detail
    from pytest_programbench.text import printable

    threshold = request.config.stash[SETTINGS_KEY].threshold
    hidden = detail.of_item(request, pb_instance)
    if pb_outcome.score < threshold:
        reason = pb_outcome.failure_reason(threshold) + detail.suffix(
            hidden, getattr(pb_outcome, "error_code", None)
        )
        pytest.fail(printable(reason), pytrace=False)
