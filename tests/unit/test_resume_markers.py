"""resume: the markers and the plan a rerun makes, on temporary files (no evaluator runs)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from pytest_programbench import files
from pytest_programbench.model import AgentRun, Outcome
from pytest_programbench.scoring import resume
from pytest_programbench.scoring.submissions import ARCHIVE_NAME

from .support import instance

INST = instance("org__tool.abc1234")
TASK = {"branches": {"b1": {"tests": ["t1", "t2"]}, "b2": {"tests": ["t3"]}}}


def eval_json(branches: list[str], results: list[tuple[str, str, str]], **fields: object) -> str:
    return json.dumps(
        {
            "test_results": [{"name": n, "branch": b, "status": s, "extra": {}} for b, n, s in results],
            "test_branches": branches,
            **fields,
        }
    )


COMPLETE = eval_json(["b1", "b2"], [("b1", "t1", "passed"), ("b1", "t2", "failure"), ("b2", "t3", "passed")])


def scored_dir(tmp_path: Path, text: str = COMPLETE) -> Path:
    """An instance directory a session finished: archive, eval.json, and the marker vouching for both."""
    d = tmp_path / INST.instance_id
    d.mkdir()
    (d / ARCHIVE_NAME).write_bytes(b"archive bytes")
    (d / f"{INST.instance_id}.eval.json").write_text(text)
    outcome = Outcome.from_score(
        INST, score=0.5, n_resolved=2, n_tests=3, eval_seconds=9.0, image_id="sha256:x"
    )
    resume.mark_scored(d, replace(outcome, agent=AgentRun("mini-swe-agent", 60.0, steps=3)), None)
    return d


def plan(d: Path, *, force: bool = False, source: Path | None = None) -> resume.Plan:
    return resume.plan(INST, d, source, TASK, force=force)


def test_a_finished_agent_run_is_found_while_its_archive_is_unchanged(tmp_path: Path) -> None:
    (tmp_path / ARCHIVE_NAME).write_bytes(b"packed")
    run = AgentRun("command", 12.5, timed_out=True, exit_status="TimeoutError", steps=4, cost=0.25)
    resume.mark_agent_done(tmp_path, run)
    assert resume.finished_agent(tmp_path) == run
    (tmp_path / ARCHIVE_NAME).write_bytes(b"repacked")
    assert resume.finished_agent(tmp_path) is None


def test_no_agent_marker_or_a_broken_one_means_no_finished_run(tmp_path: Path) -> None:
    assert resume.finished_agent(tmp_path) is None
    (tmp_path / ARCHIVE_NAME).write_bytes(b"packed")
    (tmp_path / resume.AGENT_MARKER).write_text("{not json")
    assert resume.finished_agent(tmp_path) is None
    (tmp_path / resume.AGENT_MARKER).write_text(json.dumps({"agent": {"nom": 1}, "submission_sha256": ""}))
    assert resume.finished_agent(tmp_path) is None


def test_markers_leave_no_partial_files(tmp_path: Path) -> None:
    d = scored_dir(tmp_path)
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [ARCHIVE_NAME, f"{INST.instance_id}.eval.json", resume.DONE_MARKER]
    )


def test_no_eval_json_is_a_fresh_start(tmp_path: Path) -> None:
    assert plan(tmp_path).action == resume.FRESH


def test_a_complete_vouched_verdict_is_reused_with_what_it_recorded(tmp_path: Path) -> None:
    p = plan(scored_dir(tmp_path))
    assert p.action == resume.REUSE
    assert (p.previous["eval_seconds"], p.previous["image_id"]) == (9.0, "sha256:x")


def test_force_scores_again_in_full(tmp_path: Path) -> None:
    assert plan(scored_dir(tmp_path), force=True) == resume.Plan(resume.FULL, "--pb-force")


def test_an_official_eval_json_without_our_marker_is_reused_as_programbench_eval_would(
    tmp_path: Path,
) -> None:
    d = scored_dir(tmp_path)
    (d / resume.DONE_MARKER).unlink()
    assert plan(d) == resume.Plan(resume.REUSE, resume.OFFICIAL)


def test_an_unreadable_eval_json_without_our_marker_is_scored_again(tmp_path: Path) -> None:
    d = scored_dir(tmp_path)
    (d / resume.DONE_MARKER).unlink()
    (d / f"{INST.instance_id}.eval.json").write_text("{not json")
    assert plan(d).action == resume.FULL
    assert "no marker of ours vouches for its eval.json" in plan(d).reason


def test_an_edited_eval_json_is_scored_again(tmp_path: Path) -> None:
    d = scored_dir(tmp_path)
    path = d / f"{INST.instance_id}.eval.json"
    path.write_text(path.read_text().replace('"failure"', '"passed"'))
    assert plan(d).reason == "its eval.json changed after it was scored"


def test_a_changed_submission_is_scored_again(tmp_path: Path) -> None:
    d = scored_dir(tmp_path)
    (d / ARCHIVE_NAME).write_bytes(b"other bytes")
    assert plan(d) == resume.Plan(resume.FULL, "the submission changed")


def test_a_replayed_source_that_changed_is_scored_again(tmp_path: Path) -> None:
    d = scored_dir(tmp_path)
    source = tmp_path / "elsewhere.tar.gz"
    source.write_bytes(b"replayed")
    assert plan(d, source=source).reason == "the submission changed"


def test_an_old_marker_without_checksums_is_scored_again(tmp_path: Path) -> None:
    d = scored_dir(tmp_path)
    marker = json.loads((d / resume.DONE_MARKER).read_text())
    del marker["eval_sha256"]
    (d / resume.DONE_MARKER).write_text(json.dumps(marker))
    assert plan(d).reason == "its marker predates eval.json checksums"


def test_a_missing_branch_is_rescored_alone(tmp_path: Path) -> None:
    d = scored_dir(tmp_path, eval_json(["b1"], [("b1", "t1", "passed"), ("b1", "t2", "passed")]))
    p = plan(d)
    assert (p.action, p.branches) == (resume.PART, ("b2",))
    assert p.submission_sha256 == files.sha256(d / ARCHIVE_NAME)


def test_a_branch_error_or_a_missing_result_rescores_that_branch(tmp_path: Path) -> None:
    text = eval_json(
        ["b1", "b2"],
        [("b1", "t1", "passed"), ("b2", "t3", "passed")],
        test_branch_errors={"b2": [{"error_code": "results_read_failed", "error_details": ""}]},
    )
    assert plan(scored_dir(tmp_path, text)).branches == ("b1", "b2")


def test_an_error_code_rescores_in_full(tmp_path: Path) -> None:
    p = plan(scored_dir(tmp_path, eval_json([], [], error_code="compile_failed")))
    assert (p.action, p.reason) == (resume.FULL, "its eval.json has error_code compile_failed")


def test_an_unreadable_eval_json_rescores_in_full(tmp_path: Path) -> None:
    assert plan(scored_dir(tmp_path, "{}{")).reason == "its eval.json is unreadable"


def test_reused_takes_the_recorded_agent_figures_and_marks_it_reused(tmp_path: Path) -> None:
    previous = plan(scored_dir(tmp_path)).previous
    fresh = Outcome.from_score(INST, score=0.5, n_resolved=2, n_tests=3)
    again = resume.reused(fresh, previous)
    assert again.reused
    assert again.agent == AgentRun("mini-swe-agent", 60.0, steps=3)
    assert (again.eval_seconds, again.image_id) == (9.0, "sha256:x")
    # What eval.json holds comes from eval.json, not from the marker.
    assert resume.reused(fresh, {**previous, "score": 1.0}).score == 0.5


def test_a_marker_written_before_the_agent_run_was_nested_still_gives_its_figures() -> None:
    old = {
        "agent": "command",
        "agent_seconds": 5.0,
        "agent_timed_out": True,
        "category": "zero",
        "eval_seconds": 2,
    }
    fresh = Outcome.from_score(INST, score=0.0, n_resolved=0, n_tests=3)
    assert resume.reused(fresh, old).agent == AgentRun("command", 5.0, timed_out=True)
