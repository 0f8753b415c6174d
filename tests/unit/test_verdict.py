"""verdict: the pure decisions around scoring a rerun's item (no engine, no files)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_programbench.model import Outcome
from pytest_programbench.scoring import resume, verdict

from .support import instance

INST = instance("org__tool.abc1234")
PART = resume.Plan(
    resume.PART,
    branches=("b2",),
    submission_sha256="aaa",
    previous={"findings": [{"code": "c", "path": "p"}]},
)


def test_a_partial_rescore_of_another_archive_is_a_full_one() -> None:
    assert verdict.settle(PART, "aaa") is PART
    changed = verdict.settle(PART, "bbb")
    assert (changed.action, changed.reason, changed.branches) == (resume.FULL, "the submission changed", ())


@pytest.mark.parametrize("action", [resume.FULL, resume.FRESH])
def test_only_a_partial_plan_depends_on_the_archive(action: str) -> None:
    plan = resume.Plan(action, "why")
    assert verdict.settle(plan, "anything") is plan


def test_scope_merges_a_partial_rescore_into_its_eval_json(tmp_path: Path) -> None:
    target = tmp_path / "x.eval.json"
    assert verdict.scope(PART, target) == (("b2",), target)
    assert verdict.scope(resume.Plan(resume.FULL, "why"), target) == (None, None)
    assert verdict.scope(resume.Plan(resume.FRESH), target) == (None, None)


def test_announcement_names_what_is_scored_again() -> None:
    assert verdict.announcement(PART) == "re-scoring branches b2"
    assert verdict.announcement(resume.Plan(resume.FULL, "--pb-force")) == "re-scoring in full: --pb-force"
    assert verdict.announcement(resume.Plan(resume.FRESH)) is None


def test_merge_keeps_earlier_findings_not_found_again_and_drops_duplicates() -> None:
    new = [{"code": "a", "path": "x"}, {"code": "b", "path": "y"}]
    earlier = [
        {"code": "a", "path": "x", "detail": "the first session's words"},  # found again: the new one stays
        {"code": "a", "path": "z"},  # same code elsewhere: a branch not run again
        {"code": "c", "path": "y"},  # same path, other code
    ]
    assert verdict.merge_findings(new, earlier) == [*new, earlier[1], earlier[2]]
    assert verdict.merge_findings([], earlier) == earlier
    assert verdict.merge_findings(new, []) == new


def test_rescored_fields_by_plan() -> None:
    assert verdict.rescored_fields(PART) == {
        "rescored": "part",
        "rescored_branches": ["b2"],
        "rescore_reason": "",
    }
    assert verdict.rescored_fields(resume.Plan(resume.FULL, "its eval.json changed")) == {
        "rescored": "full",
        "rescored_branches": [],
        "rescore_reason": "its eval.json changed",
    }
    assert verdict.rescored_fields(resume.Plan(resume.REUSE, resume.OFFICIAL)) == {
        "rescore_reason": resume.OFFICIAL
    }
    assert verdict.rescored_fields(resume.Plan(resume.FRESH)) == {}
    names = {f.name for f in dataclasses.fields(Outcome)}
    for plan in (PART, resume.Plan(resume.FULL, "x"), resume.Plan(resume.REUSE)):
        assert set(verdict.rescored_fields(plan)) <= names


def test_finish_adds_earlier_findings_only_to_a_partial_rescore() -> None:
    scored = Outcome.from_score(
        INST, score=1.0, n_resolved=3, n_tests=3, findings=[{"code": "n", "path": "q"}]
    )
    part = verdict.finish(scored, PART)
    assert part.findings == [{"code": "n", "path": "q"}, {"code": "c", "path": "p"}]
    assert (part.rescored, part.rescored_branches) == ("part", ["b2"])
    full = verdict.finish(scored, dataclasses.replace(PART, action=resume.FULL))
    assert full.findings == scored.findings and full.rescored == "full"
    assert verdict.finish(scored, resume.Plan(resume.FRESH)) == scored


def test_the_request_is_frozen_with_the_evaluators_defaults(tmp_path: Path) -> None:
    request = verdict.ScoreRequest(
        INST, tmp_path / "s.tar.gz", blob_dir=tmp_path, instance_dir=tmp_path, cpus=2
    )
    assert (request.branch_workers, request.branch_retries, request.branches, request.merge_into) == (
        1,
        1,
        None,
        None,
    )
    assert dict(request.labels) == {} and request.memory == "" and request.max_unpacked == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.cpus = 3  # type: ignore[misc]
