"""pytest-programbench: the ProgramBench benchmark as a pytest session.

This module is the table of contents. A session runs the pipeline in this order,
each step in the module named for it:

1. settings  -- ``--pb-*`` options and ini twins, resolved once (settings.py)
2. select    -- read task definitions, apply the selection (tasks.py)
3. collect   -- one parametrized item per instance (items.py)
4. provision -- the task image on the engine (images.py, containers.py)
5. submit    -- the submission: an agent (agents.py, mini_agent.py) works in a sandboxed
                task container (sandbox.py) and its /workspace is packed, or an archive
                is replayed from a run (submissions.py)
6. score     -- hidden tests (hidden_tests.py) and the official evaluator (scoring.py)
7. report    -- verdicts on test reports (results.py), header and JSON (reporting.py)

The item's fixtures (fixtures.py) chain steps 4-6; each is overridable in conftest.py.
Our hook specs (newhooks.py) let conftest.py pick the agent per instance.

Without a ``--pb-*`` selection (or its ini twin) the plugin is inert: it adds no
items, imports nothing heavy and never talks to Docker.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from pytest_programbench import settings as _settings
from pytest_programbench.keys import RUN_DIR_KEY, RUN_ID_KEY, SELECTION_KEY, SETTINGS_KEY


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_programbench import newhooks

    pluginmanager.add_hookspecs(newhooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    from pytest_programbench import fleet

    _settings.add_options(parser)
    fleet.add_options(parser)


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not config.getoption("pb_cleanup"):
        return None
    from pytest_programbench import fleet
    from pytest_programbench.containers import Engine
    from pytest_programbench.errors import EngineUnavailable

    status = 0
    for url in fleet.resolve(config).urls:
        try:
            engine = Engine(url)
        except EngineUnavailable as exc:
            print(f"programbench: {exc}")
            status = 1
            continue
        with engine:
            removed, kept = engine.sweep_orphans()
        print(f"programbench: removed {removed} leftover container(s) and image(s) from {engine.host}")
        if kept:
            print(f"programbench: left what may still be in use: {'; '.join(kept)}")
    return status


def pytest_configure(config: pytest.Config) -> None:
    settings = _settings.resolve(config)
    config.stash[SETTINGS_KEY] = settings
    if not settings.active:
        return
    _stop_on_sigterm()
    from pytest_programbench import tasks

    config.stash[SELECTION_KEY] = tasks.select(settings)
    from pytest_programbench import fleet

    config.stash[fleet.FLEET_KEY] = fleet.resolve(config)
    from pytest_programbench import fixtures

    config.pluginmanager.register(fixtures, "programbench-fixtures")
    workerinput = getattr(config, "workerinput", None)
    run_id = workerinput["pb_run_id"] if workerinput else _new_run_id()
    config.stash[RUN_ID_KEY] = run_id
    config.stash[RUN_DIR_KEY] = (
        Path(settings.output_dir)
        if settings.output_dir
        else config.rootpath / ".programbench" / "runs" / run_id
    )
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(), "programbench-xdist")
    from pytest_programbench.prefetch import NextItem

    config.pluginmanager.register(NextItem(), "programbench-next-item")
    if workerinput is None:
        if not config.option.collectonly:
            config.stash[fleet.FACTS_KEY] = fleet.survey(config.stash[fleet.FLEET_KEY])
            config.pluginmanager.register(fleet.FleetSummary(), "programbench-fleet-summary")
        if settings.output_dir and not config.option.collectonly:
            # A generated run directory is new by construction; a named one may be shared.
            from pytest_programbench.runlock import RunDirLock

            lock = RunDirLock(config.stash[RUN_DIR_KEY])
            lock.acquire()
            config.pluginmanager.register(lock, "programbench-runlock")
        from pytest_programbench.items import nodeid_of
        from pytest_programbench.results import Collector

        report = Path(settings.report_file) if settings.report_file else None
        collector = Collector(
            report,
            _report_meta(config),
            threshold=settings.threshold,
            integrity=settings.integrity,
            instances={nodeid_of(i): i for i in config.stash[SELECTION_KEY].instances},
        )
        config.pluginmanager.register(collector, "programbench-results")
        if not settings.keep:  # replay starts scoring containers too
            from pytest_programbench.sandbox import LeftoverSweep

            config.pluginmanager.register(
                LeftoverSweep(run_id, config.stash[fleet.FLEET_KEY].urls), "programbench-sweep"
            )
    config.addinivalue_line(
        "markers",
        "programbench(language, difficulty): a ProgramBench instance (added by pytest-programbench)",
    )
    for name in (*_settings.LANGUAGES, *_settings.DIFFICULTIES):
        config.addinivalue_line("markers", f"{name}: ProgramBench instances that are {name}")


def _stop_on_sigterm() -> None:
    """Make SIGTERM stop the session as Ctrl-C does, so containers are removed on the way out.

    By default SIGTERM ends the process at once: no fixture teardown, no evaluator cleanup, and
    its containers and committed images stay on the engine. Left alone if someone set a handler.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt("SIGTERM")

        signal.signal(signal.SIGTERM, interrupt)


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _report_meta(config: pytest.Config) -> dict[str, Any]:

    settings = config.stash[SETTINGS_KEY]
    return {
        "run_id": config.stash[RUN_ID_KEY],
        "run_dir": str(config.stash[RUN_DIR_KEY]),
        "versions": _versions(settings.agent),
        "options": {k: v for k, v in asdict(settings).items() if k != "active"},
    }


def _versions(agent: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["pytest-programbench", "programbench", "pytest"]
    if agent == "mini-swe-agent":
        names.append("mini-swe-agent")
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


class XdistHooks:
    """Registered only when xdist is loaded: the controller decides the run id for all workers."""

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["pb_run_id"] = node.config.stash[RUN_ID_KEY]


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not config.stash[SETTINGS_KEY].active:
        return None
    from pytest_programbench import fleet
    from pytest_programbench.reporting import header_lines

    lines = header_lines(config.stash[SETTINGS_KEY], config.stash[SELECTION_KEY])
    workers = getattr(config.option, "numprocesses", None)
    facts = config.stash.get(fleet.FACTS_KEY, [])
    return lines + fleet.header_lines(config.stash[fleet.FLEET_KEY], facts, int(workers or 1))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # tryfirst: our items must exist before -k/-m deselection and --lf filtering run.
    if not config.stash[SETTINGS_KEY].active or not config.stash[SELECTION_KEY].instances:
        return
    from pytest_programbench.items import make_collector

    items.extend(session.genitems(make_collector(session)))


@pytest.hookimpl(trylast=True)
def pytest_programbench_agent(config: pytest.Config, instance: Any) -> Any:
    # Last in line: a conftest's hook (or an overridden pb_agent fixture) wins over --pb-agent.
    from pytest_programbench.agents import resolve

    return resolve(config.stash[SETTINGS_KEY], config.stash[RUN_DIR_KEY] / instance.rel_dir)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if item.config.stash[SETTINGS_KEY].active:
        from pytest_programbench.results import record

        record(item, report, call)
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    if not config.stash[SETTINGS_KEY].active:
        return None
    from pytest_programbench.results import teststatus

    return teststatus(report)
