"""The gold run's pure parts: its options, the mask it writes and reads, gold_score beside the score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_programbench.keys import SETTINGS_KEY
from pytest_programbench.scoring import gold
from pytest_programbench.selection.settings import Settings

from .support import instance, row, write_task

TESTS_JSON = {
    "branches": {
        "b1": {
            "ignored": False,
            "ignored_tests": [{"name": "t_ignored"}],
            "tests": ["t1", "t2", "t3", "t_ignored"],
        },
        "b2": {"ignored": False, "ignored_tests": [], "tests": ["u1", "u2"]},
        "b3": {"ignored": True, "ignored_tests": [], "tests": ["v1"]},
    }
}


def task(tmp_path: Path, iid: str = "org__tool.abc1234", clean: str = "ab" * 32) -> Any:
    folder = write_task(
        tmp_path / "tasks", iid, f"language: c\ndifficulty: easy\neval_clean_hashes:\n- {clean}\n"
    )
    (folder / "tests.json").write_text(json.dumps(TESTS_JSON))
    return instance(iid, task_dir=str(folder))


def eval_json(path: Path, statuses: dict[str, str], executable_hash: str = "ab" * 32) -> Path:
    """An evaluator result with one test per ``branch/name: status``."""
    results = [
        {"name": name.split("/", 1)[1], "branch": name.split("/", 1)[0], "status": status, "extra": {}}
        for name, status in statuses.items()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "test_results": results,
                "test_branches": ["b1", "b2"],
                "executable_hash": executable_hash,
                "solution_branch": "gold",
            }
        )
    )
    return path


ALL_PASS = {
    "b1/t1": "passed",
    "b1/t2": "passed",
    "b1/t3": "passed",
    "b1/t_ignored": "failure",
    "b2/u1": "passed",
}


def resolved(pytester: pytest.Pytester, *args: str) -> Settings:
    return pytester.parseconfigure(*args).stash[SETTINGS_KEY]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pb-gold"], "--pb-gold needs instances to run"),
        (
            ["--pb-gold", "--pb-selftest", "--pb-agent=none"],
            r"--pb-agent='none' is not valid; --pb-gold scores",
        ),
        (
            ["--pb-gold", "--pb-selftest", "--pb-submissions=."],
            r"--pb-submissions='.' is not valid; --pb-gold",
        ),
        (["--pb-gold", "--pb-selftest", "--pb-gold-mask=m.json"], r"--pb-gold-mask='m.json' is not valid"),
        (["--pb-selftest", "--pb-gold-mask=missing.json"], r"missing.json is not a file"),
    ],
)
def test_a_gold_run_scores_references_only(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    (pytester.path / "m.json").write_text("{}")
    with pytest.raises(pytest.UsageError, match=message):
        resolved(pytester, *args)


def test_a_gold_selftest_gets_no_scripted_agent(pytester: pytest.Pytester) -> None:
    s = resolved(pytester, "--pb-selftest", "--pb-gold")
    assert (s.gold, s.agent, s.submissions_dir) == (True, "", "")


def test_the_mask_lists_the_counted_tests_the_reference_fails_and_its_score(tmp_path: Path) -> None:
    inst = task(tmp_path)
    run = tmp_path / "run"
    # b2/u2 did not run at all (missing from JUnit: not_run); the ignored test and branch do not count.
    eval_json(run / inst.instance_id / f"{inst.instance_id}.eval.json", {**ALL_PASS, "b2/u2": "not_run"})
    rows = [row(inst.instance_id, 0.8, image_id="sha256:abc")]
    mask = gold.build_mask(
        rows, [inst], run, {"run_id": "r1", "options": {"cpus": 2}, "engines": ["unix://x"]}
    )
    assert (mask["schema"], mask["version"], mask["run_id"], mask["settings"]["cpus"]) == (
        gold.SCHEMA,
        1,
        "r1",
        2,
    )
    entry = mask["instances"][inst.instance_id]
    assert entry["failed"] == ["b2/u2"]
    assert (entry["gold_score"], entry["n_tests"], entry["image_id"]) == (0.8, 5, "sha256:abc")
    assert entry["reference_hash_known"] is True
    # It reads back, and a submission is measured on the 4 tests the reference passes here.
    path = tmp_path / "mask.json"
    gold.write_mask(path, mask)
    back = gold.read_mask(path)
    submission = [
        {"branch": "b1", "name": "t1", "status": "passed"},
        {"branch": "b1", "name": "t2", "status": "failure"},
        {"branch": "b1", "name": "t3", "status": "passed"},
        {"branch": "b2", "name": "u1", "status": "passed"},
        {"branch": "b2", "name": "u2", "status": "failure"},  # the reference fails it too: not counted
    ]
    assert back.score(inst.instance_id, submission) == (0.75, 3, 4)
    assert back.score("other__tool.1", submission) is None


def test_attempts_mask_every_test_the_reference_failed_once(tmp_path: Path) -> None:
    inst1, inst2 = (
        task(tmp_path).__class__(**{**task(tmp_path).__dict__, "attempt": k, "attempts": 2}) for k in (1, 2)
    )
    run = tmp_path / "run"
    eval_json(run / inst1.rel_dir / f"{inst1.instance_id}.eval.json", {**ALL_PASS, "b2/u2": "passed"})
    eval_json(run / inst2.rel_dir / f"{inst2.instance_id}.eval.json", {**ALL_PASS, "b2/u2": "failure"})
    rows = [{**row(inst1.instance_id, 1.0), "attempt": 1}, {**row(inst2.instance_id, 0.8), "attempt": 2}]
    entry = gold.build_mask(rows, [inst1, inst2], run, {})["instances"][inst1.instance_id]
    assert (entry["failed"], entry["attempts"], entry["scores"], entry["gold_score"]) == (
        ["b2/u2"],
        2,
        [1.0, 0.8],
        0.9,
    )


def test_an_image_whose_executable_is_not_the_named_reference_is_said(tmp_path: Path) -> None:
    inst = task(tmp_path)
    run = tmp_path / "run"
    eval_json(run / inst.instance_id / f"{inst.instance_id}.eval.json", ALL_PASS, executable_hash="cd" * 32)
    mask = gold.build_mask([row(inst.instance_id, 1.0)], [inst], run, {})
    assert mask["instances"][inst.instance_id]["reference_hash_known"] is False
    lines = gold.gold_lines(mask, run / gold.MASK_NAME, threshold=1.0)
    assert any(
        "is not the binary named by task.yaml's eval_clean_hashes for: org__tool.abc1234" in x for x in lines
    )


def test_errors_are_left_out_of_the_mask(tmp_path: Path) -> None:
    inst = task(tmp_path)
    error = {**row(inst.instance_id, 0.0), "outcome": "error", "error_code": "image_missing"}
    assert gold.build_mask([error], [inst], tmp_path, {})["instances"] == {}


def test_the_summary_lists_the_tasks_below_the_threshold() -> None:
    entries = {
        "a__good.1": {"gold_score": 1.0, "failed": [], "n_tests": 10, "error_code": None},
        "b__flaky.2": {"gold_score": 0.9, "failed": ["x/t1"], "n_tests": 10, "error_code": None},
        "c__broken.3": {
            "gold_score": 0.0,
            "failed": ["x/t1", "x/t2", "x/t3", "x/t4"],
            "n_tests": 4,
            "error_code": "copy_executable_failed",
        },
    }
    lines = gold.gold_lines({"instances": entries}, Path("/run/gold_mask.json"), threshold=0.95)
    assert (
        "gold mask: /run/gold_mask.json (3 task(s), 5 counted hidden test(s) the reference fails here)"
        in lines
    )
    assert "2 task(s) whose gold score is below --pb-threshold 0.95:" in lines
    assert "  b__flaky.2: gold score 0.900 (fails 1 of 10: x/t1)" in lines
    assert (
        "  c__broken.3: gold score 0.000 (error_code copy_executable_failed: x/t1, x/t2, x/t3 and 1 more)"
        in lines
    )
    assert not any("a__good.1" in line for line in lines)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "is not a readable JSON file"),
        ('{"schema": "something else"}', "is not a gold mask"),
        (
            json.dumps({"schema": gold.SCHEMA, "version": 99, "instances": {}}),
            "of version 99; this plugin reads 1",
        ),
        (json.dumps({"schema": gold.SCHEMA, "version": 1, "instances": {"a": {}}}), 'with a "failed" list'),
    ],
)
def test_a_file_that_is_no_mask_is_refused_saying_why(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mask.json"
    path.write_text(text)
    with pytest.raises(gold.MaskInvalid, match=message):
        gold.read_mask(path)


def test_gold_runs_and_submission_runs_never_share_a_run_directory(tmp_path: Path) -> None:
    (tmp_path / "x__y.1").mkdir()
    (tmp_path / "x__y.1" / "submission.tar.gz").write_bytes(b"")
    with pytest.raises(
        pytest.UsageError, match=r"--pb-gold: .* holds submissions \(x__y.1/submission.tar.gz\)"
    ):
        gold.check_run_dir(Settings(active=True, gold=True), tmp_path)
    gold.check_run_dir(Settings(active=True), tmp_path)
    other = tmp_path / "gold"
    other.mkdir()
    (other / gold.MASK_NAME).write_text("{}")
    with pytest.raises(pytest.UsageError, match=r"is a gold run's directory .* --pb-gold-mask"):
        gold.check_run_dir(Settings(active=True), other)
    gold.check_run_dir(Settings(active=True, gold=True), other)


def test_gold_score_sits_beside_the_official_score_and_strict_integrity_zeroes_it_too() -> None:
    scored = row("a__b.1", 0.5)
    gold.add_gold_score(scored, (0.75, 3, 4))
    assert (scored["score"], scored["gold_score"], scored["gold_passed"], scored["gold_tests"]) == (
        0.5,
        0.75,
        3,
        4,
    )
    strict = row("a__b.1", 0.0, official_score=1.0, findings=[{"code": "test_config"}])
    gold.add_gold_score(strict, (1.0, 4, 4))
    assert (strict["gold_score"], strict["gold_passed"]) == (0.0, 0)
    error = {**row("a__b.1", 0.0), "outcome": "error"}
    gold.add_gold_score(error, (1.0, 4, 4))
    assert "gold_score" not in error


def test_the_summary_shows_gold_beside_the_score_and_its_own_mean() -> None:
    from pytest_programbench.reporting.summary import summary_lines, totals

    rows = [
        {**row("a__b.1", 0.5), "gold_score": 0.75},
        {**row("c__d.2", 1.0), "gold_score": 1.0},
        {**row("e__f.3", 0.0), "outcome": "error", "error_code": "image_missing"},
    ]
    summary = totals(rows)
    assert (summary["mean_score"], summary["mean_gold_score"], summary["n_gold_scored"]) == (0.5, 0.875, 2)
    lines = summary_lines(rows)
    assert lines[0].split()[:5] == ["instance", "lang", "diff", "score", "gold"]
    assert lines[1].split()[3:5] == ["0.50", "0.75"]
    assert any(line.startswith("mean score 0.500 over 3 item(s)") for line in lines)
    assert any("mean 0.875 over the 2 item(s) the gold mask knows" in line for line in lines)
    assert "gold" not in summary_lines([row("a__b.1", 0.5)])[0]


def test_the_comparison_measures_both_runs_against_the_mask(tmp_path: Path) -> None:
    from pytest_programbench.reporting.compare import Baseline, Entry, compare

    then = Baseline(
        "earlier", {"a__b.1": Entry(0.5, "c", "easy", gold=0.6), "c__d.2": Entry(0.5, "c", "easy")}
    )
    now = [{**row("a__b.1", 0.5), "gold_score": 0.8}, {**row("c__d.2", 0.7), "gold_score": 0.7}]
    result = compare(then, now)
    assert result.gold == {"paired": 1.0, "mean_then": 0.6, "mean_now": 0.8, "mean_delta": pytest.approx(0.2)}
    [a, c] = result.instances
    assert (a["gold_then"], a["gold_now"]) == (0.6, 0.8) and "gold_then" not in c
    assert any(line.startswith("gold score 0.600 -> 0.800 over the 1 instance(s)") for line in result.lines())
    assert ("pb_compare_gold_mean_delta", pytest.approx(0.2)) in result.suite_properties()
    assert result.to_dict()["gold"] == result.gold
