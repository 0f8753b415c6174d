"""Hidden-test detail: the row, the failed item's message and --pb-junit-tests equal the eval.json.

Generated runs of real size (the package's real tests.json, synthetic statuses) are reused
by sessions without a container; the self-test task is scored for real on the engine.
Each is checked against programbench's own ``test_results_map`` and, for the JUnit file,
parsed with junitparser.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import synthruns
from junitparser import Error, Failure, JUnitXml, Skipped

from pytest_programbench import selftest
from pytest_programbench.engine.containers import Engine
from pytest_programbench.scoring import detail

#: The largest real task: 14,637 counted tests.
BIG = "johnkerl__miller.8d85b46"


def check_row(row: dict[str, Any], eval_json: Path) -> None:
    iid = row["instance_id"]
    truth = synthruns.kinds_in_eval_json(eval_json, iid)
    assert synthruns.official_map(eval_json, iid) == {name: kind == "passed" for name, kind in truth.items()}
    hidden = row["hidden_tests"]
    assert synthruns.kinds_in_detail(hidden) == {n: k for n, k in truth.items() if k != "passed"}
    per_branch = Counter((n.split("/", 1)[0], k) for n, k in truth.items())
    for branch, d in hidden.items():
        assert d["counts"] == {k: per_branch[(branch, k)] for k in detail.KINDS}
    assert sum(detail.totals(hidden).values()) == row["n_tests"] == len(truth)
    assert detail.totals(hidden)["passed"] == row["n_resolved"]


def check_junit(path: Path, rows: dict[str, dict[str, Any]]) -> None:
    xml = JUnitXml.fromfile(str(path))
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == set(rows)
    for iid, row in rows.items():
        got = {}
        for case in suites[iid]:
            branch = case.classname[len(iid) + 1 :]
            result = case.result
            kind = "passed"
            if result:
                [r] = result
                kind = {Failure: "failed", Error: "error"}.get(type(r), "")
                if isinstance(r, Skipped):
                    kind = "not_run" if r.type == "not_run" else "skipped"
            got[f"{branch}/{case.name}"] = kind
        assert got == synthruns.kinds_in_eval_json(Path(row["eval_json"]), iid)
        assert suites[iid].tests == len(got)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> synthruns.Run:
    ids = [BIG, *synthruns.task_ids()[:4]]
    return synthruns.make_run(tmp_path_factory.mktemp("synthetic"), ids, seed=1)


def run_synthetic(pytester: pytest.Pytester, run: synthruns.Run, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        f"--pb-submissions={run.subs}", f"--pb-output={run.out}", "--pb-pull=never", *args
    )


def test_rows_message_and_junit_equal_the_eval_json_at_real_size(
    pytester: pytest.Pytester, synthetic: synthruns.Run
) -> None:
    report, tests_xml, junit = (pytester.path / n for n in ("report.json", "tests.xml", "junit.xml"))
    result = run_synthetic(
        pytester,
        synthetic,
        "-n",
        "2",
        f"--pb-report={report}",
        f"--pb-junit-tests={tests_xml}",
        f"--junitxml={junit}",
    )
    rows = {r["instance_id"]: r for r in json.loads(report.read_text())["instances"]}
    assert set(rows) == set(synthetic.ids), result.stdout.str()
    assert rows[BIG]["n_tests"] == 14637
    for iid, row in rows.items():
        assert row["eval_json"] == str(synthetic.out / iid / f"{iid}.eval.json")
        check_row(row, Path(row["eval_json"]))
    check_junit(tests_xml, rows)
    # A failed item's message: the first three that did not pass per branch, then "and N more".
    messages = {
        case.name.split("[", 1)[1].rstrip("]"): case.result[0].message
        for suite in JUnitXml.fromfile(str(junit))
        for case in suite
        if case.result
    }
    for iid, row in rows.items():
        if row["score"] >= 1.0:
            assert iid not in messages
            continue
        first = next(
            iter(b for b, d in row["hidden_tests"].items() if any(d.get(k) for k in detail.NOT_PASSED))
        )
        d = row["hidden_tests"][first]
        names = [(k, t) for k in detail.NOT_PASSED for t in d.get(k, ())]
        listed = ", ".join(f"{t} ({k.replace('_', ' ')})" for k, t in names[:3])
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        assert f"did not pass: {first}: {listed}{more}" in messages[iid]


def test_selftest_partial_submission_detail_on_the_engine(
    pytester: pytest.Pytester,
    engine: Engine,
    selftest_image: str,
    reference_executable: bytes,
    selftest_blobs: Path,
) -> None:
    from support import clone_selftest

    tasks, blobs, [good, half] = clone_selftest(engine, pytester.path / "clone", ["good", "half"])
    runs = pytester.path / "runs"
    selftest.write_submission("correct", runs / good, reference_executable)
    selftest.write_submission("partial", runs / half, reference_executable)
    report, tests_xml = pytester.path / "report.json", pytester.path / "tests.xml"
    result = pytester.runpytest_subprocess(
        f"--pb-tasks-dir={tasks}",
        f"--pb-submissions={runs}",
        f"--pb-blob-dir={blobs}",
        f"--pb-output={pytester.path / 'out'}",
        f"--pb-report={report}",
        f"--pb-junit-tests={tests_xml}",
        "--pb-cpus=1",
        "--pb-pull=never",
        "-n",
        "2",
    )
    rows = {r["instance_id"]: r for r in json.loads(report.read_text())["instances"]}
    assert (rows[half]["n_resolved"], rows[half]["n_tests"]) == selftest.EXPECTED["partial"][:2]
    from programbench.submission import test_results_map
    from programbench.utils.load_data import _load_single_instance

    for iid, row in rows.items():
        eval_json = Path(row["eval_json"])
        official = test_results_map(eval_json, _load_single_instance(tasks / iid, include_tests=True))
        failing = {n for n, ok in official.items() if not ok}
        assert set(detail.not_passed(row["hidden_tests"])) == failing
        assert sum(detail.totals(row["hidden_tests"]).values()) == len(official)
    assert len(detail.not_passed(rows[half]["hidden_tests"])) == 3
    first = sorted(detail.not_passed(rows[half]["hidden_tests"]))[0].split("/", 1)[1]
    result.stdout.fnmatch_lines([f"*did not pass: *{first}*"])
    suites = {s.name: s for s in JUnitXml.fromfile(str(tests_xml))}
    assert suites[half].tests == 18 and suites[half].failures + suites[half].errors == 3
    assert suites[good].tests == 18 and suites[good].failures == 0
