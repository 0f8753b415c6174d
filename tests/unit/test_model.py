"""model: instances, categories and verdicts (pure data)."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_programbench import model
from pytest_programbench.model import AgentRun, Outcome, Selection

from .support import instance


@pytest.mark.parametrize(
    ("score", "category"),
    [
        (1.0, "resolved"),
        (0.9999, "almost"),
        (0.95, "almost"),
        (0.9499, "partial"),
        (1e-9, "partial"),
        (0.0, "zero"),
    ],
)
def test_categories_follow_programbench_thresholds(score: float, category: str) -> None:
    assert model.category_of(score) == category


def test_one_attempt_keeps_the_plain_id_and_directory() -> None:
    inst = instance("a__b.1")
    assert (inst.param_id, inst.rel_dir, inst.image_ref) == (
        "a__b.1",
        "a__b.1",
        "programbench/a__b.1:task_cleanroom_v6",
    )


def test_attempts_get_their_own_id_and_run_directory() -> None:
    inst = instance("a__b.1", attempt=2, attempts=3)
    assert (inst.param_id, inst.rel_dir) == ("a__b.1-attempt2", "attempt-2/a__b.1")


def test_the_prompt_names_the_language_as_people_write_it() -> None:
    assert "was written in C++." in instance(language="cpp").prompt
    assert "was written in zig." in instance(language="zig").prompt


def test_selection_counts_instances_not_attempts() -> None:
    sel = Selection(
        instances=(
            instance("x", language="go", attempt=1, attempts=2),
            instance("x", language="go", attempt=2, attempts=2),
            instance("y", language="c", attempt=1, attempts=2),
            instance("y", language="c", attempt=2, attempts=2),
        ),
        tasks_dir="/t",
        source="s",
        available=10,
    )
    assert (sel.n_instances, sel.counts_by_language()) == (2, {"go": 1, "c": 1})


def test_outcomes_and_agent_runs_cross_processes() -> None:
    out = Outcome.from_score(instance(), score=0.5, n_resolved=1, n_tests=2, findings=[{"code": "x"}])
    assert pickle.loads(pickle.dumps(out)) == out
    assert pickle.loads(pickle.dumps(AgentRun("a", 1.0))) == AgentRun("a", 1.0)


def test_from_score_takes_identity_from_the_instance_and_category_from_the_score() -> None:
    out = Outcome.from_score(
        instance("i", language="rust", attempt=2, attempts=2), score=0.96, n_resolved=24, n_tests=25
    )
    assert (out.instance_id, out.attempt, out.language, out.outcome) == ("i", 2, "rust", "almost")


def test_strict_integrity_counts_a_flagged_verdict_zero_and_keeps_the_official_score() -> None:
    flagged = Outcome.from_score(
        instance(), score=1.0, n_resolved=5, n_tests=5, findings=[{"code": "test_config"}]
    )
    strict = flagged.counted_strictly()
    assert (strict.score, strict.outcome, strict.official_score) == (0.0, "zero", 1.0)
    assert strict.counted_strictly() == strict  # applying it twice changes nothing
    clean = Outcome.from_score(instance(), score=1.0, n_resolved=5, n_tests=5)
    assert clean.counted_strictly() is clean
    assert strict.failure_reason(1.0).startswith(
        "counted 0 under --pb-integrity strict (official score 1.00, 5/5"
    )


def test_failure_reason_names_error_code_branch_errors_and_timeouts() -> None:
    base = Outcome.from_score(instance(), score=0.0, n_resolved=0, n_tests=3)
    assert base.failure_reason(1.0) == "score 0.00 (0/3 hidden tests) < 1.00"
    failed = Outcome.from_score(instance(), score=0.0, n_resolved=0, n_tests=3, error_code="compile_failed")
    assert failed.failure_reason(1.0).endswith(": compile_failed")
    branches = Outcome.from_score(
        instance(), score=0.5, n_resolved=1, n_tests=2, branch_errors={"b2": ["x", "y"], "b1": ["z"]}
    )
    assert branches.failure_reason(1.0).endswith("; branch errors b1: z, b2: x,y")
    timed = replace(base, agent=AgentRun("a", 61.0, timed_out=True))
    assert timed.failure_reason(1.0).endswith("; the agent timed out after 61s")


def test_the_agent_run_is_nested_and_flattened_only_when_written_out() -> None:
    run = AgentRun(
        "mini", 2.0, timed_out=False, exit_status="Submitted", steps=3, cost=0.1, reference="exec-only"
    )
    out = Outcome.from_score(instance(), score=1.0, n_resolved=1, n_tests=1, agent=run)
    row = out.to_dict()
    assert {k: row[k] for k in model.AGENT_ROW_KEYS} == {
        "agent": "mini",
        "agent_seconds": 2.0,
        "agent_timed_out": False,
        "agent_exit_status": "Submitted",
        "agent_steps": 3,
        "agent_cost": 0.1,
        "agent_reference": "exec-only",
    }
    assert model.agent_run_of(row) == run
    assert json.loads(json.dumps(row)) == row  # plain JSON, no nested objects


def test_a_verdict_without_an_agent_run_writes_empty_agent_keys() -> None:
    row = Outcome.from_score(instance(), score=1.0, n_resolved=1, n_tests=1).to_dict()
    assert {k: row[k] for k in model.AGENT_ROW_KEYS} == model.NO_AGENT_ROW
    assert model.agent_run_of(row) is None


def test_an_agent_run_read_back_from_disk_is_checked() -> None:
    row = {"agent": "x", "agent_seconds": 1.5, "agent_steps": "many", "agent_cost": 10**400, "agent_odd": 1}
    assert model.agent_run_of(row) == AgentRun("x", 1.5)
    assert model.agent_run_of({"agent": 3}) is None


def test_an_error_is_a_verdict_of_the_same_shape_that_counts_zero() -> None:
    err = Outcome.error(instance("i", attempt=2, attempts=2), "image_missing", "no image; pull it")
    scored = Outcome.from_score(instance("i"), score=1.0, n_resolved=1, n_tests=1)
    assert (err.outcome, err.score, err.n_tests, err.error_code, err.message, err.attempt) == (
        model.ERROR,
        0.0,
        0,
        "image_missing",
        "no image; pull it",
        2,
    )
    assert list(err.to_dict()) == list(scored.to_dict())


def test_a_submission_from_a_conftest_override_may_be_a_bare_path(tmp_path: Path) -> None:
    path = tmp_path / "submission.tar.gz"
    assert model.Submission.of(path) == model.Submission(path)
    assert model.Submission.of(str(path)) == model.Submission(path)
    ours = model.Submission(path, AgentRun("a", 1.0))
    assert model.Submission.of(ours) is ours


def test_the_vocabularies_agree() -> None:
    assert set(model.LANGUAGE_ALIASES.values()) == set(model.LANGUAGES) == set(model.LANGUAGE_NAMES)
    assert (*model.CATEGORIES, model.ERROR, model.NOT_RUN) == model.OUTCOMES
    assert set(model.LETTERS) == set(model.CATEGORIES)
    assert {model.category_of(s) for s in (0.0, 0.5, 0.97, 1.0)} == set(model.CATEGORIES)
