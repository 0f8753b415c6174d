"""The gold run on the real engine: each task's own reference scored as it stands in its image.

One gold session scores the self-test task twice (as it ships, and with a deliberately
host-sensitive hidden test added: it passes only where /workspace is not on overlayfs,
which no Docker or Podman overlay engine offers) and one task of each realistic fixture
(tests/realistic.py: Rust twice, Go, C; their references compiled in their images). A
correct reference scores 1.0 everywhere but on the host-sensitive test, which the mask
then holds. A second session replays submissions against that mask: ``gold_score``
appears beside the unchanged official score in rows, JSON, JUnit, the comparison and HTML.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import realistic
from junitparser import JUnitXml, Properties, Property
from support import CreationWatch, clone_selftest, run_session, session_command, session_options

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_ROLE, LABEL_RUN, Engine

SENSITIVE_BRANCH = "4d9e2a61c0b7"
SENSITIVE_TEST = "eval.tests.test_host.test_workspace_is_not_on_overlayfs"
HOST_TEST = b'''"""Deliberately host-sensitive: passes only where /workspace is not on overlayfs."""


def _fstype(path):
    best = ("", "")
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, point, fstype = line.split()[:3]
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[0]):
                best = (point, fstype)
    return best[1]


def test_workspace_is_not_on_overlayfs():
    assert _fstype("/workspace") not in ("overlay", "fuse.fuse-overlayfs")
'''
#: The self-test task's steps that only a compile runs; a gold run must run none of them.
COMPILE_STEPS = {"wipe_workspace", "remove_hashed_files", "clear_stale_executable", "seed_git", "compile"}


def make_host_sensitive(root: Path, iid: str) -> None:
    """Add HOST_TEST to the clone's active branch SENSITIVE_BRANCH: archive and tests.json."""
    archive = root / "blobs" / iid / "tests" / f"{SENSITIVE_BRANCH}.tar.gz"
    members: list[tuple[str, int, bytes | None]] = []
    with tarfile.open(archive) as tar:
        for info in tar:
            extracted = tar.extractfile(info) if info.isfile() else None
            members.append(
                (
                    info.name + ("/" if info.isdir() else ""),
                    info.mode,
                    extracted.read() if extracted else None,
                )
            )
    members.append(("eval/tests/test_host.py", 0o644, HOST_TEST))
    selftest.write_targz(archive, members)
    tests_json = root / "tasks" / iid / "tests.json"
    data = json.loads(tests_json.read_text())
    data["branches"][SENSITIVE_BRANCH]["tests"].append(SENSITIVE_TEST)
    tests_json.write_text(json.dumps(data, indent=2))


def properties(element: Any) -> dict[str, str]:
    return {
        p.name: p.value for group in element.iterchildren(Properties) for p in group.iterchildren(Property)
    }


def test_a_gold_run_scores_each_reference_and_masks_what_fails_on_this_host(
    engine: Engine, selftest_image: str, tmp_path: Path
) -> None:
    _, _, (plain, sensitive) = clone_selftest(engine, tmp_path, ["gold_plain", "gold_hostfs"])
    make_host_sensitive(tmp_path, sensitive)
    image_ids = {plain: engine.image_id(selftest_image), sensitive: engine.image_id(selftest_image)}
    for fixture in realistic.FIXTURES.values():
        image = realistic.build_image(fixture)
        _, _, ids = realistic.clone(fixture, tmp_path, ["gold"], image=image)
        image_ids[ids["gold"]] = engine.image_id(image)
    out = tmp_path / "gold"
    with CreationWatch(engine, selftest_image, inspect=True) as watch:
        said, rows = run_session(
            tmp_path, out, "--pb-gold", "-n", "2", "--pb-scoring-memory=1g", f"--junitxml={out / 'junit.xml'}"
        )
    assert set(rows) == set(image_ids), said

    # A correct reference passes everything but the host-sensitive test; the mask holds exactly that.
    assert {i: (r["outcome"], r["score"]) for i, r in rows.items() if i != sensitive} == {
        i: ("resolved", 1.0) for i in rows if i != sensitive
    }, said
    assert (rows[sensitive]["n_resolved"], rows[sensitive]["n_tests"]) == (18, 19), said
    mask = json.loads((out / "gold_mask.json").read_text())
    assert (mask["schema"], mask["version"]) == ("pytest-programbench gold mask", 1)
    assert {i: e["failed"] for i, e in mask["instances"].items()} == {
        **{i: [] for i in rows if i != sensitive},
        sensitive: [f"{SENSITIVE_BRANCH}/{SENSITIVE_TEST}"],
    }
    for iid, entry in mask["instances"].items():
        # What was scored is the image's own binary, the one task.yaml's eval_clean_hashes names.
        assert entry["reference_hash_known"] is True, (iid, entry)
        assert entry["image_id"] == rows[iid]["image_id"] == image_ids[iid]
    assert "ProgramBench gold run" in said and f"{sensitive}: gold score 0.947 (fails 1 of 19" in said, said
    assert "1 task(s) whose gold score is below --pb-threshold 1.00:" in said, said

    # The evaluator's own branch steps ran against the stashed reference; no compile step ran.
    log = json.loads((out / plain / f"{plain}.eval.json").read_text())
    steps = [e["step"] for e in log["log"]]
    assert log["solution_branch"] == "gold" and not COMPILE_STEPS & set(steps), steps
    assert steps[:3] == ["copy_executable", "hash_executable", "install_rerunfailures"], steps
    assert steps.count("run_tests") == 2 and steps.count("verify_executable_hash") == 2, steps

    # Its containers: one started from the pinned task image, one per branch from what it committed,
    # each with this run's labels, the scoring memory limit and its CPU share (docker inspect).
    for iid in rows:
        assert watch.of(iid)["task"] == 1 and watch.of(iid)["branches"] >= 2, (iid, watch.instances)
    gold_containers = [a for a in watch.inspected.values() if a["Config"]["Labels"].get(LABEL_ROLE) == "gold"]
    assert len(gold_containers) >= 3 * len(rows)
    assert {(a["HostConfig"]["Memory"], a["HostConfig"]["NanoCpus"]) for a in gold_containers} == {
        (2**30, 10**9)
    }
    run_id = json.loads((out / "report.json").read_text())["run_id"]
    assert engine.labelled({LABEL_RUN: run_id}) == [] and engine._labelled_images({LABEL_RUN: run_id}) == []
    cases = {c.name: properties(c) for s in JUnitXml.fromfile(str(out / "junit.xml")) for c in s}
    assert (cases[f"instance[{plain}]"]["pb_score"], cases[f"instance[{plain}]"]["pb_outcome"]) == (
        "1.0",
        "resolved",
    )

    # A second gold session on the same directory reuses every verdict: no container starts.
    with CreationWatch(engine, selftest_image) as again_watch:
        said_again, again = run_session(tmp_path, out, "--pb-gold")
    assert all(r["reused"] for r in again.values()), said_again
    assert {i: r["score"] for i, r in again.items()} == {i: r["score"] for i, r in rows.items()}
    assert {i: again_watch.of(i) for i in rows} == {i: {"task": 0, "branches": 0} for i in rows}

    measured_against_the_mask(tmp_path, out, plain, sensitive)


def measured_against_the_mask(root: Path, gold_run: Path, plain: str, sensitive: str) -> None:
    """Submissions scored with --pb-gold-mask: gold_score beside the official score, everywhere."""
    runs = root / "runs"
    selftest.write_submission("correct", runs / sensitive)  # fails only what the reference fails here
    selftest.write_submission("partial", runs / plain)  # 15/18, and so 15/18 of the reference's tests
    out = root / "submissions"
    mask = gold_run / "gold_mask.json"
    said, rows = run_session(
        root,
        out,
        f"--pb-submissions={runs}",
        "--pb-instance=pbselftest__gold-",  # the two self-test clones, not the realistic tasks
        f"--pb-gold-mask={mask}",
        f"--pb-compare={gold_run}",
        f"--pb-html={out / 'report.html'}",
        f"--junitxml={out / 'junit.xml'}",
    )
    # The official score is unchanged and stays the headline; gold_score sits beside it.
    assert (rows[sensitive]["n_resolved"], rows[sensitive]["n_tests"], rows[sensitive]["outcome"]) == (
        18,
        19,
        "partial",
    )
    assert (rows[sensitive]["gold_score"], rows[sensitive]["gold_passed"], rows[sensitive]["gold_tests"]) == (
        1.0,
        18,
        18,
    )
    assert rows[plain]["score"] == rows[plain]["gold_score"] == 15 / 18
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["mean_score"] == pytest.approx((18 / 19 + 15 / 18) / 2)
    assert report["summary"]["mean_gold_score"] == pytest.approx((1.0 + 15 / 18) / 2)
    assert f"mean score {(18 / 19 + 15 / 18) / 2:.3f} over 2 item(s)" in said, said
    assert "gold score (the share of the tests the reference passes here" in said, said
    cases = {c.name: properties(c) for s in JUnitXml.fromfile(str(out / "junit.xml")) for c in s}
    assert cases[f"instance[{sensitive}]"]["pb_gold_score"] == "1.0"
    assert float(cases[f"instance[{sensitive}]"]["pb_score"]) == pytest.approx(18 / 19)
    # Compared with the gold run's own directory: both sides measured against the same mask.
    gold = report["comparison"]["gold"]
    assert (gold["paired"], gold["mean_then"]) == (2, 1.0), gold
    assert gold["mean_now"] == pytest.approx((1.0 + 15 / 18) / 2)
    html = (out / "report.html").read_text()
    assert '"gold_score":1.0' in html and '"mean_gold_score"' in html

    # A submission run never writes into a gold run's directory.
    refused = subprocess.run(
        session_command(*session_options(root, gold_run, f"--pb-submissions={runs}")),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "is a gold run's directory (it holds gold_mask.json)" in refused.stderr
    assert not (gold_run / sensitive / "submission.tar.gz").exists()
