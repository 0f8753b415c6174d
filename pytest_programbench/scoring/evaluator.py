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

Where the evaluator raises instead of scoring, ``programbench eval`` records a 0 and
no eval.json; so do we, under a stable code saying whose fault it is: the submission's
(``invalid_submission``: an archive the task image's tar refuses, found before any
container starts when it can be) or the evaluator's own limits (``evaluator_crashed``:
step output it cannot decode). Each step's output is kept as its first and last MiB:
the official tool keeps all of it, in memory and in eval.json (a 500 MB build log took
2.4 GB), and no score depends on it.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import io
import itertools
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_programbench import files
from pytest_programbench.errors import EvaluatorCrashed, HiddenTestsBroken, SubmissionInvalid
from pytest_programbench.model import Instance, Outcome
from pytest_programbench.selection.tasks import load_tests

if TYPE_CHECKING:
    from programbench.eval.eval import EvaluationResult
    from programbench.eval.eval_batch import InstanceEvalSummary

    from pytest_programbench.engine.containers import Engine
    from pytest_programbench.scoring.integrity import Audit
    from pytest_programbench.scoring.verdict import ScoreRequest


log = logging.getLogger("pytest_programbench")

#: Verdicts the evaluator gave no eval.json for (``programbench eval`` writes none either): 0,
#: and nothing for a rerun to build on.
NO_EVAL_JSON = frozenset({SubmissionInvalid.code, EvaluatorCrashed.code})


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


def score_submission(request: ScoreRequest) -> Outcome:
    """Compile and test the request's submission in fresh cleanroom containers; write eval.json.

    The archive is read to its end first (submissions.check_archive, ``max_unpacked``
    bytes at most): one the task image's tar would refuse scores 0 as ``invalid_submission``
    without a container started.

    The request's ``branches`` are tested and, with ``merge_into``, merged into that
    eval.json. A pinned ``image`` means a tag re-pointed mid-run cannot change what is
    scored. With an ``audit``, its findings travel with the outcome and go to
    ``<id>.integrity.json``. The ``labels`` let a sweep find the evaluator's containers
    (and the image it commits) after a crash. With an ``engine``, an engine that stopped
    answering while the evaluator worked is EngineUnavailable, not a score.
    """
    from programbench.eval.eval import EvaluationResult
    from programbench.utils.load_data import get_active_branches, get_ignored_branches, get_ignored_tests

    from pytest_programbench.scoring.submissions import check_archive

    instance, submission, blob_dir = request.instance, request.submission, request.blob_dir
    audit, engine, image, instance_dir = request.audit, request.engine, request.image, request.instance_dir
    try:
        check_archive(submission, request.max_unpacked)
    except SubmissionInvalid as exc:
        return unscored(instance, exc.code, exc.message)
    task = request.task if request.task is not None else load_tests(instance)
    active = get_active_branches(task)
    to_test = list(request.branches) if request.branches is not None else active
    # The evaluator runs f"{image_name}:{image_tag}"; "sha256" and the hex id make an image id.
    image_name, _, image_tag = (image or instance.image_ref).rpartition(":")
    if audit is not None:
        audit.task_image(image or instance.image_ref)  # the reference's content, the toolchain layout
        audit.submission(submission)
    evaluator = evaluator_class()(
        cli=container_cli(engine, request.labels, request.memory),
        observer=Observer(request.progress, len(to_test), audit),
        image_name=image_name,
        solution_branch="submission",
        submission_archive=submission,
        blob_dir=blob_dir,
        tests_branches=to_test,
        remove_hashes=task.get("eval_clean_hashes", []),
        image_tag=image_tag,
        tests_by_branch=_tests_by_branch(task, to_test),
        ignored_tests=get_ignored_tests(task),
        ignored_branches=get_ignored_branches(task),
        instance_id=instance.instance_id,
        docker_cpus=request.cpus,
        branch_workers=request.branch_workers,
        branch_retries=request.branch_retries,
    )
    started = time.monotonic()
    try:
        result = run_evaluator(evaluator, instance, engine)
    except EvaluatorCrashed as crashed:
        # Whose fault the crash is, and what to do, is read from the exception the evaluator raised.
        if not isinstance(crashed.__cause__, Exception):
            raise
        return _crashed(instance, submission, blob_dir, crashed.__cause__)
    elapsed = time.monotonic() - started
    if request.merge_into is not None and not result.error_code:
        existing = EvaluationResult.model_validate_json(request.merge_into.read_text())
        result = merge_like_eval_batch(existing, result, active)

    target = eval_json_path(instance_dir, instance.instance_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(target, result.model_dump_json(indent=2), durable=True)
    outcome = outcome_from_result(instance, result, task=task, eval_seconds=elapsed)
    if audit is None:
        return outcome
    # The whole log, merged or not: a rerun's results.xml is checked with the earlier ones.
    audit.evaluator_log(result.log)
    findings = audit.dicts()
    write_integrity(instance_dir, instance.instance_id, findings, audit.errors, image, audit.not_checked)
    return replace(outcome, findings=findings)


def unscored(instance: Instance, code: str, message: str) -> Outcome:
    """A 0 where ``programbench eval`` records one without an eval.json (it crashed): the cause named."""
    return Outcome.from_score(instance, score=0.0, n_resolved=0, n_tests=0, error_code=code, message=message)


#: What the evaluator's ContainerEnvironment raises when the container's ``tar -x`` fails.
_TAR_REFUSED = "tar stream into container failed"


def _crashed(instance: Instance, submission: Path, blob_dir: Path, exc: Exception) -> Outcome:
    """The evaluator raised (``programbench eval`` then scores the instance 0): whose fault, and what to do.

    Raises the harness errors (a broken hidden-test archive, anything unknown), returns the 0
    of a submission the task image's tar refused or of output the evaluator cannot decode.
    """
    text = str(exc).strip()
    branch = getattr(exc, "pb_branch", None)
    lines = [
        line.strip() for line in text.removeprefix(_TAR_REFUSED).strip(": ").splitlines() if line.strip()
    ]
    # tar's and gzip's own words, not docker's (a container that died under the copy is no archive's fault)
    if isinstance(exc, RuntimeError) and text.startswith(_TAR_REFUSED) and _said_by_tar(lines):
        detail = "; ".join(lines)
        if branch is not None:
            archive = blob_dir / "tests" / f"{branch}.tar.gz"
            raise HiddenTestsBroken(
                instance.instance_id, branch, str(archive), f"the task image's tar: {detail}"
            )
        refused = SubmissionInvalid(str(submission), f"the task image's tar refused it: {detail}")
        return unscored(instance, refused.code, refused.message)
    if isinstance(exc, UnicodeDecodeError):
        step = getattr(exc, "pb_step", "a")
        return unscored(
            instance,
            EvaluatorCrashed.code,
            f"cause: undecodable_output. programbench's evaluator decodes every step's output as text and "
            f"crashed on the {step} step's ({exc.reason}: byte {exc.object[exc.start : exc.start + 1]!r} "
            f"at offset {getattr(exc, 'pb_offset', exc.start)}); `programbench eval` scores this submission "
            "0 too (error code UnicodeDecodeError), so a rerun gives the same. This is the evaluator's "
            "limit, not a fault in the archive: to be scored, the build and the program must print "
            f"{_text_encoding()} only",
        )
    raise EvaluatorCrashed(instance.instance_id, f"{type(exc).__name__}: {text or '(no message)'}") from exc


def _said_by_tar(lines: list[str]) -> bool:
    return any(line.startswith(("tar: ", "gzip: ")) for line in lines)


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


def summarise_existing(
    instance: Instance, eval_json: Path, *, task: dict[str, Any], rewrite: bool = True
) -> Outcome:
    """Score an eval.json ``programbench eval`` would skip, the way it does.

    eval_batch's ``_summary_from_existing`` re-derives the result from the JUnit XML in
    its log (with the current tests.json) and rewrites eval.json when it can; it runs
    on a copy here so the rewrite replaces the file whole or not at all (or, with
    ``rewrite=False``, not at all: a summary that only reads).
    """
    # Private programbench API, used here only (pinned by pyproject's programbench<1.3 and
    # checked by tests/unit/test_private_apis.py): it is what `programbench eval` runs.
    from programbench.eval.eval_batch import _summary_from_existing
    from programbench.utils.load_data import get_active_branches, get_ignored_branches, get_ignored_tests

    active = get_active_branches(task)
    with files.replacing(eval_json, durable=True) as copy:
        copy.write_bytes(eval_json.read_bytes())
        summary = _summary_from_existing(
            instance.instance_id,
            copy,
            get_ignored_tests(task),
            current_branches=active,
            tests_by_branch=_tests_by_branch(task, active),
            ignored_branches=get_ignored_branches(task),
        )
        if not rewrite or copy.read_bytes() == eval_json.read_bytes():
            copy.unlink()  # unchanged (or only read): leave eval.json (and the marker's checksum of it) alone
    return outcome_from_summary(instance, summary)


#: What the docker CLI says when the engine is not there; the evaluator turns it into step failures.
_ENGINE_GONE = ("Cannot connect to the Docker daemon", "Is the docker daemon running")


@dataclass(frozen=True)
class ContainerCli:
    """How one scoring run's containers are started: the CLI the evaluator runs as ``docker``, and
    the ``docker run`` options it adds (labels, memory) to every container.

    Handed to the evaluator per call, never put in programbench's module-level
    ``DOCKER_RUN_ARGS`` or in ``os.environ``, which the prefetch and watchdog threads and
    the other branch workers of this process share.
    """

    executable: str = "docker"
    run_args: tuple[str, ...] = ()


def container_cli(engine: Engine | None, labels: Mapping[str, str], memory: str = "") -> ContainerCli:
    """The CLI that reaches ``engine`` (fleet.evaluator_cli), the options for ``labels`` and ``memory``."""
    from programbench.constants import DOCKER_EXECUTABLE

    from pytest_programbench.engine.fleet import evaluator_cli

    run_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    if memory:
        run_args += ["--memory", memory, "--memory-swap", memory]
    executable = (
        DOCKER_EXECUTABLE if engine is None else evaluator_cli(engine.host, podman=engine.is_podman())
    )
    return ContainerCli(executable, tuple(run_args))


def run_evaluator(evaluator: Any, instance: Instance, engine: Engine | None) -> EvaluationResult:
    """``evaluator.run()``; an engine that stopped answering is EngineUnavailable, a crash is
    EvaluatorCrashed."""
    try:
        result: EvaluationResult = evaluator.run()
    except Exception as exc:  # the evaluator only catches its own step errors
        _check_engine(engine, str(exc))
        raise EvaluatorCrashed(instance.instance_id, f"{type(exc).__name__}: {exc}") from exc
    _check_engine(engine, _failure_text(result))
    return result


def _failure_text(result: EvaluationResult) -> str:
    errors = [e.error_details for branch in result.test_branch_errors.values() for e in branch]
    return "\n".join([result.error_details or "", *errors])


def _check_engine(engine: Engine | None, failure: str) -> None:
    """Raise EngineUnavailable if the engine is gone now, or was while the evaluator worked."""
    if engine is None:
        return
    engine.version()  # raises EngineUnavailable when it does not answer
    if any(phrase in failure for phrase in _ENGINE_GONE):
        from pytest_programbench.errors import EngineUnavailable

        raise EngineUnavailable(
            engine.host, "it stopped answering while the evaluator worked; no score taken"
        )


def integrity_path(instance_dir: Path, instance_id: str) -> Path:
    return instance_dir / f"{instance_id}.integrity.json"


def write_integrity(
    instance_dir: Path,
    instance_id: str,
    findings: list[dict[str, str]],
    errors: list[str],
    image: str | None,
    not_checked: list[str] | None = None,
) -> None:
    """``<id>.integrity.json`` beside eval.json: the audit's findings, what it could not check, the image."""
    import json

    from pytest_programbench.scoring.integrity import CODES

    data = {
        "instance_id": instance_id,
        "image_id": image,
        "findings": findings,
        "codes": {f["code"]: CODES.get(f["code"], "") for f in findings},
        "audit_errors": errors,
        "not_checked": not_checked or [],  # what this engine does not let the audit see
    }
    files.write_text(integrity_path(instance_dir, instance_id), json.dumps(data, indent=2))


class Observer:
    """What watches one scoring run from inside the evaluator: progress lines and the integrity audit.

    Only observes: the evaluator's hooks call the originals unchanged and return what they
    returned; the audit reads containers through the engine and never raises.
    """

    def __init__(
        self, progress: Callable[[str], object] | None = None, n_branches: int = 0, audit: Audit | None = None
    ) -> None:
        self.report: Callable[[str], object] = progress or (lambda line: None)
        self.n_branches = n_branches
        self.audit = audit
        self.numbers = itertools.count(1)  # branches run in a thread pool; next() on a count is atomic
        self.current = threading.local()  # the branch each evaluator thread is testing


@functools.cache
def evaluator_class() -> Any:
    """The official Evaluator, given its CLI and ``docker run`` options per instance, and observed.

    Private programbench API, used here only: the Evaluator's ``_new_env``, ``_compile_executable``,
    ``_run_step``, ``_evaluate_branch``, ``_run_test_branch`` and ``_copy_file_from_container``
    (tests/unit/test_private_apis.py checks they exist, and that our ``_new_env`` starts the
    container the official one would, but for the executable and the extra options). Every
    ``docker`` subprocess programbench runs goes through a ContainerEnvironment's ``executable``
    (run, exec, cp, commit, stop, rm), except the committed image's ``rmi`` at the end of ``run()``,
    which uses the module constant ``DOCKER_EXECUTABLE`` and this process's environment: that call
    may miss an engine other than ours, so ``run()`` removes the image again through ours.
    ContainerEnvironment's ``execute`` is replaced on each container by :func:`bounded_execute`,
    which returns what it returns but keeps only the head and tail of long output. Should a
    programbench release rename these methods, the evaluator still runs and we are just blinder
    (the audit then records nothing for that step).
    """
    from programbench.constants import DOCKER_EXECUTABLE, DOCKER_RUN_ARGS, WORKSPACE_DIR
    from programbench.container import ContainerEnvironment, remove_image
    from programbench.eval.eval import Evaluator

    class EngineContainer(ContainerEnvironment):
        """A container the evaluator starts; reports what it commits, to remove it on the right engine."""

        def __init__(self, *, on_commit: Callable[[str], object], **kwargs: Any) -> None:
            self._on_commit = on_commit
            super().__init__(**kwargs)

        def commit(self, image_ref: str) -> str:
            done = str(super().commit(image_ref))
            self._on_commit(image_ref)
            return done

    class EngineEvaluator(Evaluator):
        def __init__(self, *, cli: ContainerCli, observer: Observer | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.cli = cli
            self.observer = observer or Observer()
            self.committed: list[str] = []

        def container_kwargs(self, image: str, *, serial_pytest: bool = False) -> dict[str, Any]:
            """What the official ``_new_env`` gives ContainerEnvironment (programbench 1.2.x), with our
            executable and our options before its ``--init``."""
            env = {"PYTEST_ADDOPTS": "--max-worker-restart=4"}
            if serial_pytest:
                env["PYTEST_XDIST_AUTO_NUM_WORKERS"] = "1"
            return {
                "image": image,
                "cwd": WORKSPACE_DIR,
                "executable": self.cli.executable,
                "timeout": 600,
                "cpus": self.docker_cpus,
                "env": env,
                "run_args": [*DOCKER_RUN_ARGS, *self.cli.run_args, "--init"],
            }

        def _new_env(self, image: str, *, serial_pytest: bool = False) -> Any:
            kwargs = self.container_kwargs(image, serial_pytest=serial_pytest)
            return EngineContainer(on_commit=self.committed.append, **kwargs)

        def run(self) -> Any:
            try:
                return super().run()
            finally:
                if self.cli.executable != DOCKER_EXECUTABLE:  # else the official rmi reached it
                    for ref in self.committed:
                        remove_image(ref, executable=self.cli.executable)

        def _compile_executable(self, env: Any, *args: Any, **kwargs: Any) -> Any:
            self.observer.report("scoring: compiling the submission")
            done = super()._compile_executable(env, *args, **kwargs)
            if self.observer.audit is not None:
                self.observer.audit.compiled(env.container_id, self.result.executable_hash)
            return done

        def _run_step(self, command: str, *args: Any, **kwargs: Any) -> Any:
            env = kwargs.get("env")
            if env is not None and "execute" not in vars(env):
                env.execute = functools.partial(bounded_execute, env)
            step = kwargs.get("step_name")
            watch: Any = contextlib.nullcontext()
            audit = self.observer.audit
            if audit is not None and step in ("compile", "run_tests"):
                during = "while compile.sh ran" if step == "compile" else (
                    f"while branch {getattr(self.observer.current, 'branch', '')}'s tests ran"
                )  # fmt: skip
                watch = audit.watching(kwargs["env"].container_id, during)
            try:
                with watch:
                    done = super()._run_step(command, *args, **kwargs)
            except UnicodeDecodeError as exc:
                exc.pb_step = step or "a"  # type: ignore[attr-defined]
                raise
            if audit is not None and step == "compile":
                audit.after_compile_step(kwargs["env"].container_id)
            return done

        def _evaluate_branch(self, branch: str, *args: Any, **kwargs: Any) -> Any:
            seen = self.observer
            seen.report(f"scoring: testing branch {next(seen.numbers)}/{seen.n_branches} ({branch})")
            return super()._evaluate_branch(branch, *args, **kwargs)

        def _run_test_branch(self, branch: str, *args: Any, **kwargs: Any) -> Any:
            self.observer.current.branch = branch
            try:
                return super()._run_test_branch(branch, *args, **kwargs)
            except Exception as exc:  # the branch an evaluator crash came from, for the message
                if not hasattr(exc, "pb_branch"):
                    exc.pb_branch = branch  # type: ignore[attr-defined]
                raise

        def _copy_file_from_container(self, *args: Any, **kwargs: Any) -> Any:
            audit = self.observer.audit
            if audit is not None and kwargs.get("step_name") == "results_read":
                branch = getattr(self.observer.current, "branch", "")
                audit.before_results_read(kwargs["env"].container_id, branch)
            return super()._copy_file_from_container(*args, **kwargs)

    return EngineEvaluator


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


#: What each stream of an evaluator step's output keeps: its first and last this many characters.
STEP_OUTPUT_HEAD = STEP_OUTPUT_TAIL = 1 << 20
_PIPE_READ = 1 << 16


def _text_encoding() -> str:
    """The encoding ``subprocess.run(text=True)`` decodes with here (the evaluator's choice)."""
    return io.TextIOWrapper(io.BytesIO()).encoding


class _Stream:
    """One stream of a step's output, decoded as subprocess's text mode decodes it (strictly,
    newlines translated), its head and tail kept and the middle counted."""

    def __init__(self, encoding: str) -> None:
        self._inner = codecs.getincrementaldecoder(encoding)("strict")
        self._decoder = io.IncrementalNewlineDecoder(self._inner, translate=True)
        self.head = ""
        self._tail: list[str] = []
        self._tail_len = 0
        self.cut = 0
        self.error: UnicodeDecodeError | None = None
        self._fed = 0

    def feed(self, data: bytes, final: bool = False) -> None:
        if self.error is not None:
            return
        pending = len(self._inner.getstate()[0])
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            exc.pb_offset = self._fed - pending + exc.start  # type: ignore[attr-defined]
            self.error = exc
            return
        finally:
            self._fed += len(data)
        room = STEP_OUTPUT_HEAD - len(self.head)
        if room > 0:
            self.head += text[:room]
            text = text[room:]
        if text:
            self._tail.append(text)
            self._tail_len += len(text)
            while self._tail_len - len(self._tail[0]) >= STEP_OUTPUT_TAIL:
                self._tail_len -= len(self._tail[0])
                self.cut += len(self._tail.pop(0))

    def text(self) -> str:
        tail = "".join(self._tail)
        extra = len(tail) - STEP_OUTPUT_TAIL
        if extra > 0:
            tail, self.cut = tail[extra:], self.cut + extra
            self._tail, self._tail_len = [tail], len(tail)
        if not self.cut:
            return self.head + tail
        return f"{self.head}\n[... {self.cut} characters of output cut by pytest-programbench ...]\n{tail}"


def _pump(pipe: Any, stream: _Stream) -> None:
    with contextlib.suppress(OSError, ValueError):
        for chunk in iter(lambda: pipe.read1(_PIPE_READ), b""):
            stream.feed(chunk)
    stream.feed(b"", final=True)


def bounded_execute(env: Any, command: str, *, timeout: int | None = None) -> dict[str, Any]:
    """``ContainerEnvironment.execute`` (programbench 1.2), with each stream's output bounded.

    The same ``docker exec -w <cwd> <id> bash -lc <command>``, the same timeout (on the
    command's end and its output's) and sweep after it, the same decoding: output that
    does not decode raises the UnicodeDecodeError ``subprocess.run(text=True)`` raises
    there. Only the memory differs: each of stdout and stderr keeps its first and last
    MiB, and the note between them says how much was cut, where the original held it all.
    """
    timeout = timeout or env.default_timeout
    cmd = [env.executable, "exec", "-w", env.cwd, env.container_id, "bash", "-lc", command]
    encoding = _text_encoding()
    streams = (_Stream(encoding), _Stream(encoding))
    deadline = time.monotonic() + timeout
    with subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        pumps = [
            threading.Thread(target=_pump, args=(pipe, stream), daemon=True)
            for pipe, stream in zip((proc.stdout, proc.stderr), streams, strict=True)
        ]
        for pump in pumps:
            pump.start()
        try:
            for pump in pumps:
                pump.join(max(0.0, deadline - time.monotonic()))
            if any(pump.is_alive() for pump in pumps):
                raise subprocess.TimeoutExpired(cmd, timeout)
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            _sweep_after_timeout(env)
            return {"output": "", "returncode": -1, "exception_info": f"Command timed out after {timeout}s"}
    for stream in streams:
        if stream.error is not None:
            raise stream.error
    return {
        "output": streams[0].text() + streams[1].text(),
        "returncode": proc.returncode,
        "exception_info": "",
    }


def _sweep_after_timeout(env: Any) -> None:
    """What ContainerEnvironment.execute does after a timeout: SIGKILL all but PID 1 in the container."""
    try:
        subprocess.run(
            [
                env.executable,
                "exec",
                env.container_id,
                "bash",
                "-c",
                "kill -KILL -1 2>/dev/null; sleep 0.2; kill -KILL -1 2>/dev/null; true",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except Exception as exc:
        log.warning("in-container teardown after execute() timeout failed: %s", exc)
