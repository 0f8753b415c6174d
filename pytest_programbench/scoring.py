"""Score: hand a submission to ProgramBench's own evaluator and read its verdict.

The official ``programbench.eval.eval.Evaluator`` is the grader of record. We call it
the way ``programbench.eval.eval_batch`` does (active branches, tests by branch,
ignored tests and branches, the gold binary's hashes, image name and tag, branch
workers and retries), write its full result as ``<id>.eval.json``, and take the score
the way ``programbench info`` does. No compile, branch or JUnit logic lives here.

A rerun converges like ``programbench eval`` without ``--force``: eval_batch's own
``get_branches_to_eval`` names the branches an existing eval.json still needs, those
alone are evaluated and merged into it as eval_batch merges them, and an instance it
would skip is summarised by its own ``_summary_from_existing``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_programbench import files
from pytest_programbench.errors import EvaluatorCrashed
from pytest_programbench.model import Instance, Outcome
from pytest_programbench.tasks import load_tests

if TYPE_CHECKING:
    from programbench.eval.eval import EvaluationResult
    from programbench.eval.eval_batch import InstanceEvalSummary


def eval_json_path(instance_dir: Path, instance_id: str) -> Path:
    return instance_dir / f"{instance_id}.eval.json"


def _tests_by_branch(task: dict[str, Any], branches: list[str]) -> dict[str, list[str]]:
    data = task.get("branches", {})
    return {b: data[b]["tests"] for b in branches if b in data}


def branches_to_rescore(eval_json: Path, task: dict[str, Any]) -> list[str]:
    """The branches ``programbench eval`` (no ``--force``) would evaluate again; [] means it skips."""
    from programbench.eval.eval_batch import get_branches_to_eval
    from programbench.utils.load_data import get_active_branches, get_ignored_tests

    active = get_active_branches(task)
    return get_branches_to_eval(
        eval_json=eval_json,
        all_test_branches=active,
        tests_by_branch=_tests_by_branch(task, active),
        ignored_tests=get_ignored_tests(task),
    )


def score_submission(
    instance: Instance,
    submission: Path,
    *,
    blob_dir: Path,
    instance_dir: Path,
    cpus: int,
    branch_workers: int = 1,
    branch_retries: int = 1,
    task: dict[str, Any] | None = None,
    progress: Callable[[str], object] | None = None,
    branches: list[str] | None = None,
    merge_into: Path | None = None,
) -> Outcome:
    """Compile and test ``submission`` in fresh cleanroom containers; write eval.json.

    ``branches`` (default: every active one) are the branches to test; ``merge_into``,
    the eval.json they complete, takes the new result merged into it.
    """
    from programbench.eval.eval import EvaluationResult
    from programbench.utils.load_data import get_active_branches, get_ignored_branches, get_ignored_tests

    task = task if task is not None else load_tests(instance)
    active = get_active_branches(task)
    to_test = branches if branches is not None else active
    evaluator = _evaluator_class(progress, len(to_test))(
        image_name=instance.image,
        solution_branch="submission",
        submission_archive=submission,
        blob_dir=blob_dir,
        tests_branches=to_test,
        remove_hashes=task.get("eval_clean_hashes", []),
        image_tag=instance.image_tag,
        tests_by_branch=_tests_by_branch(task, to_test),
        ignored_tests=get_ignored_tests(task),
        ignored_branches=get_ignored_branches(task),
        instance_id=instance.instance_id,
        docker_cpus=cpus,
        branch_workers=branch_workers,
        branch_retries=branch_retries,
    )
    started = time.monotonic()
    try:
        result = evaluator.run()
    except Exception as exc:  # the evaluator only catches its own step errors
        raise EvaluatorCrashed(instance.instance_id, f"{type(exc).__name__}: {exc}") from exc
    elapsed = time.monotonic() - started
    if merge_into is not None and not result.error_code:
        existing = EvaluationResult.model_validate_json(merge_into.read_text())
        result = merge_like_eval_batch(existing, result, active)

    target = eval_json_path(instance_dir, instance.instance_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(target, result.model_dump_json(indent=2))
    return outcome_from_result(instance, result, task=task, eval_seconds=elapsed)


def merge_like_eval_batch(
    existing: EvaluationResult, result: EvaluationResult, all_test_branches: list[str]
) -> EvaluationResult:
    """Merge freshly evaluated branches into an existing result, as ``programbench eval`` does.

    eval_batch keeps this merge inline in ``_evaluate_instance`` (programbench 1.2.x),
    so it is copied here line for line; tests/test_resume.py checks that the files
    both tools write from the same starting run directory are equal.
    """
    from programbench.eval.eval import EvaluationResult

    wanted = set(all_test_branches)
    new_branch_set = set(result.test_branches)
    merged_branch_errors = {
        b: e for b, e in existing.test_branch_errors.items() if b in wanted and b not in new_branch_set
    }
    merged_branch_errors.update(result.test_branch_errors)
    old_warnings = [
        w
        for w in existing.warnings
        if not any(f"branch {b}" in w or f"Branch {b}" in w for b in new_branch_set)
    ]
    return EvaluationResult(
        test_results=[
            t for t in existing.test_results if t.branch in wanted and t.branch not in new_branch_set
        ]
        + list(result.test_results),
        log=existing.log + result.log,
        solution_branch=result.solution_branch or existing.solution_branch,
        test_branches=all_test_branches,
        test_branch_errors=merged_branch_errors,
        executable_hash=result.executable_hash,
        warnings=old_warnings + result.warnings,
    )


def summarise_existing(instance: Instance, eval_json: Path, *, task: dict[str, Any]) -> Outcome:
    """Score an eval.json ``programbench eval`` would skip, the way it does.

    eval_batch's ``_summary_from_existing`` re-derives the result from the JUnit XML in
    its log (with the current tests.json) and rewrites eval.json when it can; it runs
    on a copy here so the rewrite replaces the file whole or not at all.
    """
    from programbench.eval.eval_batch import _summary_from_existing
    from programbench.utils.load_data import get_active_branches, get_ignored_branches, get_ignored_tests

    active = get_active_branches(task)
    copy = files.partial_path(eval_json)
    copy.write_bytes(eval_json.read_bytes())
    try:
        summary = _summary_from_existing(
            instance.instance_id,
            copy,
            get_ignored_tests(task),
            current_branches=active,
            tests_by_branch=_tests_by_branch(task, active),
            ignored_branches=get_ignored_branches(task),
        )
        if copy.read_bytes() != eval_json.read_bytes():
            copy.replace(eval_json)
    finally:
        copy.unlink(missing_ok=True)
    return outcome_from_summary(instance, summary)


def _evaluator_class(progress: Callable[[str], object] | None, n_branches: int) -> Any:
    """The official Evaluator, telling ``progress`` when it compiles and runs each branch.

    Only observes: each override calls the original unchanged. Should a programbench
    release rename these methods, the evaluator still runs and progress is just quieter.
    """
    from programbench.eval.eval import Evaluator

    if progress is None:
        return Evaluator
    report: Callable[[str], object] = progress

    numbers = itertools.count(1)  # branches run in a thread pool; next() on a count is atomic

    class ObservedEvaluator(Evaluator):
        def _compile_executable(self, *args: Any, **kwargs: Any) -> Any:
            report("scoring: compiling the submission")
            return super()._compile_executable(*args, **kwargs)

        def _evaluate_branch(self, branch: str, *args: Any, **kwargs: Any) -> Any:
            report(f"scoring: testing branch {next(numbers)}/{n_branches} ({branch})")
            return super()._evaluate_branch(branch, *args, **kwargs)

    return ObservedEvaluator


def outcome_from_eval_json(
    instance: Instance, eval_json: Path, *, task: dict[str, Any] | None = None, eval_seconds: float = 0.0
) -> Outcome:
    """Score an evaluator result file exactly as ``programbench info`` does."""
    from programbench.eval.eval import EvaluationResult

    result = EvaluationResult.model_validate_json(eval_json.read_text())
    return outcome_from_result(instance, result, task=task, eval_seconds=eval_seconds)


def outcome_from_result(
    instance: Instance,
    result: EvaluationResult,
    *,
    task: dict[str, Any] | None = None,
    eval_seconds: float = 0.0,
) -> Outcome:
    """Score an evaluator result exactly as ``programbench info`` does."""
    from programbench.eval.eval_batch import InstanceEvalSummary
    from programbench.utils.load_data import get_active_branches, get_ignored_tests

    task = task if task is not None else load_tests(instance)
    result = result.for_branches(get_active_branches(task)).without_ignored(get_ignored_tests(task))
    summary = InstanceEvalSummary.from_eval_result(instance.instance_id, result)
    return outcome_from_summary(instance, summary, eval_seconds=eval_seconds)


def outcome_from_summary(
    instance: Instance, summary: InstanceEvalSummary, *, eval_seconds: float = 0.0
) -> Outcome:
    return Outcome.from_score(
        instance,
        score=summary.score,
        n_resolved=summary.n_resolved,
        n_tests=summary.n_tests,
        error_code=summary.error_code,
        branch_errors={b: list(codes) for b, codes in summary.test_branch_errors.items()},
        eval_seconds=eval_seconds,
    )
