"""Broken submission archives on the real engine: the task image's tar, the official evaluator, and us.

1. Every archive of tests/unit/archives.py goes through programbench's own
   ``ContainerEnvironment.copy_in_tar`` (the task image's GNU tar and gzip): the scan must
   accept exactly what that tar unpacks.
2. One replay session scores a spread of them beside ``programbench eval``'s own
   ``_evaluate_instance``: the scores are equal; where the evaluator raises (its tar refused
   the archive, or it could not decode a step's output) the item is a 0 under a stable code
   whose message names the byte or member, not an error telling the user to rerun, and no
   eval.json is written, as the official tool writes none. The archives the scan refuses
   start no container.
3. A hidden-test archive that is missing or broken stops the item before its agent runs.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import clone_selftest, programbench_eval, session_command
from unit.archives import ACCEPTED, BUILD, FAULTS, LEFT_TO_TAR, undecodable_build_output

from pytest_programbench.engine.containers import LABEL_RUN, Engine
from pytest_programbench.scoring.submissions import ArchiveFault, scan_archive

CPUS = str(min(2, os.cpu_count() or 1))
RUN_LABEL = f"test-archive-faults-{uuid.uuid4().hex[:8]}"


def test_the_scan_accepts_what_the_task_images_tar_unpacks(
    engine: Engine, selftest_image: str, tmp_path: Path
) -> None:
    from programbench.container import ContainerEnvironment

    env = ContainerEnvironment(
        image=selftest_image, cwd="/workspace", cpus=1, run_args=["--label", f"{LABEL_RUN}={RUN_LABEL}"]
    )
    tar_says, scan_says = {}, {}
    try:
        for case, build in {**BUILD, **LEFT_TO_TAR}.items():
            archive = tmp_path / case / "submission.tar.gz"
            archive.parent.mkdir()
            archive.write_bytes(build())
            try:
                env.copy_in_tar(archive, f"/tmp/{case}/")  # what the evaluator does with a submission
                tar_says[case] = "unpacks"
            except RuntimeError as exc:
                assert "tar stream into container failed" in str(exc)
                tar_says[case] = "refuses"
            try:
                scan_archive(archive)
                scan_says[case] = "unpacks"
            except ArchiveFault:
                scan_says[case] = "refuses"
    finally:
        env.cleanup()
    assert {c for c, v in tar_says.items() if v == "unpacks"} == set(ACCEPTED)
    assert {c for c, v in scan_says.items() if v == "refuses"} == set(FAULTS)
    # The one fault the scan leaves to tar (it would need every name): the evaluator's tar finds it.
    assert {c for c in LEFT_TO_TAR if tar_says[c] != scan_says[c]} == set(LEFT_TO_TAR)
    assert engine.labelled({LABEL_RUN: RUN_LABEL}) == []


#: The replay spread: case -> (our outcome and error code, the official error code).
SPREAD: dict[str, tuple[str, str | None, str | None]] = {
    "absolute_member": ("resolved", None, None),  # tar strips the '/': unpacked under /workspace
    "no_trailer": ("zero", "invalid_submission", "RuntimeError"),
    "trailing_garbage": ("zero", "invalid_submission", "RuntimeError"),
    "dotdot_member": ("zero", "invalid_submission", "RuntimeError"),
    "hard_link_outside": ("zero", "invalid_submission", "RuntimeError"),
    "not_gzip": ("zero", "invalid_submission", "RuntimeError"),
    "file_as_directory": ("zero", "invalid_submission", "RuntimeError"),  # refused by the evaluator's tar
    "undecodable": ("zero", "evaluator_crashed", "UnicodeDecodeError"),
}


@pytest.fixture(scope="module")
def spread(engine: Engine, selftest_image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("faults")
    tasks, blobs, ids = clone_selftest(engine, root, list(SPREAD))
    builders = {**BUILD, **LEFT_TO_TAR, "undecodable": undecodable_build_output}
    for case, iid in zip(SPREAD, ids, strict=True):
        archive = root / "runs" / iid / "submission.tar.gz"
        archive.parent.mkdir(parents=True)
        archive.write_bytes(builders[case]())
    return {
        "root": root,
        "tasks": tasks,
        "blobs": blobs,
        "runs": root / "runs",
        "ids": dict(zip(SPREAD, ids, strict=True)),
    }


@pytest.fixture(scope="module")
def official(spread: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What `programbench eval` makes of each archive, through its own batch function."""
    out = tmp_path_factory.mktemp("official")
    ids = spread["ids"]
    found = programbench_eval(
        spread["tasks"], spread["blobs"], spread["runs"], out, ids.values(), cpus=int(CPUS)
    )
    return {case: (found[iid], (out / iid / f"{iid}.eval.json").exists()) for case, iid in ids.items()}


def test_broken_archives_score_as_programbench_eval_scores_them_named(
    pytester: pytest.Pytester, spread: dict[str, Any], official: dict[str, Any]
) -> None:
    out = pytester.path / "out"
    result = pytester.run(
        *session_command(
            f"--pb-tasks-dir={spread['tasks']}",
            f"--pb-submissions={spread['runs']}",
            f"--pb-blob-dir={spread['blobs']}",
            f"--pb-output={out}",
            f"--pb-report={out / 'report.json'}",
            f"--pb-cpus={CPUS}",
            "--pb-pull=never",
            "-n",
            "2",
        ),
        timeout=900,
    )
    rows = {r["instance_id"]: r for r in json.loads((out / "report.json").read_text())["instances"]}
    text = result.stdout.str()
    for case, (outcome, code, official_code) in SPREAD.items():
        iid, (theirs, their_eval_json) = spread["ids"][case], official[case]
        row = rows[iid]
        assert (row["outcome"], row["error_code"], row["score"]) == (outcome, code, theirs.score), case
        assert theirs.error_code == official_code, case
        assert (row["n_resolved"], row["n_tests"]) == (theirs.n_resolved, theirs.n_tests), case
        # Neither tool writes an eval.json where its evaluator raised.
        assert (out / iid / f"{iid}.eval.json").exists() == their_eval_json == (code is None), case
        if code is not None:
            assert "Rerun" not in row["message"] and row["message"] in row["reason"], case
    assert "INTERNALERROR" not in text and " error" not in text.splitlines()[-1]
    ids = spread["ids"]
    messages = {case: rows[ids[case]]["message"] for case in SPREAD}
    assert "the gzip data ends at byte" in messages["no_trailer"]
    assert "follow the gzip stream, from byte" in messages["trailing_garbage"]
    assert "member './../evil' (at byte" in messages["dotdot_member"]
    assert "hard link './h'" in messages["hard_link_outside"]
    assert (
        "the task image's tar refused it: tar: ./f/g: Cannot open: Not a directory"
        in messages["file_as_directory"]
    )
    assert messages["undecodable"].startswith("cause: undecodable_output")
    assert "crashed on the compile step's" in messages["undecodable"]
    # What the scan refused never reached a container: no scoring phase in the progress log.
    log = (out / "progress.log").read_text().splitlines()
    for case in ("no_trailer", "trailing_garbage", "dotdot_member", "hard_link_outside", "not_gzip"):
        lines = [line for line in log if ids[case] in line]
        assert lines and not any("scoring:" in line for line in lines), case
    result.stdout.fnmatch_lines(
        [f"*{ids['dotdot_member']}*score 0.00 (0/0 hidden tests) < 1.00: invalid_submission*"]
    )


AGENT_LOG = """
from pathlib import Path

def pytest_programbench_agent(config, instance):
    def agent(instance, sandbox):
        with (Path(__file__).parent / "agent-calls.log").open("a") as f:
            f.write(instance.instance_id + "\\n")
    return agent
"""


def test_a_missing_or_broken_hidden_test_archive_costs_no_agent_run(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    tasks, blobs, [missing, broken] = clone_selftest(engine, pytester.path, ["blob_missing", "blob_broken"])
    [branch, *_] = json.loads((tasks / missing / "tests.json").read_text())["branches"]
    (blobs / missing / "tests" / f"{branch}.tar.gz").unlink()
    cut = blobs / broken / "tests" / f"{branch}.tar.gz"
    cut.write_bytes(cut.read_bytes()[:-8])
    pytester.makeconftest(AGENT_LOG)
    out = pytester.path / "out"
    pytester.run(
        *session_command(
            f"--pb-tasks-dir={tasks}",
            f"--pb-blob-dir={blobs}",
            f"--pb-output={out}",
            f"--pb-report={out / 'report.json'}",
            "--pb-cpus=1",
            "--pb-pull=never",
        ),
        timeout=600,
    )
    rows = {r["instance_id"]: r for r in json.loads((out / "report.json").read_text())["instances"]}
    assert (rows[missing]["outcome"], rows[missing]["error_code"]) == ("error", "hidden_tests_missing")
    assert (rows[broken]["outcome"], rows[broken]["error_code"]) == ("error", "hidden_tests_broken")
    assert (
        f"hidden-test archive {cut} ({broken} branch {branch}) is broken: the gzip data ends at byte"
        in (rows[broken]["message"])
    )
    assert not (pytester.path / "agent-calls.log").exists()
    assert engine.labelled({LABEL_RUN: json.loads((out / "report.json").read_text())["run_id"]}) == []
