"""Replay scoring on the real engine, checked against programbench's own batch evaluator.

Every kind of self-test submission (correct, partial, compile failure, ...) is scored
twice in the same test run: by a pytest-programbench session, and by
``programbench.eval.eval_batch._evaluate_instance``, the function behind
``programbench eval``. Scores, counts and error codes must be equal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import clone_selftest, programbench_eval, session_command

from pytest_programbench import selftest
from pytest_programbench.engine.containers import Engine

KINDS = list(selftest.SUBMISSION_KINDS)
CPUS = str(min(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class Spread:
    tasks: Path
    blobs: Path
    runs: Path
    ids: dict[str, str]  # kind -> instance id


@pytest.fixture(scope="module")
def spread(
    engine: Engine, selftest_image: str, reference_executable: bytes, tmp_path_factory: pytest.TempPathFactory
) -> Spread:
    root = tmp_path_factory.mktemp("spread")
    tasks, blobs, ids = clone_selftest(engine, root, KINDS)
    runs = root / "runs"
    for kind, iid in zip(KINDS, ids, strict=True):
        selftest.write_submission(kind, runs / iid, reference_executable)
    return Spread(tasks, blobs, runs, dict(zip(KINDS, ids, strict=True)))


@pytest.fixture(scope="module")
def official(spread: Spread, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What `programbench eval` computes for each submission, via its own batch function."""
    out = tmp_path_factory.mktemp("official")
    found = programbench_eval(
        spread.tasks, spread.blobs, spread.runs, out, spread.ids.values(), cpus=int(CPUS)
    )
    return {kind: found[iid] for kind, iid in spread.ids.items()}


def options(spread: Spread, root: Path) -> list[str]:
    """A replay of the spread's submissions, its run in ``root/out`` and its report ``root/report.json``."""
    return [
        f"--pb-tasks-dir={spread.tasks}",
        f"--pb-submissions={spread.runs}",
        f"--pb-blob-dir={spread.blobs}",
        f"--pb-output={root / 'out'}",
        f"--pb-report={root / 'report.json'}",
        f"--pb-cpus={CPUS}",
        "--pb-pull=never",
    ]


def rows_of(root: Path) -> dict[str, Any]:
    return {row["instance_id"]: row for row in json.loads((root / "report.json").read_text())["instances"]}


def run_session(
    pytester: pytest.Pytester, spread: Spread, *args: str
) -> tuple[pytest.RunResult, dict[str, Any]]:
    result = pytester.runpytest_subprocess(*options(spread, pytester.path), *args)
    return result, rows_of(pytester.path)


@dataclass(frozen=True)
class Parallel:
    output: pytest.LineMatcher
    ret: int
    rows: dict[str, Any]
    out: Path


@pytest.fixture(scope="module")
def parallel(spread: Spread, tmp_path_factory: pytest.TempPathFactory) -> Parallel:
    """The ``-n 2`` session over every kind, once for the module's tests on a worker: the parity
    test reads it, the single-process test compares a serial session with it."""
    root = tmp_path_factory.mktemp("parallel")
    done = subprocess.run(
        session_command(*options(spread, root), "-n", "2"),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    said = pytest.LineMatcher((done.stdout + done.stderr).splitlines())
    return Parallel(said, done.returncode, rows_of(root), root / "out")


def test_every_submission_kind_scores_like_programbench_eval(
    parallel: Parallel, spread: Spread, official: dict[str, Any]
) -> None:
    result, rows = parallel.output, parallel.rows
    for kind, iid in spread.ids.items():
        ours, theirs = rows[iid], official[kind]
        if kind == "not_gzip":
            # The evaluator crashes on it (RuntimeError, scored 0): the submission's own fault, a
            # 0 as there, under a code that says so (tests/test_archive_faults.py has the rest).
            assert (theirs.error_code, theirs.score, theirs.n_tests) == ("RuntimeError", 0.0, 0)
            assert (ours["outcome"], ours["error_code"], ours["score"]) == ("zero", "invalid_submission", 0.0)
            continue
        assert (ours["score"], ours["n_resolved"], ours["n_tests"], ours["error_code"]) == (
            theirs.score,
            theirs.n_resolved,
            theirs.n_tests,
            theirs.error_code,
        ), kind
        assert (theirs.n_resolved, theirs.n_tests, theirs.error_code) == selftest.EXPECTED[kind], kind
    # The integrity audit: no finding on the honest kinds, nor on those the evaluator itself
    # defeats (it deletes a vendored reference binary and a shipped ./executable before compiling).
    assert {k: rows[iid].get("findings", []) for k, iid in spread.ids.items()} == {k: [] for k in KINDS}
    assert rows[spread.ids["correct"]]["outcome"] == "resolved"
    assert rows[spread.ids["partial"]]["outcome"] == "partial"
    # Listed in tests.json's order, not results.xml's: that one depends on which xdist worker
    # of a scoring container finished first (its file order at one worker: test_sub first).
    failed = {b: d.get("failed") for b, d in rows[spread.ids["partial"]]["hidden_tests"].items()}
    assert failed == {
        "4d9e2a61c0b7": ["eval.tests.test_arith.test_chain", "eval.tests.test_arith.test_sub"],
        "8b3f0c5e7a12": ["eval.tests.test_stack.test_dup_swap_drop"],
    }
    zeros = {"compile_failure", "no_compile_sh", "smuggled_executable", "reference_copy", "empty", "not_gzip"}
    assert {k for k in KINDS if rows[spread.ids[k]]["outcome"] == "zero"} == zeros
    result.fnmatch_lines(["*1 resolved, 1 partial, 6 zero*"])
    result.fnmatch_lines(
        [
            "*= ProgramBench =*",
            f"{spread.ids['partial']}*0.83*15/18*partial*score 0.83 (15/18 hidden tests) < 1.00*",
        ]
    )
    not_gzip = spread.ids["not_gzip"]
    result.fnmatch_lines([f"*{not_gzip}*invalid_submission (submission *the file is not gzip data*"])
    assert parallel.ret == pytest.ExitCode.TESTS_FAILED
    for iid in spread.ids.values():
        if iid != spread.ids["not_gzip"]:
            assert (parallel.out / iid / f"{iid}.eval.json").is_file()
            assert (parallel.out / iid / "submission.tar.gz").is_file()


@pytest.mark.pytest_surface
def test_single_process_gives_the_same_results(
    pytester: pytest.Pytester, spread: Spread, parallel: Parallel
) -> None:
    # A copy of the -n 2 session's run directory: --pb-force, or the serial session would reuse
    # its verdicts.
    shutil.copytree(parallel.out, pytester.path / "out")
    _, serial = run_session(pytester, spread, "-p", "no:xdist", "--pb-force")
    assert not any(r.get("reused") for r in serial.values())
    # not_gzip has no eval.json to rescore (invalid_submission: a 0 without one, as programbench eval)
    assert {r["rescored"] for r in serial.values() if r["error_code"] != "invalid_submission"} == {"full"}
    strip = ("eval_seconds", "rescored", "rescore_reason")

    def kept(rows: dict[str, Any], run_dir: Path) -> Any:  # paths in the run directory, relative to it
        text = json.dumps({k: {f: v for f, v in r.items() if f not in strip} for k, r in rows.items()})
        return json.loads(text.replace(str(run_dir), "<run directory>"))

    assert kept(parallel.rows, parallel.out) == kept(serial, pytester.path / "out")


def test_threshold_lets_a_partial_submission_pass(pytester: pytest.Pytester, spread: Spread) -> None:
    result, rows = run_session(pytester, spread, "-k", "partial", "--pb-threshold=0.8")
    assert rows[spread.ids["partial"]]["score"] == pytest.approx(15 / 18)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*1 partial*"])


def test_branch_workers_score_alike_and_share_the_engines_cpus(
    pytester: pytest.Pytester, spread: Spread, engine: Engine
) -> None:
    _, rows = run_session(pytester, spread, "-k", "partial", "--pb-branch-workers=2")
    ours = rows[spread.ids["partial"]]
    assert (ours["n_resolved"], ours["n_tests"], ours["error_code"]) == selftest.EXPECTED["partial"]
    # Two branches at once: each scoring container gets half the engine, at most --pb-cpus.
    pytester.makeconftest(
        "import pytest\n"
        "from pytest_programbench.model import Outcome\n"
        "@pytest.fixture\n"
        "def pb_outcome(pb_instance, pb_scoring_cpus):\n"
        "    return Outcome.from_score(pb_instance, score=pb_scoring_cpus, n_resolved=0, n_tests=0)\n"
    )
    _, rows = run_session(pytester, spread, "-k", "partial", "--pb-branch-workers=2", "--pb-force")
    assert rows[spread.ids["partial"]]["score"] == max(1, min(int(CPUS), engine.cpu_count() // 2))
