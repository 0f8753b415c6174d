"""Verdict: what scoring is asked to do for one item, and the decisions around it.

``ScoreRequest`` is everything ``scoring.score_submission`` needs, gathered once by the
``pb_outcome`` fixture. The functions here are the pure part of building a verdict on what
a previous session left (resume.py reads the directory and makes the plan): whether a
partial re-score still applies once the submission's sha is known, which branches are
scored and into which eval.json they merge, how earlier findings join a partial re-score's,
and which fields of the outcome say it was scored again. No engine, no files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_programbench.model import Instance, Outcome
from pytest_programbench.scoring.resume import FULL, PART, REUSE, Plan

if TYPE_CHECKING:
    from pytest_programbench.engine.containers import Engine
    from pytest_programbench.scoring.integrity import Audit


@dataclass(frozen=True)
class ScoreRequest:
    """One call of the official evaluator on a submission, and where its verdict goes.

    ``branches`` (default: every active one) are the branches to test; ``merge_into``, the
    eval.json they complete. ``image`` pins the task image (``sha256:<id>``); default: the
    instance's tag. ``labels`` go on every container the evaluator starts; ``memory`` limits
    them (default none, as the official evaluator). ``max_unpacked`` bounds the archive's
    unpacked size (0: no bound).
    """

    instance: Instance
    submission: Path
    blob_dir: Path
    instance_dir: Path
    cpus: int
    branch_workers: int = 1
    branch_retries: int = 1
    task: dict[str, Any] | None = None
    progress: Callable[[str], object] | None = None
    image: str | None = None
    audit: Audit | None = None
    engine: Engine | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    memory: str = ""
    branches: tuple[str, ...] | None = None
    merge_into: Path | None = None
    max_unpacked: int = 0


def settle(plan: Plan, submission_sha256: str) -> Plan:
    """The plan once the submission to score is known: a partial re-score of another archive
    (an agent ran again) is a full one."""
    if plan.action == PART and submission_sha256 != plan.submission_sha256:
        return Plan(FULL, "the submission changed")
    return plan


def announcement(plan: Plan) -> str | None:
    """The progress line saying what scoring is about to redo, or None for a fresh score."""
    if plan.action == PART:
        return f"re-scoring branches {', '.join(plan.branches)}"
    if plan.action == FULL:
        return f"re-scoring in full: {plan.reason}"
    return None


def scope(plan: Plan, eval_json: Path) -> tuple[tuple[str, ...] | None, Path | None]:
    """``(branches, merge_into)`` of the request: a partial re-score's branches merged into
    the eval.json they complete; otherwise every active branch, written anew."""
    if plan.action == PART:
        return plan.branches, eval_json
    return None, None


def merge_findings(new: list[dict[str, str]], earlier: list[dict[str, str]]) -> list[dict[str, str]]:
    """A partial re-score's findings: the new ones, then the earlier ones it did not find again.

    Branches not tested again keep what the audit saw of them the first time; a finding is
    the same one when its code and path are.
    """
    seen = {(f["code"], f["path"]) for f in new}
    return [*new, *(f for f in earlier if (f["code"], f["path"]) not in seen)]


def rescored_fields(plan: Plan) -> dict[str, Any]:
    """The outcome's fields that say how this verdict relates to the one before it."""
    if plan.action in (PART, FULL):
        return {
            "rescored": plan.action,
            "rescored_branches": list(plan.branches),
            "rescore_reason": plan.reason,
        }
    if plan.action == REUSE:
        return {"rescore_reason": plan.reason}  # "": ours; else an official eval.json
    return {}


def finish(outcome: Outcome, plan: Plan) -> Outcome:
    """A scored outcome with what the plan adds: earlier findings (partial) and the rescored fields."""
    if plan.action == PART:
        outcome = replace(
            outcome, findings=merge_findings(outcome.findings, plan.previous.get("findings", []))
        )
    return replace(outcome, **rescored_fields(plan))
