"""model: instances, categories and verdicts (pure data)."""

from __future__ import annotations

import pickle

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
    assert (out.instance_id, out.attempt, out.language, out.category) == ("i", 2, "rust", "almost")


def test_strict_integrity_counts_a_flagged_verdict_zero_and_keeps_the_official_score() -> None:
    flagged = Outcome.from_score(
        instance(), score=1.0, n_resolved=5, n_tests=5, findings=[{"code": "test_config"}]
    )
    strict = flagged.counted_strictly()
    assert (strict.score, strict.category, strict.official_score) == (0.0, "zero", 1.0)
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
    timed = base.with_agent(AgentRun("a", 61.0, timed_out=True))
    assert timed.failure_reason(1.0).endswith("; the agent timed out after 61s")


def test_with_agent_copies_the_run_into_the_verdict() -> None:
    run = AgentRun("mini", 2.0, timed_out=False, exit_status="Submitted", steps=3, cost=0.1)
    out = Outcome.from_score(instance(), score=1.0, n_resolved=1, n_tests=1).with_agent(run)
    assert (out.agent, out.agent_seconds, out.agent_exit_status, out.agent_steps, out.agent_cost) == (
        "mini",
        2.0,
        "Submitted",
        3,
        0.1,
    )


def test_garbage_agent_figures_are_dropped_on_the_verdict_too() -> None:
    out = Outcome.from_score(
        instance(), score=1.0, n_resolved=1, n_tests=1, agent_steps=-2, agent_cost=float("nan")
    )
    assert (out.agent_steps, out.agent_cost) == (None, None)
