"""Replay sessions: what users meet when a run directory or its inputs are incomplete."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from fakehub import FakeHub
from junitparser import JUnitXml, Properties, Property
from support import clone_selftest

from pytest_programbench import selftest
from pytest_programbench.engine.containers import Engine

CPUS = str(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def pair(
    engine: Engine, selftest_image: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, list[str]]:
    """Two instances of the self-test task; only the first has a (correct) submission."""
    root = tmp_path_factory.mktemp("pair")
    tasks, blobs, ids = clone_selftest(engine, root, ["alpha", "beta"])
    selftest.write_submission("correct", root / "runs" / ids[0])
    return tasks, blobs, ids


def replay(pytester: pytest.Pytester, tasks: Path, blobs: Path | None, *args: str) -> pytest.RunResult:
    runs = tasks.parent / "runs"
    opts = [f"--pb-tasks-dir={tasks}", f"--pb-submissions={runs}", f"--pb-cpus={CPUS}", "--pb-pull=never"]
    if blobs is not None:
        opts.append(f"--pb-blob-dir={blobs}")
    return pytester.runpytest_subprocess(*opts, f"--pb-output={pytester.path / 'out'}", *args)


def test_replay_alone_selects_what_the_run_holds(pytester: pytest.Pytester, pair: Any) -> None:
    tasks, _, ids = pair
    result = pytester.runpytest_subprocess(
        f"--pb-submissions={tasks.parent / 'runs'}", f"--pb-tasks-dir={tasks}", "--collect-only", "-q"
    )
    # --pb-tasks-dir is a selection of its own, so both are selected here; without it,
    # only ids with a submission are (the default task set has none of ours).
    assert len([line for line in result.outlines if line.startswith("programbench::")]) == 2
    alone = pytester.runpytest_subprocess(f"--pb-submissions={tasks.parent / 'runs'}", "--collect-only")
    alone.stdout.fnmatch_lines(
        [
            "programbench: no instance matches with a submission in *runs (of 200 in the programbench package)*",  # noqa: E501
            "*1 submission(s) in the run directory are not tasks of the programbench package "
            f"(see --pb-tasks-dir): {ids[0]}",
        ]
    )
    assert alone.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_selected_instance_without_submission_is_an_error(pytester: pytest.Pytester, pair: Any) -> None:
    tasks, blobs, ids = pair
    result = replay(pytester, tasks, blobs, "-n", "2")
    result.stdout.fnmatch_lines(["*1 resolved, 1 error*"])
    result.stdout.fnmatch_lines(
        [f"*{ids[1]}: no submission for {ids[1]} in *runs (expected {ids[1]}/submission.tar.gz)*"]
    )


def test_unselected_submissions_are_listed_in_the_header(pytester: pytest.Pytester, pair: Any) -> None:
    tasks, blobs, ids = pair
    result = replay(pytester, tasks, blobs, f"--pb-instance={ids[1]}", "--collect-only")
    result.stdout.fnmatch_lines(
        [f"programbench: 1 submission(s) in the run directory not selected: {ids[0]}"]
    )


def test_missing_hidden_test_archive_names_instance_and_branch(
    pytester: pytest.Pytester, pair: Any, tmp_path: Path
) -> None:
    tasks, blobs, ids = pair
    partial_blobs = tmp_path / "blobs"
    shutil.copytree(blobs, partial_blobs)
    branch = sorted((partial_blobs / ids[0] / "tests").glob("*.tar.gz"))[0]
    branch.unlink()
    result = replay(pytester, tasks, partial_blobs, f"--pb-instance={ids[0]}")
    result.assert_outcomes(errors=1)
    name = branch.name.removesuffix(".tar.gz")
    result.stdout.fnmatch_lines(
        [f"*hidden-test archive for {ids[0]} branch {name} not found in {partial_blobs}*"]
    )


def test_junit_carries_the_verdict(pytester: pytest.Pytester, pair: Any) -> None:
    tasks, blobs, ids = pair
    junit = pytester.path / "junit.xml"
    replay(pytester, tasks, blobs, "-n", "2", f"--junitxml={junit}")
    cases = {case.name: case for suite in JUnitXml.fromfile(str(junit)) for case in suite}
    props = {
        name: {
            p.name: p.value for group in case.iterchildren(Properties) for p in group.iterchildren(Property)
        }
        for name, case in cases.items()
    }
    solved = props[f"instance[{ids[0]}]"]
    assert solved["pb_score"] == "1.0" and solved["pb_outcome"] == "resolved"
    assert (solved["pb_passed"], solved["pb_total"], solved["pb_language"]) == ("18", "18", "c")
    missing = props[f"instance[{ids[1]}]"]
    assert (missing["pb_outcome"], missing["pb_error_code"]) == ("error", "no_submission")


def test_hidden_tests_come_from_the_hub_by_default(
    pytester: pytest.Pytester, pair: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tasks, blobs, ids = pair
    with FakeHub(blobs) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        report = tmp_path / "report.json"
        result = replay(pytester, tasks, None, f"--pb-instance={ids[0]}", f"--pb-report={report}")
        result.assert_outcomes()
        rows = json.loads(report.read_text())["instances"]
        assert [(r["instance_id"], r["outcome"]) for r in rows] == [(ids[0], "resolved")]
        served = hub.file_gets()
        assert served and all(path.startswith(f"{ids[0]}/tests/") for path in served)
        assert set(served.values()) == {1}


def test_selftest_scores_the_reference_submission(pytester: pytest.Pytester, selftest_image: str) -> None:
    result = pytester.runpytest_subprocess("--pb-selftest", "-n", "2")
    result.stdout.fnmatch_lines(["*pbselftest__rpncalc.5e1f7a0*1.00*18/18*resolved*", "*= 1 resolved in *"])
    assert result.ret == pytest.ExitCode.OK
