"""progress.Overall: the controller's progress line counts the tally's items, and only those."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pytest_programbench.reporting import progress, results

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


def test_a_phase_naming_agent_data_stays_one_escaped_line(tmp_path: Any) -> None:
    shown: list[str] = []
    terminal = SimpleNamespace(ensure_newline=lambda: None, write_line=shown.append, flush=lambda: None)
    plugins = {"terminalreporter": terminal, "capturemanager": None}
    config: Any = SimpleNamespace(
        pluginmanager=SimpleNamespace(getplugin=plugins.get), get_verbosity=lambda: 1
    )
    item = progress.ItemProgress(config, "org__tool.abc1234", tmp_path, "gw0")
    item("left 1 special file(s) out of the submission: ./\x1b[2J\nfake line", milestone=True)
    [logged] = (tmp_path / progress.STATUS_LOG).read_text().splitlines()
    assert logged.endswith("left 1 special file(s) out of the submission: ./\\x1b[2J\\nfake line")
    [line] = shown
    assert "\x1b" not in line and "\n" not in line and line.endswith("./\\x1b[2J\\nfake line (+0s)")
