"""Score: hand a submission to ProgramBench's own evaluator and read its verdict.

The official ``programbench.eval.eval.Evaluator`` is the grader of record. We call it
the way ``programbench.eval.eval_batch`` does (active branches, tests by branch,
ignored tests and branches, the gold binary's hashes, image name and tag, branch
retries), write its full result as ``<id>.eval.json``, and take the score the way
``programbench info`` does. No compile, branch or JUnit logic lives here.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_programbench.errors import EvaluatorCrashed
from pytest_programbench.model import Instance, Outcome
from pytest_programbench.tasks import load_tests

if TYPE_CHECKING:
    from programbench.eval.eval import EvaluationResult


def eval_json_path(instance_dir: Path, instance_id: str) -> Path:
    return instance_dir / f"{instance_id}.eval.json"


def score_submission(
    instance: Instance,
    submission: Path,
    *,
    blob_dir: Path,
    instance_dir: Path,
    cpus: int,
    branch_retries: int = 1,
    task: dict[str, Any] | None = None,
    progress: Callable[[str], object] | None = None,
) -> Outcome:
    """Compile and test ``submission`` in fresh cleanroom containers; write eval.json."""
    from programbench.utils.load_data import get_active_branches, get_ignored_branches, get_ignored_tests

    task = task if task is not None else load_tests(instance)
    active = get_active_branches(task)
    branches = task.get("branches", {})
    ignored = get_ignored_tests(task)
    evaluator = _evaluator_class(progress, len(active))(
        image_name=instance.image,
        solution_branch="submission",
        submission_archive=submission,
        blob_dir=blob_dir,
        tests_branches=active,
        remove_hashes=task.get("eval_clean_hashes", []),
        image_tag=instance.image_tag,
        tests_by_branch={b: branches[b]["tests"] for b in active if b in branches},
        ignored_tests=ignored,
        ignored_branches=get_ignored_branches(task),
        instance_id=instance.instance_id,
        docker_cpus=cpus,
        branch_retries=branch_retries,
    )
    started = time.monotonic()
    try:
        result = evaluator.run()
    except Exception as exc:  # the evaluator only catches its own step errors
        raise EvaluatorCrashed(instance.instance_id, f"{type(exc).__name__}: {exc}") from exc
    elapsed = time.monotonic() - started

    target = eval_json_path(instance_dir, instance.instance_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".json.partial")
    partial.write_text(result.model_dump_json(indent=2))
    partial.replace(target)  # never leave a half-written eval.json that looks finished
    return outcome_from_result(instance, result, task=task, eval_seconds=elapsed)


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
    return Outcome.from_score(
        instance,
        score=summary.score,
        n_resolved=summary.n_resolved,
        n_tests=summary.n_tests,
        error_code=summary.error_code,
        branch_errors={b: list(codes) for b, codes in summary.test_branch_errors.items()},
        eval_seconds=eval_seconds,
    )
