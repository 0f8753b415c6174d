"""pytest-programbench: the ProgramBench benchmark as a pytest session.

This module is the table of contents. A session runs the pipeline in this order,
each step in the module named for it:

1. settings  -- ``--pb-*`` options and ini twins, resolved once (selection/settings.py)
2. select    -- read task definitions, apply the selection (selection/tasks.py)
3. collect   -- one parametrized item per instance (selection/items.py)
4. provision -- the task image on the engine (engine/images.py, engine/containers.py)
5. submit    -- the submission: an agent (agents/agent.py, agents/mini_agent.py) works in a
                sandboxed task container (agents/sandbox.py) and its /workspace is packed
                (agents/packing.py), or an archive is replayed from a run (scoring/submissions.py)
6. score     -- hidden tests (scoring/hidden_tests.py), the official evaluator
                (scoring/evaluator.py), the audit beside it (scoring/integrity.py) and the
                verdict (scoring/verdict.py)
7. report    -- verdicts on test reports (reporting/results.py), the terminal section and
                JSON (reporting/summary.py), the controller's files (reporting/outputs.py)

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

from pytest_programbench.keys import RUN_DIR_KEY, RUN_ID_KEY, SELECTION_KEY, SETTINGS_KEY
from pytest_programbench.selection import settings as _settings


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_programbench import newhooks

    pluginmanager.add_hookspecs(newhooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    from pytest_programbench.engine import fleet
    from pytest_programbench.reporting import outputs

    _settings.add_options(parser)
    _settings.add_options(parser, outputs.OPTIONS)
    fleet.add_options(parser)


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not config.getoption("pb_cleanup"):
        return None
    from pytest_programbench.engine import fleet
    from pytest_programbench.engine.containers import Engine
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
    settings = _settings.resolve(config, _take_node_ids(config))
    config.stash[SETTINGS_KEY] = settings
    if not settings.active:
        return
    _stop_on_sigterm()
    from pytest_programbench.errors import SelectionInvalid
    from pytest_programbench.selection import tasks

    try:
        config.stash[SELECTION_KEY] = tasks.select(settings)
    except SelectionInvalid as exc:
        raise pytest.UsageError(f"programbench: {exc}") from None
    from pytest_programbench.engine import fleet

    config.stash[fleet.FLEET_KEY] = fleet.resolve(config)
    from pytest_programbench import fixtures

    config.pluginmanager.register(fixtures, "programbench-fixtures")
    workerinput = getattr(config, "workerinput", None)
    run_id = workerinput["pb_run_id"] if workerinput else _new_run_id()
    config.stash[RUN_ID_KEY] = run_id
    config.stash[RUN_DIR_KEY] = (
        Path(settings.output_dir) if settings.output_dir else _settings.home(config) / "runs" / run_id
    )
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(), "programbench-xdist")
    from pytest_programbench.engine.prefetch import NextItem

    config.pluginmanager.register(NextItem(), "programbench-next-item")
    if workerinput is None:
        if not config.option.collectonly:
            config.stash[fleet.FACTS_KEY] = fleet.survey(config.stash[fleet.FLEET_KEY])
            config.pluginmanager.register(fleet.FleetSummary(), "programbench-fleet-summary")
            from pytest_programbench.engine.runlock import check_writable

            where = "--pb-output" if settings.output_dir else "generated under .programbench/runs"
            check_writable(config.stash[RUN_DIR_KEY], where)
        if settings.output_dir and not config.option.collectonly:
            # A generated run directory is new by construction; a named one may be shared.
            from pytest_programbench.engine.runlock import RunDirLock

            lock = RunDirLock(
                config.stash[RUN_DIR_KEY],
                run_id=run_id,
                keep=settings.keep,
                hosts=config.stash[fleet.FLEET_KEY].urls,
            )
            lock.acquire()
            config.pluginmanager.register(lock, "programbench-runlock")
        from pytest_programbench.reporting.results import Tally
        from pytest_programbench.selection.items import nodeid_of

        report = Path(settings.report_file) if settings.report_file else None
        tally = Tally(
            report,
            _report_meta(config),
            threshold=settings.threshold,
            integrity=settings.integrity,
            instances={nodeid_of(i): i for i in config.stash[SELECTION_KEY].instances},
            run_dir=config.stash[RUN_DIR_KEY],
        )
        _register_outputs(config, tally)
        config.pluginmanager.register(tally, "programbench-results")
        from pytest_programbench.scoring import gold

        gold.configure(config, tally)
        if config.get_verbosity() >= 0 and not config.option.collectonly:
            from pytest_programbench.reporting.progress import Overall

            config.pluginmanager.register(Overall(config, tally), "programbench-progress")
        from pytest_programbench.reporting import pytest_html_columns as html_report

        html_report.register(config, config.stash[RUN_DIR_KEY], tally.instances)
        if not settings.keep:  # replay starts scoring containers too
            config.pluginmanager.register(
                LeftoverSweep(run_id, config.stash[fleet.FLEET_KEY].urls), "programbench-sweep"
            )
    config.addinivalue_line(
        "markers",
        "programbench(language, difficulty): a ProgramBench instance (added by pytest-programbench)",
    )
    from pytest_programbench.model import DIFFICULTIES, LANGUAGES

    for name in (*LANGUAGES, *DIFFICULTIES):
        config.addinivalue_line("markers", f"{name}: ProgramBench instances that are {name}")


def _take_node_ids(config: pytest.Config) -> list[str]:
    """Take instance node ids (``programbench::instance[ID]``) out of the arguments pytest collects.

    pytest would look for a file named ``programbench``; the plugin selects those items
    instead. xdist workers get the original arguments and do the same.
    """
    taken = []
    for arg in list(config.args):
        param = _settings.parse_node_id(arg)
        if param is not None:
            taken.append(param)
            config.args.remove(arg)
    return taken


def _register_outputs(config: pytest.Config, collector: Any) -> None:
    """Hidden tests as JUnit, the comparison, HTML: registered before the collector (see outputs.py)."""
    from pytest_programbench.reporting import outputs

    wanted = outputs.resolve(config)
    if wanted == outputs.Outputs() or config.option.collectonly:
        return
    baseline = None
    if wanted.compare:
        from pytest_programbench.reporting import compare

        try:
            from pytest_programbench.scoring.gold import mask_of

            tasks_dir = Path(config.stash[SELECTION_KEY].tasks_dir)
            baseline = compare.load(Path(wanted.compare), tasks_dir, mask_of(config))
        except compare.BaselineInvalid as exc:
            raise pytest.UsageError(f"programbench: {exc}") from None
    config.pluginmanager.register(outputs.OutputsPlugin(wanted, collector, baseline), "programbench-outputs")


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


class LeftoverSweep:
    """Controller-only: at the end, remove what a killed xdist worker or a stop could not.

    That is agent and scoring containers, and the images the evaluator commits (they carry
    the scoring container's labels).

    A worker removes its sandbox when the item ends; one that dies mid-item (OOM, kill -9)
    leaves it running. Every worker is gone by the controller's sessionfinish, so anything
    still labelled with this run is a leftover.
    """

    def __init__(self, run_id: str, hosts: tuple[str, ...] = ()) -> None:
        self.run_id = run_id
        self.hosts: tuple[str | None, ...] = hosts or (None,)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if session.testscollected == 0:
            return
        from pytest_programbench.engine.containers import LABEL_RUN, Engine

        reporter = session.config.pluginmanager.getplugin("terminalreporter")
        removed = 0
        for host in self.hosts:  # every engine of the fleet
            try:
                with Engine(host) as engine:
                    removed += engine.sweep({LABEL_RUN: self.run_id})
            except Exception as exc:  # the summary matters more than the sweep; --pb-cleanup can finish it
                if reporter is not None:
                    reporter.write_line(
                        f"programbench: sweeping this run's containers on {host or 'the engine'} failed "
                        f"({exc}); `pytest --pb-cleanup` removes leftovers"
                    )
        if removed and reporter is not None:
            reporter.write_line(
                f"programbench: removed {removed} container(s) and image(s) a crashed worker "
                "or an interruption left behind"
            )


class XdistHooks:
    """Registered only when xdist is loaded: the controller decides the run id for all workers."""

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["pb_run_id"] = node.config.stash[RUN_ID_KEY]


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not config.stash[SETTINGS_KEY].active:
        return None
    from pytest_programbench.engine import fleet
    from pytest_programbench.reporting.summary import header_lines

    run_dir = config.stash[RUN_DIR_KEY]
    workers = getattr(config.option, "numprocesses", None)
    facts = config.stash.get(fleet.FACTS_KEY, [])
    return [
        *header_lines(config.stash[SETTINGS_KEY], config.stash[SELECTION_KEY]),
        *fleet.header_lines(config.stash[fleet.FLEET_KEY], facts, int(workers or 1)),
        f"programbench: run directory {run_dir} (follow it: tail -f {run_dir / 'progress.log'})",
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Find the session's own problems once, before any container starts (controller only)."""
    config = session.config
    settings = config.stash[SETTINGS_KEY]
    if not settings.active or hasattr(config, "workerinput") or config.option.collectonly:
        return
    if not config.stash[SELECTION_KEY].instances:
        return
    from pytest_programbench.engine import fleet, preflight

    # Engines named with --pb-docker-host were reached in pytest_configure (fleet.survey).
    unchecked = tuple(spec.url for spec in config.stash[fleet.FLEET_KEY].engines if not spec.explicit)
    preflight.run(config, settings, unchecked)
    if not settings.output_dir:
        _point_latest_at(config.stash[RUN_DIR_KEY])


def _point_latest_at(run_dir: Path) -> None:
    """``.programbench/runs/latest`` -> the newest generated run directory (replaced atomically)."""
    import contextlib
    import os

    with contextlib.suppress(OSError):  # a convenience: never a reason to fail a run
        run_dir.mkdir(parents=True, exist_ok=True)
        temporary = run_dir.parent / f".latest-{os.getpid()}"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(run_dir.name)
        temporary.replace(run_dir.parent / "latest")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # tryfirst: our items must exist before -k/-m deselection and --lf filtering run.
    settings = config.stash[SETTINGS_KEY]
    if not settings.active:
        return
    from pytest_programbench.selection.items import make_collector, select_items

    ours = list(session.genitems(make_collector(session))) if config.stash[SELECTION_KEY].instances else []
    kept, dropped = select_items(items, ours, settings)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


@pytest.hookimpl(trylast=True)
def pytest_programbench_agent(config: pytest.Config, instance: Any) -> Any:
    # trylast: --pb-agent is the last answer (which agent wins: agents.py's docstring).
    from pytest_programbench.agents.agent import from_settings

    return from_settings(config.stash[SETTINGS_KEY], config.stash[RUN_DIR_KEY] / instance.rel_dir)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Any:
    """A write into the run directory that failed mid-item (it turned read-only, the disk filled)
    is that, named with the path, not a bare OSError from whichever step wrote."""
    try:
        return (yield)
    except OSError as exc:
        if request.config.stash[SETTINGS_KEY].active and RUN_DIR_KEY in request.config.stash:
            from pytest_programbench.engine.runlock import unwritable

            converted = unwritable(exc, request.config.stash[RUN_DIR_KEY])
            if converted is not None:
                raise converted from exc
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if item.config.stash[SETTINGS_KEY].active:
        from pytest_programbench.reporting.results import record

        record(item, report, call)
        _shorten_harness_error(item, report, call)
    return report


def _shorten_harness_error(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    """A harness error shows its cause and remedy, not ~60 lines of fixture source (``--tb=long`` does)."""
    from pytest_programbench.errors import ProgramBenchError

    if not report.failed or call.excinfo is None or item.config.option.tbstyle in ("long", "native"):
        return
    if call.excinfo.errisinstance(ProgramBenchError):
        from pytest_programbench.text import printable_repr

        # "value": the exception's text alone, as pytest shows pytest.fail(..., pytrace=False).
        report.longrepr = printable_repr(call.excinfo.getrepr(style="value"))


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    if not config.stash[SETTINGS_KEY].active:
        return None
    from pytest_programbench.reporting.results import teststatus

    return teststatus(report)
