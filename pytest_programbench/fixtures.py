"""Fixtures: the steps of one item, each a fixture a conftest.py may override.

An item asks for ``pb_outcome``; that pulls in, in order, the task image, the
submission (replayed, or made by ``pb_agent`` in ``pb_sandbox``), the hidden tests
and the engine. Raising in any of them makes the item a
pytest *error* (harness trouble), never a silent zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_programbench.engine.containers import Engine, item_labels
from pytest_programbench.keys import RUN_DIR_KEY, RUN_ID_KEY, SETTINGS_KEY, SHARED_DIR_NAME
from pytest_programbench.model import AgentRun, Instance, Outcome, Submission
from pytest_programbench.scoring.submissions import ARCHIVE_NAME, submission_path
from pytest_programbench.selection.settings import Settings
from pytest_programbench.text import printable

if TYPE_CHECKING:
    from pytest_programbench.agents.sandbox import Sandbox
    from pytest_programbench.engine.fleet import Fleet
    from pytest_programbench.reporting.progress import ItemProgress


@pytest.fixture(scope="session")
def pb_settings(pytestconfig: pytest.Config) -> Settings:
    """The session's resolved ``--pb-*`` settings (read-only)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def pb_fleet(pytestconfig: pytest.Config) -> Iterator[Fleet]:
    """This process's connections to the session's engines (``--pb-docker-host``), opened on first use."""
    from pytest_programbench.engine.fleet import FLEET_KEY, Fleet

    with Fleet(pytestconfig.stash[FLEET_KEY]) as fleet:
        yield fleet


@pytest.fixture
def pb_engine(pb_fleet: Fleet, request: pytest.FixtureRequest) -> Engine:
    """The Docker engine this item runs on: its xdist worker's engine (without -n, the items
    take turns), else ``DOCKER_HOST`` or the local socket. Reports name it (``pb_engine``).

    Override in conftest.py to use another engine.
    """
    from pytest_programbench.engine.fleet import ENGINE_KEY

    spec = pb_fleet.spec_for(request.node)
    request.node.stash[ENGINE_KEY] = spec.url  # named in the report even when it does not answer
    return pb_fleet.engine(spec.url)


@pytest.fixture(scope="session")
def pb_run_dir(pytestconfig: pytest.Config) -> Path:
    """The run directory (``--pb-output``); ``<id>/submission.tar.gz`` and ``<id>.eval.json`` land here."""
    run_dir = pytestconfig.stash[RUN_DIR_KEY]
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


@pytest.fixture(scope="session")
def pb_shared_dir(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """A directory every xdist worker of this session shares (locks, markers, the image ledger)."""
    base = tmp_path_factory.getbasetemp()
    # A worker's basetemp is under the controller's. Asked of the config, not PYTEST_XDIST_WORKER:
    # a session started from inside a worker inherits that variable without being a worker.
    shared = base.parent if hasattr(pytestconfig, "workerinput") else base
    path = shared / SHARED_DIR_NAME
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def pb_cpus(pb_settings: Settings, pb_engine: Engine) -> int:
    """CPUs per scoring container: asked for (default the official value) and clamped to the engine.

    The official default (10, or PROGRAMBENCH_DOCKER_CPUS) makes Docker refuse the
    container outright on a smaller host, so it is always clamped.
    """
    from programbench.constants import DOCKER_CPUS

    available = pb_engine.cpu_count()
    wanted = pb_settings.cpus or DOCKER_CPUS
    return max(1, min(wanted, available))


@pytest.fixture
def pb_scoring_cpus(
    pb_settings: Settings, pb_engine: Engine, pb_cpus: int, pb_fleet: Fleet, pytestconfig: pytest.Config
) -> int:
    """CPUs per scoring container: its share of the engine, at least 1 and at most ``pb_cpus``.

    The engine's cores are shared by every scoring container that may run on it at once:
    one per xdist worker bound to it, times ``--pb-branch-workers``. Oversubscribed, the
    hidden tests' own timeouts would turn into lost points and a score would depend on -n.
    """
    from pytest_programbench.engine.fleet import scoring_cpus, worker_count, worker_number

    workers = 1
    if worker_number(pytestconfig) is not None:
        workers = pb_fleet.settings.workers_on(pb_engine.host, worker_count(pytestconfig))
    return scoring_cpus(pb_engine.cpu_count(), pb_cpus, workers, pb_settings.branch_workers)


@pytest.fixture
def pb_task(pb_instance: Instance) -> dict[str, Any]:
    """The instance's task.yaml and tests.json, merged as programbench loads them."""
    from pytest_programbench.selection.tasks import load_tests

    return load_tests(pb_instance)


@pytest.fixture
def pb_progress(pb_instance: Instance, pb_run_dir: Path, pytestconfig: pytest.Config) -> ItemProgress:
    """Phase reporter of this item: ``<run>/progress.log`` (``tail -f`` it) and stderr."""
    from pytest_programbench.engine.fleet import worker_name
    from pytest_programbench.reporting.progress import ItemProgress

    return ItemProgress(pytestconfig, pb_instance.param_id, pb_run_dir, worker_name())


@pytest.fixture
def pb_instance_dir(pb_instance: Instance, pb_run_dir: Path) -> Path:
    """This attempt's directory in the run: ``<run>/<id>`` (``<run>/attempt-<k>/<id>`` with attempts)."""
    from pytest_programbench.scoring.resume import check_layout

    path = pb_run_dir / pb_instance.rel_dir
    path.mkdir(parents=True, exist_ok=True)
    check_layout(path, pb_instance.instance_id)  # before anything runs for the item
    return path


@pytest.fixture
def pb_submission(
    pb_instance: Instance, pb_settings: Settings, pb_instance_dir: Path, request: pytest.FixtureRequest
) -> Submission:
    """The ``submission.tar.gz`` to score, in the instance's run directory, with the agent run that made it.

    Replay (``--pb-submissions DIR``) takes ``DIR/<id>/submission.tar.gz``; otherwise the
    agent runs in a sandbox and its packed ``/workspace`` is the submission (unless a
    previous session of this run directory already packed it and ``--pb-force-agent`` is
    not given). Override in conftest.py to produce the archive some other way: return its
    path (or a ``model.Submission`` to report an agent run with it).
    """
    from pytest_programbench.scoring import resume
    from pytest_programbench.scoring.submissions import find_submission, place_submission

    if pb_settings.submissions_dir:  # read to its end when it is scored (scoring.score_submission)
        source = find_submission(Path(pb_settings.submissions_dir), pb_instance.instance_id)
        return Submission(place_submission(source, pb_instance_dir))
    previous = None if pb_settings.force_agent else resume.finished_agent(pb_instance_dir)
    run: AgentRun = previous if previous is not None else request.getfixturevalue("pb_agent_run")
    return Submission(pb_instance_dir / ARCHIVE_NAME, run)


@pytest.fixture
def pb_agent(pb_instance: Instance, pytestconfig: pytest.Config) -> Any:
    """The agent for this instance, as the ``pytest_programbench_agent`` hook answers.

    Override in conftest.py to hand every instance your own agent (a callable
    ``(instance, sandbox)`` or an object with ``run(instance, sandbox)``); which answer
    wins is stated in agents.py.
    """
    from pytest_programbench.errors import NoAgent

    agent = pytestconfig.hook.pytest_programbench_agent(config=pytestconfig, instance=pb_instance)
    if agent is None:
        raise NoAgent()
    return agent


@pytest.fixture
def pb_sandbox(
    pb_instance: Instance,
    pb_image_id: str,
    pb_engine: Engine,
    pb_settings: Settings,
    pb_cpus: int,
    pytestconfig: pytest.Config,
) -> Iterator[Sandbox]:
    """The agent's container for this item: removed when the item ends unless ``--pb-keep``."""
    from pytest_programbench.agents.sandbox import Limits, open_sandbox
    from pytest_programbench.engine.fleet import worker_name

    limits = Limits(
        cpus=pb_cpus,
        memory=pb_settings.memory,
        network=pb_settings.network,
        disk=pb_settings.disk,
        reference=pb_settings.reference,
    )
    with open_sandbox(
        pb_engine,
        pb_image_id,
        run_id=pytestconfig.stash[RUN_ID_KEY],
        worker=worker_name(),
        instance_id=pb_instance.instance_id,
        limits=limits,
        keep=pb_settings.keep,
    ) as sandbox:
        yield sandbox


@pytest.fixture
def pb_agent_run(
    pb_instance: Instance,
    pb_agent: Any,
    pb_sandbox: Sandbox,
    pb_settings: Settings,
    pb_instance_dir: Path,
    pb_progress: ItemProgress,
) -> AgentRun:
    """Run the agent in the sandbox (at most ``--pb-agent-timeout``) and pack ``/workspace``.

    The workspace is packed to ``<id>/submission.tar.gz`` whether the agent finished,
    timed out, was stopped at the disk limit or raised; the last two then make the item
    an error.
    """
    import warnings

    from pytest_programbench.agents.agent import (
        agent_name,
        as_callable,
        error_name,
        run_agent,
        save_trajectory,
    )
    from pytest_programbench.agents.sandbox import SubmissionWarning
    from pytest_programbench.errors import AgentCrashed, ProgramBenchError

    agent = as_callable(pb_agent)
    pb_sandbox.progress = pb_progress
    pb_progress(f"agent {agent_name(agent)} started", milestone=True)
    run, error = run_agent(agent, pb_instance, pb_sandbox, timeout=pb_settings.agent_timeout)
    run = replace(run, reference=pb_sandbox.reference_access)
    ending = "timed out" if run.timed_out else f"crashed ({error_name(error)})" if error else "finished"
    if isinstance(error, ProgramBenchError):
        ending = f"stopped ({error.code})"
    pb_progress(f"agent {ending} after {run.seconds:.0f}s; packing /workspace", milestone=True)
    unsaved: OSError | None = None
    try:
        save_trajectory(pb_sandbox, pb_instance_dir / f"{pb_instance.instance_id}.traj.json")
    except OSError as exc:  # the run directory failed: packing keeps the container, then it is said
        unsaved = exc
    packed = pb_sandbox.pack(pb_instance_dir / ARCHIVE_NAME, max_bytes=pb_settings.max_submission)
    if unsaved is not None:
        raise unsaved
    if packed.skipped:
        # Names the agent chose: pytest prints a warning's text as it is.
        listed = printable(", ".join(packed.skipped[:10]) + (" ..." if len(packed.skipped) > 10 else ""))
        pb_progress(f"left {len(packed.skipped)} special file(s) out of the submission: {listed}")
        warnings.warn(
            SubmissionWarning(
                f"{pb_instance.instance_id}: {len(packed.skipped)} fifo(s)/device(s) in /workspace "
                f"cannot be submitted and were left out: {listed}"
            ),
            stacklevel=1,
        )
    if isinstance(error, ProgramBenchError):
        raise error
    if error is not None:
        detail = f"{error_name(error)}: {error}"
        saved = _save_traceback(pb_instance_dir, error)
        if saved is not None:
            detail += f" (its traceback: {saved})"
        raise AgentCrashed(pb_instance.instance_id, detail) from error
    from pytest_programbench.scoring.resume import mark_agent_done

    mark_agent_done(pb_instance_dir, run)
    return run


def _save_traceback(instance_dir: Path, error: BaseException) -> Path | None:
    """Write the agent's traceback to ``<id>/agent_traceback.txt``; where it went, or None."""
    import traceback

    from pytest_programbench.agents.agent import AgentRaised

    own = error.details if isinstance(error, AgentRaised) else None
    text = "".join(traceback.format_exception(error)) if own is None else own
    if not text:
        return None
    path = instance_dir / "agent_traceback.txt"
    try:
        path.write_text(text, errors="replace")
    except OSError:
        return None
    return path


@pytest.fixture
def pb_image(
    pb_instance: Instance,
    pb_engine: Engine,
    pb_settings: Settings,
    pb_shared_dir: Path,
    pb_progress: ItemProgress,
    pb_fleet: Fleet,
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    """The task image reference, present on the engine (pulled once per session if allowed).

    Within ``--pb-image-budget`` the item holds the image until it ends, so no other
    worker's pull evicts it; pulled and evicted bytes go on the item's report.
    """
    from pytest_programbench.engine.images import ensure_image
    from pytest_programbench.reporting.progress import announcer

    announce = announcer(pytestconfig)
    noted: list[bool] = []

    def progress(line: str) -> None:
        # Layer lines go to stderr; the status file gets one line for the whole pull or build.
        if not noted:
            noted.append(True)
            pb_progress(f"pulling or building {pb_instance.image_ref}")
        announce(line)

    if pb_settings.selftest:
        from pytest_programbench.engine.images import ensure_selftest_image

        ensure_selftest_image(pb_engine, pb_instance.image_ref, lock_dir=pb_shared_dir, progress=progress)
        yield pb_instance.image_ref
        return
    from pytest_programbench.engine.fleet import worker_name
    from pytest_programbench.engine.imagebudget import provision
    from pytest_programbench.engine.prefetch import next_holder

    ledger = pb_fleet.ledger(pb_engine, pb_shared_dir)
    holder = request.node.nodeid

    def ensure(before_pull: Callable[[], object]) -> str:
        return ensure_image(
            pb_engine,
            pb_instance.image_ref,
            policy=pb_settings.pull,
            lock_dir=pb_shared_dir,
            progress=progress,
            before_pull=before_pull,
        )

    booked = provision(ledger, pb_instance.image_ref, holder, ensure)
    ledger.release(
        {next_holder(worker_name())}, pb_instance.image_ref
    )  # a prefetch's hold passes to the item
    claimed = ledger.claim(pb_instance.image_ref)
    _prefetch_next(request.node, pb_fleet, pb_settings, pb_shared_dir)
    pulled, evicted = booked.pulled + claimed.pulled, booked.evicted + claimed.evicted
    if pulled or evicted:
        pb_fleet.note(request.node, {"pulled_bytes": pulled, "evicted_bytes": evicted})
    try:
        yield pb_instance.image_ref
    finally:
        ledger.release({holder})  # with budget 0 this removes the image (the ledger counts it)


def _prefetch_next(item: pytest.Item, fleet: Fleet, settings: Settings, shared_dir: Path) -> None:
    """Start pulling the image of the item this process runs next, if it is one of ours."""
    from pytest_programbench.engine.prefetch import NEXT_KEY
    from pytest_programbench.reporting.results import instance_of

    upcoming = item.stash.get(NEXT_KEY, None)
    instance = instance_of(upcoming) if upcoming is not None else None
    if instance is None or settings.pull == "never" or upcoming is None:
        return
    fleet.prefetch(settings.pull, shared_dir).start(fleet.spec_for(upcoming).url, instance.image_ref)


@pytest.fixture
def pb_image_id(pb_image: str, pb_engine: Engine, pb_shared_dir: Path) -> str:
    """The task image's id (``sha256:...``), recorded before anything runs from it.

    The sandbox and every scoring container start from this id, never from the tag, so a
    tag re-pointed during the run (``docker commit`` over it) changes nothing we score; and
    a tag that moved is an error naming both ids.
    """
    from pytest_programbench.engine.images import pin_image

    return pin_image(pb_engine, pb_image, lock_dir=pb_shared_dir)


@pytest.fixture
def pb_hidden_tests(pb_instance: Instance, pb_task: dict[str, Any], pb_settings: Settings) -> Path:
    """The directory holding ``tests/<branch>.tar.gz`` for every active branch."""
    from programbench.utils.load_data import get_active_branches

    from pytest_programbench.scoring.hidden_tests import fetch_hidden_tests

    blob_dir = Path(pb_settings.blob_dir) if pb_settings.blob_dir else None
    return fetch_hidden_tests(pb_instance.instance_id, get_active_branches(pb_task), blob_dir=blob_dir)


@pytest.fixture
def pb_outcome(
    pb_instance: Instance,
    pb_settings: Settings,
    pb_instance_dir: Path,
    pb_task: dict[str, Any],
    request: pytest.FixtureRequest,
) -> Outcome:
    """The instance's score from the official evaluator, written to ``<id>.eval.json``.

    A verdict a previous session left in this run directory is built on as
    ``programbench eval`` (no ``--force``) would: reused without starting a container
    when that tool would skip it, otherwise only the branches it would evaluate are
    scored and merged in; ``--pb-force`` scores everything again. Scoring asks for
    ``pb_submission``, ``pb_image``, ``pb_hidden_tests`` and ``pb_scoring_cpus``. With
    ``--pb-gold`` it scores the task image's own reference instead (gold.py).
    """
    from pytest_programbench import files
    from pytest_programbench.engine.fleet import worker_name
    from pytest_programbench.engine.images import check_pinned
    from pytest_programbench.scoring import resume, verdict
    from pytest_programbench.scoring.evaluator import (
        NO_EVAL_JSON,
        eval_json_path,
        score_submission,
        summarise_existing,
    )
    from pytest_programbench.scoring.integrity import Audit
    from pytest_programbench.scoring.submissions import UNPACKED_FACTOR

    if pb_settings.gold:  # --pb-gold: the task's own reference is scored, no submission exists
        from pytest_programbench.scoring.gold import gold_outcome

        return gold_outcome(request, pb_instance, pb_instance_dir)
    source = None
    if pb_settings.submissions_dir:
        source = submission_path(Path(pb_settings.submissions_dir), pb_instance.instance_id)
    progress: ItemProgress = request.getfixturevalue("pb_progress")
    plan = resume.plan(pb_instance, pb_instance_dir, source, pb_task, force=pb_settings.force)
    eval_json = eval_json_path(pb_instance_dir, pb_instance.instance_id)
    if plan.action == resume.REUSE:
        vouched = files.sha256(eval_json)
        outcome = resume.reused(summarise_existing(pb_instance, eval_json, task=pb_task), plan.previous)
        outcome = replace(outcome, **verdict.rescored_fields(plan))
        if plan.reason != resume.OFFICIAL and files.sha256(eval_json) != vouched:
            resume.mark_scored(pb_instance_dir, outcome, source)  # the summary rewrote eval.json
        progress(f"reused: score {outcome.score:.2f} from {pb_instance_dir}", milestone=True)
        return _counted(outcome, pb_settings)
    image_id: str = request.getfixturevalue("pb_image_id")  # pinned before the agent starts
    blob_dir: Path = request.getfixturevalue("pb_hidden_tests")  # a missing branch costs no agent run
    submission = Submission.of(request.getfixturevalue("pb_submission"))
    if plan.action == resume.PART:  # only a partial re-score needs the archive's sha
        plan = verdict.settle(plan, files.sha256(submission.path))
    line = verdict.announcement(plan)
    if line is not None:
        progress(line, milestone=True)
    image: str = request.getfixturevalue("pb_image")
    engine: Engine = request.getfixturevalue("pb_engine")
    check_pinned(engine, image, image_id, when="before scoring (while the agent worked, if one ran)")
    branches, merge_into = verdict.scope(plan, eval_json)
    scored = score_submission(
        verdict.ScoreRequest(
            pb_instance,
            submission.path,
            blob_dir=blob_dir,
            instance_dir=pb_instance_dir,
            cpus=request.getfixturevalue("pb_scoring_cpus"),
            branch_workers=pb_settings.branch_workers,
            branch_retries=pb_settings.branch_retries,
            task=pb_task,
            progress=progress,
            image=image_id,
            audit=Audit(engine, pb_task.get("eval_clean_hashes", [])),
            engine=engine,
            labels=item_labels(
                request.config.stash[RUN_ID_KEY], worker_name(), pb_instance.instance_id, "scoring"
            ),
            memory=pb_settings.scoring_memory,
            branches=branches,
            merge_into=merge_into,
            max_unpacked=UNPACKED_FACTOR * pb_settings.max_submission if pb_settings.submissions_dir else 0,
        )
    )
    check_pinned(engine, image, image_id, when="while the submission was scored")
    outcome = replace(scored, agent=submission.agent_run, image_id=image_id)
    if outcome.error_code in NO_EVAL_JSON:  # a 0 as `programbench eval` gives it: no eval.json to vouch for
        progress(f"scored 0 ({outcome.error_code}): {outcome.message}", milestone=True)
        return _counted(outcome, pb_settings)
    progress(f"scored {outcome.score:.2f} ({outcome.n_resolved}/{outcome.n_tests})", milestone=True)
    outcome = verdict.finish(outcome, plan)
    resume.mark_scored(pb_instance_dir, outcome, source)
    return _counted(outcome, pb_settings)


def _counted(outcome: Outcome, settings: Settings) -> Outcome:
    """The outcome as the session counts it: strict integrity zeroes a flagged instance."""
    return outcome.counted_strictly() if settings.integrity == "strict" else outcome
