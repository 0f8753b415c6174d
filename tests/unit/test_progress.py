"""progress.Overall: the controller's progress line counts the tally's items, and only those."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pytest_programbench import progress, results

from .support import fake_report, instance

NODES = [f"programbench::instance[org__tool{k}.abc1234]" for k in range(3)]
OTHER = "tests/test_other.py::test_kept"


def overall() -> tuple[progress.Overall, results.Tally]:
    tally = results.Tally(None, instances={n: instance(n[23:-1]) for n in NODES})
    config: Any = SimpleNamespace(pluginmanager=SimpleNamespace(getplugin=lambda name: None))
    return progress.Overall(config, tally), tally


def test_the_total_is_what_the_tally_expects_and_other_tests_do_not_count() -> None:
    line, tally = overall()
    tally.pytest_xdist_node_collection_finished(None, [*NODES, OTHER])  # what a worker selected
    for nodeid in (NODES[0], OTHER):
        line.pytest_runtest_logstart(nodeid, None)
    assert line.line() == "0/3 done, 1 running, 2 left | 0 resolved"
    for nodeid in (NODES[0], OTHER):
        line.pytest_runtest_logreport(fake_report(when="teardown", nodeid=nodeid))
    assert line.line().startswith("1/3 done, 0 running, 2 left | 0 resolved | ETA ")
