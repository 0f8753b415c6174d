"""Gold: score each task's own reference on this machine, and measure submissions against it.

``--pb-gold`` runs the official evaluator's test branches unchanged against the task
image's own ``./executable`` instead of a compiled workspace. It cannot be a submission:
the evaluator deletes every file matching ``eval_clean_hashes`` and ``./executable``
before it compiles. So :func:`gold_evaluator_class` skips the compile: the pinned task
image is started, its ``./executable`` is stashed and hashed with the evaluator's own
step commands, pytest-rerunfailures is installed as after a compile, and the container
is committed; from there every branch runs exactly as in a normal score. What differs
from a normal score: no workspace wipe, no submission unpacked, no ``eval_clean_hashes``
deletion, no ``rm -f ./executable``, no synthetic git repository, no DNS blackhole, no
``compile.sh``; the workspace the tests see holds the image's own files (docs and
``./executable``) instead of a submission's, and no integrity audit runs (the reference
is the one binary it is meant to flag).

The session writes a gold mask, ``<run dir>/gold_mask.json``: per task, the counted
hidden tests the reference fails here (:data:`SCHEMA`, documented in docs/gold-and-leaderboard.md). A
normal run given ``--pb-gold-mask FILE`` adds ``gold_score`` beside the official score:
the share of the tests the reference passes here that the submission passes. The
official score stays the headline and is never changed.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_programbench import files

if TYPE_CHECKING:
    from pytest_programbench.engine.containers import Engine
    from pytest_programbench.model import Instance, Outcome
    from pytest_programbench.reporting.progress import ItemProgress
    from pytest_programbench.reporting.results import Tally
    from pytest_programbench.selection.settings import Settings

MASK_NAME = "gold_mask.json"
SCHEMA = "pytest-programbench gold mask"
VERSION = 1
#: The evaluator's solution_branch in a gold eval.json (a normal score says "submission").
SOLUTION_BRANCH = "gold"
#: On the config: the mask a normal run scores against (``--pb-gold-mask``), read once per process.
MASK_KEY = pytest.StashKey["Mask"]()


class MaskInvalid(Exception):
    pass


class Mask:
    """A gold mask read back: per instance, the counted hidden tests the reference failed."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.failed: dict[str, frozenset[str]] = {
            iid: frozenset(entry["failed"]) for iid, entry in data["instances"].items()
        }

    def score(self, instance_id: str, results: Iterable[dict[str, Any]]) -> tuple[float, int, int] | None:
        """``(gold_score, passed, gold_tests)`` of one instance's counted test results; None when the
        mask does not know the instance or the reference passes none of its tests here."""
        failed = self.failed.get(instance_id)
        if failed is None:
            return None
        passed = total = 0
        for t in results:
            name = f"{t.get('branch') or ''}/{t['name']}"
            if name in failed:
                continue
            total += 1
            passed += t["status"] == "passed"
        return (passed / total, passed, total) if total else None


def read_mask(path: Path) -> Mask:
    """A mask file, checked; MaskInvalid says what is wrong with it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MaskInvalid(f"{path} is not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise MaskInvalid(f'{path} is not a gold mask (no "schema": {SCHEMA!r})')
    if data.get("version") != VERSION:
        raise MaskInvalid(
            f"{path} is a gold mask of version {data.get('version')!r}; this plugin reads {VERSION}"
        )
    instances = data.get("instances")
    if not isinstance(instances, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("failed"), list) for e in instances.values()
    ):
        raise MaskInvalid(f'{path}: "instances" must map each instance id to an entry with a "failed" list')
    return Mask(path, data)


def mask_of(config: pytest.Config) -> Mask | None:
    """The ``--pb-gold-mask`` of this session, read once per process (a usage error if it is no mask)."""
    from pytest_programbench.keys import SETTINGS_KEY

    settings = config.stash[SETTINGS_KEY]
    if not settings.gold_mask:
        return None
    if MASK_KEY not in config.stash:
        try:
            config.stash[MASK_KEY] = read_mask(Path(settings.gold_mask))
        except MaskInvalid as exc:
            raise pytest.UsageError(
                f"programbench: --pb-gold-mask {exc}; give the {MASK_NAME} a --pb-gold run wrote"
            ) from None
    return config.stash[MASK_KEY]


def gold_score_of(mask: Mask, instance: Instance, eval_json: Path) -> tuple[float, int, int] | None:
    """The gold score of an instance's eval.json, counted as ``programbench info`` counts."""
    from pytest_programbench.scoring import detail

    try:
        results = list(detail.counted(detail.read(eval_json), detail.branches_of(instance)))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return mask.score(instance.instance_id, results)


def add_gold_score(row: dict[str, Any], scored: tuple[float, int, int] | None) -> None:
    """Put ``gold_score`` (and the passed/total it is made of) on a row, beside the official score.

    Under ``--pb-integrity strict`` a flagged instance counts 0 here too.
    """
    if scored is None or row.get("outcome") not in ("resolved", "almost", "partial", "zero"):
        return
    score, passed, total = scored
    if row.get("official_score") is not None:
        score, passed = 0.0, 0
    row.update(gold_score=score, gold_passed=passed, gold_tests=total)


# -- the gold run --------------------------------------------------------------


def gold_evaluator_class() -> Any:
    """Our engine-aware Evaluator (scoring.evaluator_class) with the compile replaced by the reference.

    Private programbench API, used here only: ``_compile_executable`` (replaced), ``_run_step``,
    ``_stashed_executable`` and ``result.executable_hash``; the three steps below are the tail of
    programbench 1.2.x's ``_compile_executable``, with its step names and commands, so the branches
    find exactly what they find after a compile (tests/unit/test_private_apis.py names them).
    """
    from pytest_programbench.scoring.evaluator import evaluator_class

    base = evaluator_class()

    class GoldEvaluator(base):  # type: ignore[misc, valid-type]
        def _compile_executable(self, env: Any, log_buf: list[dict[str, Any]]) -> None:
            self.observer.report("scoring: stashing the image's own ./executable (gold run: no compile)")
            self._run_step(
                f"mv ./executable {self._stashed_executable}",
                env=env,
                log_buf=log_buf,
                step_name="copy_executable",
                timeout=300,
            )
            r = self._run_step(
                f"sha256sum {self._stashed_executable}",
                env=env,
                log_buf=log_buf,
                step_name="hash_executable",
                timeout=300,
            )
            self.result.executable_hash = r["output"].split()[0]
            rerun_install = self._run_step(
                "pip3 install -q --disable-pip-version-check pytest-rerunfailures==16.4",
                env=env,
                log_buf=log_buf,
                step_name="install_rerunfailures",
                accept_failure=True,
                timeout=120,
            )
            self._has_rerunfailures = rerun_install["returncode"] == 0

    return GoldEvaluator


def score_reference(
    instance: Instance,
    *,
    blob_dir: Path,
    instance_dir: Path,
    cpus: int,
    task: dict[str, Any],
    image: str,
    engine: Engine | None,
    labels: Mapping[str, str],
    memory: str = "",
    branch_workers: int = 1,
    branch_retries: int = 1,
    progress: ItemProgress | None = None,
) -> Outcome:
    """Run every active branch against the reference in ``image`` (a pinned id); write eval.json."""
    from programbench.utils.load_data import get_active_branches, get_ignored_branches, get_ignored_tests

    from pytest_programbench.scoring.evaluator import (
        Observer,
        _tests_by_branch,
        container_cli,
        eval_json_path,
        outcome_from_result,
        run_evaluator,
    )

    active = get_active_branches(task)
    image_name, _, image_tag = image.rpartition(":")
    evaluator = gold_evaluator_class()(
        cli=container_cli(engine, labels, memory),
        observer=Observer(progress, len(active)),
        image_name=image_name,
        solution_branch=SOLUTION_BRANCH,
        submission_archive=None,
        blob_dir=blob_dir,
        tests_branches=active,
        remove_hashes=[],  # nothing is deleted: the reference is what is scored
        image_tag=image_tag,
        tests_by_branch=_tests_by_branch(task, active),
        ignored_tests=get_ignored_tests(task),
        ignored_branches=get_ignored_branches(task),
        instance_id=instance.instance_id,
        docker_cpus=cpus,
        branch_workers=branch_workers,
        branch_retries=branch_retries,
    )
    started = time.monotonic()
    result = run_evaluator(evaluator, instance, engine)
    elapsed = time.monotonic() - started
    target = eval_json_path(instance_dir, instance.instance_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(target, result.model_dump_json(indent=2), durable=True)
    outcome = outcome_from_result(instance, result, task=task, eval_seconds=elapsed)
    return replace(outcome, image_id=image)


def gold_outcome(request: pytest.FixtureRequest, instance: Instance, instance_dir: Path) -> Outcome:
    """``pb_outcome`` of a gold run: the reference's verdict, reused when a previous gold session of
    this run directory left a complete one for the same image."""
    from pytest_programbench.engine.containers import item_labels
    from pytest_programbench.engine.fleet import worker_name
    from pytest_programbench.engine.images import check_pinned
    from pytest_programbench.keys import RUN_ID_KEY
    from pytest_programbench.scoring import resume
    from pytest_programbench.scoring.evaluator import eval_json_path, summarise_existing

    settings: Settings = request.getfixturevalue("pb_settings")
    task: dict[str, Any] = request.getfixturevalue("pb_task")
    progress: ItemProgress = request.getfixturevalue("pb_progress")
    image_id: str = request.getfixturevalue("pb_image_id")
    eval_json = eval_json_path(instance_dir, instance.instance_id)
    existed = eval_json.is_file()
    why = _why_not_reuse(instance_dir, eval_json, task, image_id) if not settings.force else "--pb-force"
    if not why:
        vouched = files.sha256(eval_json)
        outcome = summarise_existing(instance, eval_json, task=task)
        previous = json.loads((instance_dir / resume.DONE_MARKER).read_text()).get("outcome", {})
        outcome = resume.reused(outcome, previous)
        if files.sha256(eval_json) != vouched:
            resume.mark_scored(instance_dir, outcome, None)  # the summary rewrote eval.json
        progress(f"reused: gold score {outcome.score:.2f} from {instance_dir}", milestone=True)
        return outcome
    if existed:
        progress(f"scoring the reference again in full: {why}", milestone=True)
    engine: Engine = request.getfixturevalue("pb_engine")
    image: str = request.getfixturevalue("pb_image")
    check_pinned(engine, image, image_id, when="before the reference was scored")
    outcome = score_reference(
        instance,
        blob_dir=request.getfixturevalue("pb_hidden_tests"),
        instance_dir=instance_dir,
        cpus=request.getfixturevalue("pb_scoring_cpus"),
        task=task,
        image=image_id,
        engine=engine,
        labels=item_labels(request.config.stash[RUN_ID_KEY], worker_name(), instance.instance_id, "gold"),
        memory=settings.scoring_memory,
        branch_workers=settings.branch_workers,
        branch_retries=settings.branch_retries,
        progress=progress,
    )
    check_pinned(engine, image, image_id, when="while the reference was scored")
    progress(f"gold score {outcome.score:.2f} ({outcome.n_resolved}/{outcome.n_tests})", milestone=True)
    if existed:
        outcome = replace(outcome, rescored=resume.FULL, rescore_reason=why)
    resume.mark_scored(instance_dir, outcome, None)
    return outcome


def _why_not_reuse(instance_dir: Path, eval_json: Path, task: dict[str, Any], image_id: str) -> str:
    """'' when an earlier gold session's verdict here stands as it is, else why it must be redone."""
    from pytest_programbench.scoring import resume
    from pytest_programbench.scoring.evaluator import branches_to_rescore

    if not eval_json.is_file():
        return "no verdict yet"
    try:
        marker = json.loads((instance_dir / resume.DONE_MARKER).read_text())
        recorded = marker["outcome"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no marker of ours vouches for its eval.json"
    if marker.get("eval_sha256") != files.sha256(eval_json):
        return "its eval.json changed after it was scored"
    if recorded.get("image_id") != image_id:
        return f"the task image is now {image_id}, not {recorded.get('image_id')}"
    try:
        if branches_to_rescore(eval_json, task):
            return "its eval.json is incomplete"
    except (OSError, ValueError):
        return "its eval.json is unreadable"
    return ""


# -- the session -----------------------------------------------------------------------


def configure(config: pytest.Config, tally: Tally) -> None:
    """Controller: keep gold runs and submission runs apart, read ``--pb-gold-mask``, and in a gold
    run register what writes the mask."""
    from pytest_programbench.engine.fleet import FLEET_KEY
    from pytest_programbench.keys import RUN_DIR_KEY, SETTINGS_KEY

    settings = config.stash[SETTINGS_KEY]
    if config.option.collectonly:
        return
    run_dir = config.stash[RUN_DIR_KEY]
    check_run_dir(settings, run_dir)
    tally.gold_mask = mask_of(config)
    if settings.gold:
        engines = list(config.stash[FLEET_KEY].urls)
        config.pluginmanager.register(
            GoldRun(tally, run_dir, settings.threshold, engines), "programbench-gold"
        )


# -- the run directory and the mask it gets --------------------------------------------


def check_run_dir(settings: Settings, run_dir: Path) -> None:
    """A gold run and a submission run never share a run directory (their eval.json files would mix)."""
    mask = run_dir / MASK_NAME
    if settings.gold:
        found = next(
            iter([*run_dir.glob("*/submission.tar.gz"), *run_dir.glob("attempt-*/*/submission.tar.gz")]), None
        )
        if found is not None:
            raise pytest.UsageError(
                f"programbench: --pb-gold: {run_dir} holds submissions ({found.relative_to(run_dir)}); "
                "a gold run needs a run directory of its own (another --pb-output)"
            )
    elif mask.is_file():
        raise pytest.UsageError(
            f"programbench: {run_dir} is a gold run's directory (it holds {MASK_NAME}); score submissions in "
            f"another --pb-output, and pass --pb-gold-mask {mask} to measure them against it"
        )


def build_mask(
    rows: Iterable[dict[str, Any]],
    instances: Iterable[Instance],
    run_dir: Path,
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """The gold mask of a run directory: each instance with a verdict, read from its eval.json."""
    from pytest_programbench.model import CATEGORIES
    from pytest_programbench.scoring import detail
    from pytest_programbench.selection.tasks import load_tests

    by_key = {(r["instance_id"], r["attempt"]): r for r in rows}
    entries: dict[str, dict[str, Any]] = {}
    for inst in sorted(instances, key=lambda i: (i.instance_id, i.attempt)):
        row = by_key.get((inst.instance_id, inst.attempt))
        if row is None or row.get("outcome") not in CATEGORIES:
            continue
        eval_json = run_dir / inst.rel_dir / f"{inst.instance_id}.eval.json"
        try:
            data = detail.read(eval_json)
            results = list(detail.counted(data, detail.branches_of(inst)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        failed = {f"{t.get('branch') or ''}/{t['name']}" for t in results if t["status"] != "passed"}
        entry = entries.setdefault(
            inst.instance_id,
            {
                "image_id": row.get("image_id"),
                "executable_sha256": data.get("executable_hash"),
                "reference_hash_known": None,
                "gold_score": 0.0,
                "scores": [],
                "n_tests": len(results),
                "error_code": data.get("error_code"),
                "failed": set(),
            },
        )
        clean = [h.lower() for h in load_tests(inst).get("eval_clean_hashes") or []]
        if clean and entry["executable_sha256"]:
            entry["reference_hash_known"] = str(entry["executable_sha256"]).lower() in clean
        entry["scores"].append(row["score"])
        entry["failed"] |= failed  # over attempts: a test the reference fails once is masked
    for entry in entries.values():
        entry["gold_score"] = sum(entry["scores"]) / len(entry["scores"])
        entry["attempts"] = len(entry["scores"])
        entry["failed"] = sorted(entry["failed"])
    options = meta.get("options") or {}
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "run_id": meta.get("run_id"),
        "run_dir": str(run_dir),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"hostname": socket.gethostname(), "engines": meta.get("engines", [])},
        "settings": {
            k: options.get(k)
            for k in ("cpus", "scoring_memory", "branch_workers", "branch_retries", "image_tag", "attempts")
        },
        "versions": meta.get("versions", {}),
        "instances": entries,
    }


def write_mask(path: Path, mask: dict[str, Any]) -> None:
    files.write_text(path, json.dumps(mask, indent=2, sort_keys=False) + "\n")


class GoldRun:
    """Controller-only, in a ``--pb-gold`` session: the mask (kept current) and its summary."""

    def __init__(self, tally: Tally, run_dir: Path, threshold: float, engines: list[str]) -> None:
        self.tally = tally
        self.run_dir = run_dir
        self.threshold = threshold
        self.engines = engines
        self.mask: dict[str, Any] | None = None
        self.failure = ""

    @property
    def path(self) -> Path:
        return self.run_dir / MASK_NAME

    def write(self) -> None:
        meta = {**self.tally.meta, "engines": self.engines}
        self.mask = build_mask(self.tally.rows.values(), self.tally.instances.values(), self.run_dir, meta)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_mask(self.path, self.mask)
        except OSError as exc:
            self.failure = str(exc)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if not self.path.is_file():  # marks the directory as a gold run's from its first moment
            self.write()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.tally.collected:
            self.write()

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if self.mask is None or not self.tally.collected:
            return
        terminalreporter.write_sep("=", "ProgramBench gold run")
        for line in gold_lines(self.mask, self.path, self.threshold, self.failure):
            terminalreporter.write_line(line)


def gold_lines(mask: dict[str, Any], path: Path, threshold: float, failure: str = "") -> list[str]:
    """What a gold session says at the end: the mask, and the tasks whose reference falls short here."""
    entries: dict[str, dict[str, Any]] = mask["instances"]
    n_failed = sum(len(e["failed"]) for e in entries.values())
    out = [
        "the reference ./executable of each task, scored as it stands in its image, on this machine "
        "(the official evaluator's branches; no compile)",
        f"gold mask: {path} ({len(entries)} task(s), {n_failed} counted hidden test(s) the reference "
        "fails here)" + (f"; writing it failed: {failure}" if failure else ""),
    ]
    low = sorted((iid, e) for iid, e in entries.items() if e["gold_score"] < threshold)
    if low:
        out.append(f"{len(low)} task(s) whose gold score is below --pb-threshold {threshold:.2f}:")
        for iid, e in low:
            names = e["failed"]
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            why = (
                f"error_code {e['error_code']}"
                if e.get("error_code")
                else f"fails {len(names)} of {e['n_tests']}"
            )
            out.append(f"  {iid}: gold score {e['gold_score']:.3f} ({why}: {shown})")
    else:
        out.append(f"every task's gold score reaches --pb-threshold {threshold:.2f}")
    unknown = sorted(iid for iid, e in entries.items() if e.get("reference_hash_known") is False)
    if unknown:
        out.append(
            "the image's ./executable is not the binary named by task.yaml's eval_clean_hashes for: "
            + ", ".join(unknown)
        )
    out.append(f"measure submissions against it: pytest ... --pb-gold-mask {path}")
    return out
