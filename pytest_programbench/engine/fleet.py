"""Provision on a fleet: which Docker engine each item runs on, and its share of that engine.

``--pb-docker-host URL[=SLOTS]`` (repeatable; ini ``pb_docker_hosts``, one per line) names
the engines. An xdist worker is bound to one engine for its whole life, workers spread
over the engines in proportion to their slots; without ``-n`` the items go round the
engines in the same order. Everything an item does (image, sandbox, the evaluator's own
``docker`` CLI calls) happens on that engine. Nothing here schedules: the assignment is a
pure function of the worker's number, so every process computes the same answer alone.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_programbench.engine.prefetch import Prefetch, next_holder
from pytest_programbench.errors import EngineUnavailable

if TYPE_CHECKING:
    from pytest_programbench.engine.containers import Engine
    from pytest_programbench.engine.imagebudget import Ledger

SCHEMES = ("unix", "tcp", "ssh")
HOSTS_FLAG = "--pb-docker-host"
HOSTS_INI = "pb_docker_hosts"
#: How long an item waits for its engine's answer before calling it unavailable.
ALIVE_TIMEOUT_SECONDS = 15
CPU_RULE = (
    "each scoring container gets its share of its engine's cores: cores // (workers on that engine "
    "x branch workers), at least 1 and at most --pb-cpus (default the official 10)"
)


@dataclass(frozen=True)
class EngineSpec:
    """One engine of the fleet: its Docker URL and how many workers it takes."""

    url: str
    slots: int = 1
    explicit: bool = True  # named by the user (an unreachable one is then a usage error)

    def describe(self) -> str:
        return f"{self.url}={self.slots}"


@dataclass(frozen=True)
class FleetSettings:
    """The engines of the session, in the order the user gave them."""

    engines: tuple[EngineSpec, ...] = field(default_factory=tuple)
    image_budget: int | None = None  # bytes of pulled task images per engine; None: no budget

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(e.url for e in self.engines)

    def order(self) -> list[int]:
        """Engine indices, one per slot, interleaved (smooth weighted round robin)."""
        weights = [e.slots for e in self.engines]
        current = [0] * len(weights)
        out = []
        for _ in range(sum(weights)):
            current = [c + w for c, w in zip(current, weights, strict=True)]
            best = max(range(len(current)), key=lambda i: current[i])
            current[best] -= sum(weights)
            out.append(best)
        return out

    def for_worker(self, number: int) -> EngineSpec:
        """The engine of xdist worker ``gw<number>`` (or of the ``number``-th item without -n)."""
        order = self.order()
        return self.engines[order[number % len(order)]]

    def workers_on(self, url: str, n_workers: int) -> int:
        """How many of ``n_workers`` workers (1 without -n) run on ``url``."""
        return sum(1 for i in range(max(1, n_workers)) if self.for_worker(i).url == url)


FLEET_KEY = pytest.StashKey[FleetSettings]()
#: On an item: the URL of the engine it ran on.
ENGINE_KEY = pytest.StashKey[str]()
#: On an item: more facts for its report row (bytes pulled and evicted for it).
ROW_KEY = pytest.StashKey[dict[str, Any]]()
#: Controller: what the engines said at start, for the header.
FACTS_KEY = pytest.StashKey[list["EngineFacts"]]()


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("programbench")
    group.addoption(
        HOSTS_FLAG,
        action="append",
        dest="pb_docker_host",
        metavar="URL[=SLOTS]",
        help="A Docker engine to run on: unix:///path, tcp://host:port (TLS from DOCKER_TLS_VERIFY and "
        "DOCKER_CERT_PATH, as the docker CLI reads them) or ssh://user@host; repeatable. SLOTS (default 1) "
        "weighs how many xdist workers it gets; each worker stays on one engine, and without -n items go "
        f"round the engines. Default: DOCKER_HOST or the local socket. CPU rule: {CPU_RULE}",
    )
    group.addoption(
        "--pb-image-budget",
        dest="pb_image_budget",
        metavar="SIZE",
        help="Disk for task images this session pulls, per engine (e.g. 50g): before a pull, the least "
        "recently used ones it pulled are removed until the new one fits, never one a container uses or an "
        "item needs; 0 removes each when its item ends. Default: no budget",
    )
    parser.addini("pb_image_budget", "Disk for pulled task images per engine (see --pb-image-budget)")
    parser.addini(
        HOSTS_INI, "Docker engines, one URL[=SLOTS] per line (see --pb-docker-host)", type="linelist"
    )


def parse_engine(text: str, where: str) -> EngineSpec:
    """``URL[=SLOTS]`` as an EngineSpec; a pytest.UsageError naming ``where`` when it is not one."""
    value = text.strip()
    url, slots = value, 1
    head, sep, tail = value.rpartition("=")
    if sep and re.fullmatch(r"\d+", tail):
        url, slots = head, int(tail)
        if slots < 1:
            raise _usage(where, text, "SLOTS must be a whole number >= 1, e.g. ssh://build2=8")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES or not rest.strip("/"):
        raise _usage(
            where,
            text,
            "expected unix:///path/docker.sock, tcp://host:2376 or ssh://user@host, optionally =SLOTS",
        )
    return EngineSpec(url=url, slots=slots)


def _usage(where: str, value: object, expected: str) -> pytest.UsageError:
    return pytest.UsageError(f"programbench: {where}={value!r} is not valid; {expected}")


def resolve(config: pytest.Config) -> FleetSettings:
    """The session's engines and image budget (command line, else ini, else the defaults)."""
    from dataclasses import replace

    return replace(_engines(config), image_budget=_image_budget(config))


def _image_budget(config: pytest.Config) -> int | None:
    from pytest_programbench.selection.settings import parse_bytes

    value, where = config.getoption("pb_image_budget"), "--pb-image-budget"
    if value is None:
        value, where = config.getini("pb_image_budget") or None, "ini option pb_image_budget"
    if value is None:
        return None
    if re.fullmatch(r"\s*0+\s*[bkmgt]?i?b?\s*", str(value).lower()):
        return 0
    return parse_bytes(value, where)


def _engines(config: pytest.Config) -> FleetSettings:
    """The command line's engines, else the ini file's, else DOCKER_HOST or the local socket."""
    cli: Sequence[str] | None = config.getoption("pb_docker_host")
    ini: Sequence[str] = config.getini(HOSTS_INI) or []
    if cli:
        specs = [parse_engine(v, HOSTS_FLAG) for v in cli]
    elif ini:
        specs = [parse_engine(v, f"ini option {HOSTS_INI}") for v in ini if v.strip()]
    else:
        from pytest_programbench.engine.containers import default_host

        return FleetSettings((EngineSpec(default_host(), 1, explicit=False),))
    seen: set[str] = set()
    for spec in specs:
        if spec.url in seen:
            where = HOSTS_FLAG if cli else f"ini option {HOSTS_INI}"
            raise _usage(where, spec.url, "each engine once; give it more slots instead (URL=SLOTS)")
        seen.add(spec.url)
    return FleetSettings(tuple(specs))


def worker_number(config: pytest.Config) -> int | None:
    """This xdist worker's number (``gw3`` -> 3); None outside xdist.

    From the worker's own input, not PYTEST_XDIST_WORKER: a session started from inside
    a worker (a test of this plugin) inherits that variable without being a worker.
    """
    workerinput = getattr(config, "workerinput", None)
    name = str(workerinput.get("workerid", "")) if workerinput else ""
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else None


def worker_count(config: pytest.Config) -> int:
    workerinput = getattr(config, "workerinput", None)
    return int(workerinput.get("workercount", 1)) if workerinput else 1


def worker_name() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def scoring_cpus(cores: int, wanted: int, workers_on_engine: int, branch_workers: int) -> int:
    """CPUs for one scoring container: its share of the engine, 1..wanted (see CPU_RULE)."""
    share = cores // max(1, workers_on_engine * branch_workers)
    return max(1, min(wanted, share))


@dataclass(frozen=True)
class EngineFacts:
    """What the header says about an engine."""

    url: str
    slots: int
    cores: int
    free_bytes: int | None  # None: not measurable from here (a remote engine)
    version: str
    ignores_limits: bool = False  # rootless Podman on cgroup v1 (containers.Engine.ignores_limits)


def survey(fleet: FleetSettings) -> list[EngineFacts]:
    """Connect to every engine once; an unreachable one the user named is a usage error naming it."""
    from pytest_programbench.engine.containers import Engine

    facts = []
    for spec in fleet.engines:
        if not spec.explicit:
            continue  # the default engine: items say so one by one when it does not answer
        try:
            with Engine(spec.url, timeout=ALIVE_TIMEOUT_SECONDS) as engine:
                version = ("Podman " if engine.is_podman() else "") + engine.version()
                facts.append(
                    EngineFacts(
                        spec.url,
                        spec.slots,
                        engine.cpu_count(),
                        free_disk(engine),
                        version,
                        ignores_limits=engine.ignores_limits(),
                    )
                )
        except EngineUnavailable as exc:
            raise pytest.UsageError(
                f"programbench: {HOSTS_FLAG} {spec.url}: {exc.message}. Start that engine or leave it out"
            ) from None
    return facts


def free_disk(engine: Engine) -> int | None:
    """Free bytes where the engine keeps its images, when that directory is on this machine.

    A unix socket is always a local engine, so its DockerRootDir can be measured directly;
    over tcp:// or ssh:// the API offers no free-space figure.
    """
    if not engine.host.startswith("unix://"):
        return None
    root = engine.info().get("DockerRootDir") or ""
    try:
        return shutil.disk_usage(root).free if root else None
    except OSError:
        return None


def header_lines(fleet: FleetSettings, facts: list[EngineFacts], n_workers: int) -> list[str]:
    if len(fleet.engines) == 1 and not fleet.engines[0].explicit:
        return []
    lines = [f"programbench: {len(fleet.engines)} Docker engine(s); {CPU_RULE}"]
    for fact in facts:
        free = "free disk unknown" if fact.free_bytes is None else f"{fact.free_bytes / 2**30:.1f} GiB free"
        workers = fleet.workers_on(fact.url, n_workers)
        lines.append(
            f"programbench:   {fact.url}: {fact.slots} slot(s), {workers} worker(s), {fact.cores} cores, "
            f"{free}, engine {fact.version}"
        )
        if fact.ignores_limits:
            lines.append(
                f"programbench:   {fact.url}: rootless Podman on cgroup v1 ignores every CPU, memory and "
                "pids limit: --pb-cpus, --pb-memory and --pb-scoring-memory do nothing there, a fork bomb "
                "is not contained, and time-sensitive hidden tests run unthrottled (use cgroup v2, or root)"
            )
    return lines


class Fleet:
    """A worker's connections to the engines, opened when first used and kept for the session."""

    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings
        self._engines: dict[str, Engine] = {}
        self._ledgers: dict[str, Ledger] = {}
        self._prefetch: Prefetch | None = None

    def spec_for(self, item: pytest.Item) -> EngineSpec:
        number = worker_number(item.config)
        if number is None:  # no -n: the items take turns
            items = item.session.items
            number = items.index(item) if item in items else 0
        return self.settings.for_worker(number)

    def engine(self, url: str) -> Engine:
        """The open engine at ``url``, checked to answer now (EngineUnavailable, quickly, if not)."""
        from pytest_programbench.engine.containers import Engine

        engine = self._engines.get(url)
        if engine is None:
            engine = self._engines[url] = Engine(url)
        else:
            engine.alive(ALIVE_TIMEOUT_SECONDS)
        return engine

    def ledger(self, engine: Engine, shared_dir: Path) -> Ledger:
        """The image budget ledger of ``engine`` (kept even without a budget: it counts pulled bytes)."""
        from pytest_programbench.engine.imagebudget import Ledger

        if engine.host not in self._ledgers:
            self._ledgers[engine.host] = Ledger(engine, self.settings.image_budget, shared_dir)
        return self._ledgers[engine.host]

    @staticmethod
    def note(item: pytest.Item, facts: dict[str, Any]) -> None:
        """Facts about where and how an item ran, for its report row (see results.record)."""
        item.stash.setdefault(ROW_KEY, {}).update(facts)

    def prefetch(self, policy: str, shared_dir: Path) -> Prefetch:
        """This process's background puller (pytest_programbench.engine.prefetch)."""
        if self._prefetch is None:
            self._prefetch = Prefetch(
                self.settings.image_budget, policy, shared_dir, next_holder(worker_name())
            )
        return self._prefetch

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.wait()
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def cli_changes(url: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """What a ``docker`` CLI's environment needs set and unset to talk to ``url`` (and no other engine).

    DOCKER_HOST names the engine; a context would override nothing but confuse, so it goes;
    TLS settings stay only for tcp://, where the CLI reads them.
    """
    unset = (
        ("DOCKER_CONTEXT",)
        if url.startswith("tcp://")
        else ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
    )
    return {"DOCKER_HOST": url}, unset


def cli_env(url: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a ``docker`` CLI needs to talk to ``url``: ``environ`` (default ours) changed so."""
    wanted, unset = cli_changes(url)
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in unset}
    return {**env, **wanted}


_wrappers: dict[tuple[str, str], str] = {}
_wrappers_lock = threading.Lock()


def evaluator_cli(url: str, *, podman: bool = False) -> str:
    """The executable the official evaluator runs, as its ``docker``, to reach the engine at ``url``.

    programbench runs ``<executable> run/exec/cp/commit/rmi ...`` as subprocesses that
    inherit this process's environment, and threads (prefetch, watchdogs, other branch
    workers) share that environment; so rather than change it, each engine gets a small
    wrapper that execs the real CLI with the engine's settings, written once per process.
    When nothing needs changing (one engine, named by our own environment) the official
    executable is returned as it is, and scoring runs exactly as ``programbench eval`` does.

    A Podman engine is driven by the ``podman`` CLI (``--url``) when it is installed:
    Podman's Docker-compatible API refuses ``docker commit`` from a current docker CLI
    (podman 4.3: "Decode(): EOF"), while its own remote client does everything the
    evaluator asks. ``PROGRAMBENCH_DOCKER_EXECUTABLE`` (programbench's own override) is
    honoured; if it names podman, every engine is reached with ``--url``.
    """
    from programbench.constants import DOCKER_EXECUTABLE

    cli = DOCKER_EXECUTABLE
    if podman and Path(cli).name != "podman" and shutil.which("podman"):
        cli = "podman"
    if Path(cli).name != "podman" and cli_env(url) == dict(os.environ):
        return cli
    with _wrappers_lock:
        key = (url, cli)
        if key not in _wrappers:
            _wrappers[key] = _write_wrapper(url, cli)
        return _wrappers[key]


def _write_wrapper(url: str, cli: str) -> str:
    import atexit
    import shlex
    import stat
    import tempfile

    real = shutil.which(cli) or cli
    if Path(cli).name == "podman":
        body = f'exec {shlex.quote(real)} --url {shlex.quote(url)} "$@"\n'
    else:
        wanted, unset = cli_changes(url)
        body = f"unset {' '.join(unset)}\n"
        body += "".join(f"{k}={shlex.quote(v)}; export {k}\n" for k, v in wanted.items())
        body += f'exec {shlex.quote(real)} "$@"\n'
    folder = tempfile.mkdtemp(prefix="pytest-programbench-cli-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / Path(cli).name
    path.write_text(
        f"#!/bin/sh\n# pytest-programbench: the evaluator's {Path(cli).name} CLI, reaching {url}\n{body}"
    )
    path.chmod(stat.S_IRWXU)
    return str(path)


def per_engine_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per engine: its items and how they ended (only when items ran on several)."""
    by_engine: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("engine"):
            by_engine.setdefault(row["engine"], []).append(row)
    if len(by_engine) < 2:
        return []
    out = []
    for url, mine in sorted(by_engine.items()):
        errors = sum(1 for r in mine if r.get("outcome") == "error")
        mean = sum(float(r.get("score") or 0.0) for r in mine) / len(mine)
        names = sorted(
            f"{r['instance_id']}" + (f"#{r['attempt']}" if r.get("attempt", 1) > 1 else "") for r in mine
        )
        out.append(
            f"engine {url}: {len(mine)} item(s), mean score {mean:.3f}, {errors} error(s): {', '.join(names)}"
        )
    return out


class FleetSummary:
    """Controller-only: what each engine's disk budget saw, after the ProgramBench summary."""

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        from pytest_programbench.engine.imagebudget import totals
        from pytest_programbench.keys import SHARED_DIR_NAME

        factory = getattr(config, "_tmp_path_factory", None)
        if factory is None:
            return
        for url, seen in totals(factory.getbasetemp() / SHARED_DIR_NAME).items():  # pb_shared_dir
            if seen["pulled_bytes"] or seen["evicted_bytes"]:
                terminalreporter.write_line(
                    f"programbench: task images on {url}: pulled {_gib(seen['pulled_bytes'])}, "
                    f"evicted {_gib(seen['evicted_bytes'])}, "
                    f"at most {_gib(seen['peak_bytes'])} of pulled images at once"
                )


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"
