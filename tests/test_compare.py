"""--pb-compare and --pb-compare-fail on generated runs of real size (reused, no container).

Run A (seed 1) and run B (seed 2) share four instances; A has one B lacks (gone) and B one A
lacks (new). What the comparison must say is worked out here from the generated statuses.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import synthruns
from junitparser import JUnitXml


def session(
    pytester: pytest.Pytester, run: synthruns.Run, name: str, *args: str
) -> tuple[pytest.RunResult, dict[str, Any]]:
    report = pytester.path / f"{name}.json"
    result = pytester.runpytest_subprocess(
        f"--pb-submissions={run.subs}",
        f"--pb-output={run.out}",
        "--pb-pull=never",
        f"--pb-report={report}",
        *args,
    )
    assert report.is_file(), result.stdout.str()
    return result, json.loads(report.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[synthruns.Run, synthruns.Run]:
    ids = synthruns.task_ids()[:6]
    root = tmp_path_factory.mktemp("runs")
    return synthruns.make_run(root / "a", ids[:5], seed=1), synthruns.make_run(root / "b", ids[1:], seed=2)


def failing(run: synthruns.Run, iid: str, seed: int) -> set[str]:
    from programbench.submission import test_results_map

    counted = test_results_map(run.out / iid / f"{iid}.eval.json", synthruns.load_task(iid))
    assert set(counted) <= set(synthruns.statuses(iid, seed))
    return {name for name, ok in counted.items() if not ok}


def test_a_run_compared_with_itself_is_all_same(
    pytester: pytest.Pytester, runs: tuple[synthruns.Run, synthruns.Run]
) -> None:
    a, _ = runs
    _, first = session(pytester, a, "first")
    for baseline in (pytester.path / "first.json", a.out):  # our report, and the run directory
        result, doc = session(pytester, a, "again", f"--pb-compare={baseline}", "--pb-compare-fail=0")
        c = doc["comparison"]
        assert {i["status"] for i in c["instances"]} == {"same"}
        assert c["counts"] == {"paired": 5, "improved": 0, "regressed": 0, "same": 5, "new": 0, "gone": 0}
        assert c["mean_delta"] == 0.0 and (c["ci"]["low"], c["ci"]["high"]) == (0.0, 0.0)
        assert c["flips"] == {} and c["resolved_gained"] == c["resolved_lost"] == []
        assert c["mean_now"] == pytest.approx(first["summary"]["mean_score"])
        result.stdout.fnmatch_lines(
            [
                f"programbench: comparing with {baseline} (5 instance(s)); the session fails if*",
                "*ProgramBench comparison*",
                "improved 0, regressed 0, same 5;*",
            ]
        )
        assert result.ret == 1  # partial items fail at the default threshold; the gate itself passed
        assert "--pb-compare-fail" not in result.stdout.str()


def test_two_known_runs_give_the_expected_flips_and_deltas(
    pytester: pytest.Pytester, runs: tuple[synthruns.Run, synthruns.Run]
) -> None:
    a, b = runs
    _, then = session(pytester, a, "then")
    junit = pytester.path / "junit.xml"
    for baseline in (pytester.path / "then.json", a.out):
        result, now = session(pytester, b, "now", f"--pb-compare={baseline}", f"--junitxml={junit}")
        c = now["comparison"]
        old = {r["instance_id"]: r["score"] for r in then["instances"]}
        new = {r["instance_id"]: r["score"] for r in now["instances"]}
        both = sorted(set(old) & set(new))
        by_id = {i["instance_id"]: i for i in c["instances"]}
        assert by_id[a.ids[0]]["status"] == "gone" and by_id[b.ids[-1]]["status"] == "new"
        for iid in both:
            expected = "improved" if new[iid] > old[iid] else "regressed" if new[iid] < old[iid] else "same"
            assert (by_id[iid]["then"], by_id[iid]["now"], by_id[iid]["status"]) == (
                old[iid],
                new[iid],
                expected,
            )
            fixed = sorted(failing(a, iid, 1) - failing(b, iid, 2))
            broke = sorted(failing(b, iid, 2) - failing(a, iid, 1))
            assert c["flips"].get(iid, {"now_pass": [], "now_fail": []}) == {
                "now_pass": fixed,
                "now_fail": broke,
            }
        assert c["flips"], "the two runs must differ in some hidden tests for this test to mean anything"
        deltas = [new[i] - old[i] for i in both]
        assert c["mean_delta"] == pytest.approx(statistics.mean(deltas))
        assert c["ci"]["low"] <= c["mean_delta"] <= c["ci"]["high"]
        assert c["resolved_gained"] == [i for i in both if old[i] < 1.0 <= new[i]]
        assert c["resolved_lost"] == [i for i in both if new[i] < 1.0 <= old[i]]
        languages = {r["instance_id"]: r["language"] for r in now["instances"]}
        for language, group in c["by_language"].items():
            ds = [new[i] - old[i] for i in both if languages[i] == language]
            assert group == {"instances": len(ds), "mean_delta": pytest.approx(statistics.mean(ds))}
        props = {p.name: p.value for suite in JUnitXml.fromfile(str(junit)) for p in suite.properties()}
        assert float(props["pb_compare_mean_delta"]) == pytest.approx(c["mean_delta"], abs=1e-6)
        assert props["pb_compare_new"] == "1" and props["pb_compare_gone"] == "1"
        result.stdout.fnmatch_lines(
            [f"*{len(both)} instance(s) in both, 1 new, 1 gone*", "*paired bootstrap*"]
        )


def test_the_gate_fails_on_a_drop_bigger_than_delta_and_passes_otherwise(
    pytester: pytest.Pytester, runs: tuple[synthruns.Run, synthruns.Run], tmp_path: Path
) -> None:
    a, _ = runs
    _, doc = session(pytester, a, "base", "--pb-threshold=0")
    better = tmp_path / "better.json"  # the same run, with every score 0.1 higher than now
    for row in doc["instances"]:
        row["score"] = row["score"] + 0.1
    better.write_text(json.dumps(doc))
    result, _ = session(
        pytester, a, "gated", "--pb-threshold=0", f"--pb-compare={better}", "--pb-compare-fail=0.05"
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["--pb-compare-fail 0.05: the mean score dropped by 0.1000 (more than 0.05)*"]
    )
    result, _ = session(
        pytester, a, "gated", "--pb-threshold=0", f"--pb-compare={better}", "--pb-compare-fail=0.15"
    )
    assert result.ret == 0, result.stdout.str()
    assert "dropped by" not in result.stdout.str()


def test_bad_compare_options_are_one_line_usage_errors(
    pytester: pytest.Pytester, runs: tuple[synthruns.Run, synthruns.Run]
) -> None:
    a, _ = runs
    junk = pytester.path / "junk.json"
    junk.write_text("{not json")
    cases = [
        (("--pb-compare=nowhere.json",), "*--pb-compare='nowhere.json' is not valid; *does not exist*"),
        (("--pb-compare-fail=0.1",), "*it needs --pb-compare PATH*"),
        ((f"--pb-compare={a.out}", "--pb-compare-fail=2"), "*expected a score between 0 and 1*"),
        ((f"--pb-compare={junk}",), "*not a --pb-report JSON*"),
        ((f"--pb-compare={pytester.path}",), "*no <id>/<id>.eval.json of a known task*"),
    ]
    for args, line in cases:
        result = pytester.runpytest_subprocess(f"--pb-submissions={a.subs}", "--pb-pull=never", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([line])
