"""Resume: decide what a rerun does with the work a previous session left.

Two markers, each written atomically and only after what it vouches for is complete:

- ``<id>/agent.json`` after the agent ran and ``submission.tar.gz`` was packed: a rerun
  scores that archive instead of paying for the agent again (only
  ``--pb-force-agent`` reruns it).
- ``<id>/programbench.json`` after ``<id>.eval.json`` was written: the sha256 of the
  submission it scored (and, in replay, of the source archive) and of that eval.json.

A verdict is built on only when its marker vouches for both files as they are now; an
eval.json edited afterwards, or one no marker of ours vouches for, is scored again in
full. A vouched-for verdict converges like ``programbench eval`` without ``--force``:
reused when that tool would skip it, otherwise only the branches it would choose are
scored again and merged in (scoring.py holds the official calls). A session killed
half-way leaves at most ``*.partial`` files and no marker for the unfinished step.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pytest_programbench import files
from pytest_programbench.model import AgentRun, Instance, Outcome, agent_run_of
from pytest_programbench.scoring.submissions import ARCHIVE_NAME

AGENT_MARKER = "agent.json"
DONE_MARKER = "programbench.json"

REUSE, PART, FULL, FRESH = "reuse", "part", "full", "fresh"


@dataclass(frozen=True)
class Plan:
    """What an item does with its directory: reuse the verdict, or score which branches and why."""

    action: str  # REUSE | PART | FULL (a verdict existed) | FRESH (none did)
    reason: str = ""
    branches: tuple[str, ...] = ()  # PART: the branches to evaluate and merge
    submission_sha256: str = ""  # PART: the archive the verdict being completed was scored on
    previous: dict[str, Any] = field(default_factory=dict)  # the marker's outcome


def check_layout(instance_dir: Path, instance_id: str) -> None:
    """Raise RunDirInvalid if a directory stands where the item will write one of its files."""
    from pytest_programbench.errors import RunDirInvalid

    ours = {
        ARCHIVE_NAME: "submission archive",
        f"{instance_id}.eval.json": "evaluator's result (eval.json)",
        f"{instance_id}.traj.json": "agent's trajectory",
        f"{instance_id}.integrity.json": "integrity audit's findings",
        AGENT_MARKER: "marker of a finished agent run",
        DONE_MARKER: "marker of a scored verdict",
    }
    for name, what in ours.items():
        if (instance_dir / name).is_dir():
            raise RunDirInvalid(str(instance_dir / name), what)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def mark_agent_done(instance_dir: Path, run: AgentRun) -> None:
    files.write_text(
        instance_dir / AGENT_MARKER,
        json.dumps(
            {"agent": asdict(run), "submission_sha256": files.sha256(instance_dir / ARCHIVE_NAME)}, indent=2
        ),
        durable=True,
    )


def finished_agent(instance_dir: Path) -> AgentRun | None:
    """The agent run whose packed submission is still in place, if any."""
    data = _read(instance_dir / AGENT_MARKER)
    archive = instance_dir / ARCHIVE_NAME
    if data is None or not archive.is_file() or data.get("submission_sha256") != files.sha256(archive):
        return None
    try:
        return AgentRun(**data["agent"])
    except (KeyError, TypeError):
        return None


def mark_scored(instance_dir: Path, outcome: Outcome, source: Path | None) -> None:
    """Vouch for ``<id>.eval.json`` as it is now, and for the submission it scored."""
    from pytest_programbench.scoring.evaluator import eval_json_path

    archive = instance_dir / ARCHIVE_NAME
    files.write_text(
        instance_dir / DONE_MARKER,
        json.dumps(
            {
                "outcome": outcome.to_dict(),
                # None: an official run directory scored without its archive beside it.
                "submission_sha256": files.sha256(archive) if archive.is_file() else None,
                "source_sha256": files.sha256(source) if source is not None else None,
                "eval_sha256": files.sha256(eval_json_path(instance_dir, outcome.instance_id)),
            },
            indent=2,
        ),
        durable=True,
    )


def plan(
    instance: Instance, instance_dir: Path, source: Path | None, task: dict[str, Any], *, force: bool
) -> Plan:
    """Reuse, score some branches, or score all, given what the instance's directory holds."""
    from pytest_programbench.scoring.evaluator import eval_json_path

    eval_json = eval_json_path(instance_dir, instance.instance_id)
    if not eval_json.is_file():
        return Plan(FRESH)
    if force:
        return Plan(FULL, "--pb-force")
    data = _read(instance_dir / DONE_MARKER)
    if data is None:
        return _plan_official(eval_json, task)
    archive = instance_dir / ARCHIVE_NAME
    submission = files.sha256(archive) if archive.is_file() else ""
    # Replay: the archive to score may have changed since it was copied here.
    moved = source is not None and source.resolve() != archive.resolve()
    recorded_source = data.get("source_sha256")
    if submission != data.get("submission_sha256") or (
        moved and (source is None or not source.is_file() or files.sha256(source) != recorded_source)
    ):
        return Plan(FULL, "the submission changed")
    if "eval_sha256" not in data:
        return Plan(FULL, "its marker predates eval.json checksums")
    if files.sha256(eval_json) != data["eval_sha256"]:
        return Plan(FULL, "its eval.json changed after it was scored")
    read = _read_existing(eval_json, task)
    if read is None:
        return Plan(FULL, "its eval.json is unreadable")
    existing, branches = read
    recorded = data.get("outcome")
    previous: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    if not branches:
        return Plan(REUSE, previous=previous)
    if existing.test_branches and not existing.error_code:
        return Plan(PART, branches=tuple(branches), submission_sha256=submission, previous=previous)
    why = f"error_code {existing.error_code}" if existing.error_code else "no tested branch"
    return Plan(FULL, f"its eval.json has {why}", previous=previous)


def _read_existing(eval_json: Path, task: dict[str, Any]) -> tuple[Any, list[str]] | None:
    """An eval.json as programbench reads it, and the branches ``programbench eval`` would redo; None
    when it does not parse."""
    from programbench.eval.eval import EvaluationResult

    from pytest_programbench.scoring.evaluator import branches_to_rescore

    try:
        branches = branches_to_rescore(eval_json, task)
        return EvaluationResult.model_validate_json(eval_json.read_text()), branches
    except (OSError, ValueError):
        return None


def _plan_official(eval_json: Path, task: dict[str, Any]) -> Plan:
    """An eval.json without our marker: the official tools' (``programbench eval``), or unknown.

    Treated as that tool treats its own run directory without ``--force``: complete, it is
    summarised and reused; otherwise scored again in full (``--pb-force`` always scores).
    """
    read = _read_existing(eval_json, task)
    if read is None:
        return Plan(FULL, "no marker of ours vouches for its eval.json, and it is unreadable")
    existing, branches = read
    if existing.test_branches and not branches:
        return Plan(REUSE, OFFICIAL)
    return Plan(FULL, "no marker of ours vouches for its eval.json, and it is incomplete")


#: Plan.reason of a reused eval.json that the official tools wrote (no marker of ours).
OFFICIAL = "an official eval.json (no marker of ours)"


def earlier_verdict(instance: Instance, instance_dir: Path) -> tuple[Outcome, str] | None:
    """The verdict an instance has in the run directory, for a session that did not run it.

    ``(outcome, "earlier")`` from our marker when it still vouches for eval.json;
    ``(outcome, "official")`` summarised read-only from an eval.json the official tools
    wrote; None when there is neither (or the marker no longer matches).
    """
    from pytest_programbench.scoring.evaluator import eval_json_path, summarise_existing
    from pytest_programbench.selection.tasks import load_tests

    eval_json = eval_json_path(instance_dir, instance.instance_id)
    if not eval_json.is_file():
        return None
    data = _read(instance_dir / DONE_MARKER)
    if data is not None:
        recorded = data.get("outcome")
        if not isinstance(recorded, dict) or data.get("eval_sha256") != files.sha256(eval_json):
            return None
        names = {f.name for f in fields(Outcome)} - {"agent"}
        values = {k: v for k, v in recorded.items() if k in names}
        values.setdefault("outcome", recorded.get("category"))  # markers written before the rename
        try:
            return Outcome(**values, agent=agent_run_of(recorded)), "earlier"
        except TypeError:
            return None
    try:
        return summarise_existing(instance, eval_json, task=load_tests(instance), rewrite=False), "official"
    except Exception:  # a summary must not fail on one unreadable file
        return None


def reused(outcome: Outcome, previous: dict[str, Any]) -> Outcome:
    """A verdict taken over from a previous session: what eval.json does not hold, as recorded.

    That is the agent run, the scoring time, the integrity findings and the image scored.
    """
    kept = {k: previous[k] for k in ("eval_seconds", "findings", "image_id") if k in previous}
    return replace(outcome, reused=True, agent=agent_run_of(previous) or outcome.agent, **kept)
