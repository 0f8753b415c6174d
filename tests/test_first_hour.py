"""A newcomer's first hour: each stumble a first session hit, replayed against the fix.

One session selects the plugin's items only (the project's own tests are deselected and
counted); problems of the whole session end it before any container starts, in one line
with exit code 4; a harness error shows its cause in a few lines; the run directory is
printed, ``runs/latest`` points at it and its default does not move with how a path option
is spelled; node ids pasted back rerun their item; the summary and ``--pb-report`` cover
the whole run directory (earlier sessions merged, official eval.json files summarised
without rescoring, instances with no verdict counted as not run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from support import FAKE_OUTCOME, CreationWatch, clone_selftest

from pytest_programbench import selftest
from pytest_programbench.engine.containers import Engine

OTHER_TESTS = """
def test_one():
    pass

def test_two():
    pass
"""


def error_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.errlines if line.startswith("ERROR:")]


def test_a_selection_deselects_the_projects_own_tests_unless_asked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_other=OTHER_TESTS)
    pytester.makeconftest(FAKE_OUTCOME)
    only_ours = pytester.runpytest_subprocess("--pb-instance", "sharkdp__hexyl")
    only_ours.assert_outcomes(passed=1, deselected=2)
    only_ours.stdout.fnmatch_lines(["collected 3 items / 2 deselected / 1 selected"])
    both = pytester.runpytest_subprocess("--pb-instance", "sharkdp__hexyl", "--pb-keep-other-tests")
    both.assert_outcomes(passed=3)
    pytester.makeini("[pytest]\npb_keep_other_tests = true\n")
    pytester.runpytest_subprocess("--pb-instance", "sharkdp__hexyl").assert_outcomes(passed=3)


def test_selftest_runs_exactly_one_item_in_a_directory_full_of_tests(
    pytester: pytest.Pytester, selftest_image: str
) -> None:
    pytester.makepyfile(test_other=OTHER_TESTS, test_broken="def test_fails():\n    assert False\n")
    result = pytester.runpytest_subprocess("--pb-selftest", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"resolved": 1, "deselected": 3}


def test_no_engine_is_one_line_before_anything_starts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_other=OTHER_TESTS)
    missing = pytester.path / "no-engine.sock"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_HOST", f"unix://{missing}")
        result = pytester.runpytest_subprocess("--pb-language", "c", "--pb-agent", "none")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = error_lines(result)
    assert line.startswith(f"ERROR: programbench: no Docker engine answers at unix://{missing}")
    assert "DOCKER_HOST" in line  # what to do
    assert len([x for x in result.outlines + result.errlines if x.strip()]) <= 3


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "nothing produces a submission in this session. Give --pb-agent"),
        (("--pb-agent", "no_such_module:agent"), "agent 'no_such_module:agent' cannot be loaded"),
        (("--pb-agent", "command", "--pb-agent-cmd", "./missing.sh --x"), "its program './missing.sh'"),
    ],
    ids=["no-agent", "unimportable", "missing-command"],
)
def test_agent_problems_end_the_session_in_one_line_before_any_item(
    pytester: pytest.Pytester, engine: Engine, args: tuple[str, ...], expected: str
) -> None:
    out = pytester.path / "out"
    result = pytester.runpytest_subprocess("--pb-language", "c", f"--pb-output={out}", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = error_lines(result)
    assert expected in line, line
    assert not any(x.startswith("collected") for x in result.outlines)  # ended before collection
    assert not out.exists() or not any(p.is_dir() for p in out.iterdir())  # no item started
    assert "= ProgramBench =" not in result.stdout.str()


def test_mini_swe_agent_without_an_api_key_is_one_line_without_a_call(
    pytester: pytest.Pytester, engine: Engine
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.endswith("_API_KEY")]:
            mp.delenv(key)
        mp.setenv("MSWEA_GLOBAL_CONFIG_DIR", str(pytester.path / "mini-config"))  # no stored keys
        started = time.monotonic()
        result = pytester.runpytest_subprocess(
            "--pb-language", "c", "--pb-agent", "mini-swe-agent", "--pb-model", "anthropic/claude-sonnet-4-5"
        )
        took = time.monotonic() - started
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = error_lines(result)
    assert "model anthropic/claude-sonnet-4-5 needs ANTHROPIC_API_KEY, which is not set" in line
    assert not any(x.startswith("collected") for x in result.outlines)
    print(f"mini-swe-agent preflight without a key took {took:.1f}s")  # reported, never asserted


def test_a_harness_error_shows_its_cause_in_a_few_lines(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str, tmp_path: Path
) -> None:
    tasks, blobs, _ = clone_selftest(engine, tmp_path, ["harness_error"])
    options = [
        f"--pb-tasks-dir={tasks}",
        f"--pb-blob-dir={blobs}",
        "--pb-agent=none",
        "--pb-image-tag=no_such_tag",
        "--pb-pull=never",
        "-p",
        "no:cacheprovider",
    ]
    short = pytester.runpytest_subprocess(*options)
    short.assert_outcomes(errors=1)
    text = short.stdout.str()
    section = text[text.index("= ERRORS =") : text.index("= ProgramBench =")]
    assert "no_such_tag is not on the Docker engine" in section, section
    assert "def pb_" not in section  # no fixture source
    long = pytester.runpytest_subprocess(*options, "--tb=long")
    long_text = long.stdout.str()
    long_section = long_text[long_text.index("= ERRORS =") : long_text.index("= ProgramBench =")]
    assert "def pb_" in long_section
    assert len(section.splitlines()) * 3 < len(long_section.splitlines())


@pytest.fixture
def replay(engine: Engine, selftest_image: str, tmp_path: Path) -> dict[str, Any]:
    """Two self-test clones with a correct and a partial submission in a submissions directory."""
    tasks, blobs, ids = clone_selftest(engine, tmp_path, ["hour_good", "hour_half"])
    subs = tmp_path / "submissions"
    selftest.write_submission("correct", subs / ids[0])
    selftest.write_submission("partial", subs / ids[1])
    return {"tasks": tasks, "blobs": blobs, "subs": subs, "good": ids[0], "half": ids[1]}


def options(replay: dict[str, Any], out: Path | None = None) -> list[str]:
    found = [f"--pb-tasks-dir={replay['tasks']}", "--pb-pull=never", "-p", "no:cacheprovider"]
    if out is not None:
        found += [f"--pb-output={out}", f"--pb-report={out / 'report.json'}"]
    return found


def report_of(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "report.json").read_text()))


def rows_of(out: Path) -> dict[str, dict[str, Any]]:
    return {r["instance_id"]: r for r in report_of(out)["instances"]}


def test_run_directory_is_printed_and_does_not_move_with_option_spelling(
    pytester: pytest.Pytester, replay: dict[str, Any]
) -> None:
    # "--pb-submissions DIR" with a space: pytest picks its rootdir before the plugin's options
    # exist, so DIR looks like a test path and becomes the rootdir.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROGRAMBENCH_BLOB_DIR", str(replay["blobs"]))  # as programbench reads it
        result = pytester.runpytest_subprocess(
            *options(replay), "--pb-submissions", str(replay["subs"]), "-v", "--pb-instance", ".*hour-good"
        )
    assert result.parseoutcomes() == {"resolved": 1}
    header = [line for line in result.outlines if line.startswith("programbench: run directory ")]
    (run_dir,) = {re.search(r"run directory (\S+)", line).group(1) for line in header}  # type: ignore[union-attr]
    assert Path(run_dir).parent == pytester.path / ".programbench" / "runs"
    assert f"run directory: {run_dir}" in result.outlines
    assert (pytester.path / ".programbench" / "runs" / "latest").resolve() == Path(run_dir).resolve()
    # Printed relative to where pytest started (the rootdir moved): pasted back, it still works.
    (printed,) = {
        w for line in result.outlines for w in line.split() if w.endswith(f"instance[{replay['good']}]")
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROGRAMBENCH_BLOB_DIR", str(replay["blobs"]))
        again = pytester.runpytest_subprocess(
            *options(replay), "--pb-submissions", str(replay["subs"]), printed
        )
    assert again.parseoutcomes() == {"resolved": 1, "deselected": 1}


def test_pasted_node_ids_rerun_their_item_and_the_summary_covers_the_run_directory(
    pytester: pytest.Pytester, replay: dict[str, Any], engine: Engine, base_image: str
) -> None:
    out = pytester.path / "out"
    base = [*options(replay, out), f"--pb-blob-dir={replay['blobs']}", f"--pb-submissions={replay['subs']}"]
    first = pytester.runpytest_subprocess(*base)
    assert first.parseoutcomes() == {"resolved": 1, "partial": 1}
    mean = report_of(out)["summary"]["mean_score"]
    assert mean == pytest.approx((1 + 15 / 18) / 2)

    # The failure list's node id, pasted back as an argument, reruns that item alone; the
    # other instance's verdict comes from the first session, marked as such.
    (line,) = [line for line in first.outlines if line.startswith("did not pass (paste a node id")]
    failed = line.split(": ", 1)[1]
    assert failed == f"programbench::instance[{replay['half']}]"
    again = pytester.runpytest_subprocess(*base, failed)
    assert again.parseoutcomes() == {"partial": 1, "deselected": 1}
    rows = rows_of(out)
    assert (rows[replay["good"]].get("session"), rows[replay["half"]].get("session")) == ("earlier", None)
    summary = report_of(out)["summary"]
    assert (summary["n_items"], summary["earlier"], summary["mean_score"]) == (2, 1, pytest.approx(mean))
    again.stdout.fnmatch_lines(
        [f"{replay['good']} *(from an earlier session*", "merged from the run directory: 1*"]
    )

    # A new run directory and -k: the instance not run counts 0, and the summary says so.
    fresh = pytester.path / "fresh"
    partial = pytester.runpytest_subprocess(
        *options(replay, fresh),
        f"--pb-blob-dir={replay['blobs']}",
        f"--pb-submissions={replay['subs']}",
        "-k",
        "good",
    )
    assert partial.parseoutcomes() == {"resolved": 1, "deselected": 1}
    summary = report_of(fresh)["summary"]
    assert (summary["not_run"], summary["n_ran"], summary["mean_score"]) == (1, 1, 0.5)
    partial.stdout.fnmatch_lines([f"1 selected item(s) not run *: {replay['half']}"])

    # The official tools' run directory (eval.json without our marker) is summarised, not scored.
    for iid in (replay["good"], replay["half"]):
        (out / iid / "programbench.json").unlink()
    with CreationWatch(engine, base_image) as created:
        official = pytester.runpytest_subprocess(*base)
    assert official.parseoutcomes() == {"resolved": 1, "partial": 1}
    assert created.of(replay["good"]) == created.of(replay["half"]) == {"task": 0, "branches": 0}
    rows = rows_of(out)
    assert all(r["reused"] and "official" in r["rescore_reason"] for r in rows.values())
    assert report_of(out)["summary"]["mean_score"] == pytest.approx(mean)
    assert not any((out / iid / "programbench.json").exists() for iid in rows)  # left as it was
    forced = pytester.runpytest_subprocess(*base, "--pb-force")
    assert not any(r["reused"] for r in rows_of(out).values())
    assert forced.parseoutcomes() == {"resolved": 1, "partial": 1}


def test_official_eval_json_of_an_instance_not_run_is_merged_read_only(
    pytester: pytest.Pytester, replay: dict[str, Any]
) -> None:
    out = pytester.path / "out"
    base = [*options(replay, out), f"--pb-blob-dir={replay['blobs']}", f"--pb-submissions={replay['subs']}"]
    assert pytester.runpytest_subprocess(*base).parseoutcomes() == {"resolved": 1, "partial": 1}
    eval_json = out / replay["half"] / f"{replay['half']}.eval.json"
    (out / replay["half"] / "programbench.json").unlink()
    before = eval_json.read_bytes()
    result = pytester.runpytest_subprocess(*base, "-k", "good")
    assert result.parseoutcomes() == {"resolved": 1, "deselected": 1}
    assert rows_of(out)[replay["half"]]["session"] == "official"
    assert eval_json.read_bytes() == before
    shutil.rmtree(out)


def test_the_overall_progress_line_is_its_own_line_and_quiet_under_q(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_OUTCOME)
    result = pytester.runpytest_subprocess("--pb-language", "go", "-m", "easy", "-n", "2")
    result.assert_outcomes(passed=10)
    shape = r"programbench: (\d+)/10 done, (\d+) running, (\d+) left \| \d+ resolved( \| ETA \S+)?"
    lines = [line for line in result.outlines if "programbench: " in line and " done, " in line]
    assert len(lines) == 10
    counts = [re.fullmatch(shape, line) for line in lines]  # whole lines: nothing before or after
    assert all(counts), lines
    assert [int(m.group(1)) for m in counts if m] == list(range(1, 11))
    assert lines[-1].startswith("programbench: 10/10 done, 0 running, 0 left")
    quiet = pytester.runpytest_subprocess("--pb-language", "go", "-m", "easy", "-n", "2", "-q")
    quiet.assert_outcomes(passed=10)
    assert not [line for line in quiet.outlines if " done, " in line]
