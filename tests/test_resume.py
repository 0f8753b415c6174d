"""Resume converges like `programbench eval` without --force.

A first session (an agent per instance) leaves verdicts; their eval.json files are then
put in the states a real run leaves behind: (a) an ``error_code``, (b) one branch in
``test_branch_errors``, (c) a branch missing, (d) complete, plus (e) one edited after it
was scored. The plugin resumes the run directory while ``programbench eval``'s own
``_evaluate_instance`` resumes a copy: the eval.json files and summaries must be equal,
the engine's events must show containers for exactly the branches that needed them, and
no agent may run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from support import CreationWatch, clone_selftest, programbench_eval

from pytest_programbench.engine.containers import Engine

STATES = ["errored", "branch_error", "missing_branch", "complete", "edited"]

CONFTEST = """
from pathlib import Path
from pytest_programbench import selftest

SOURCE = selftest.reference_source()
SOURCE = SOURCE.replace("__builtin_sub_overflow(a, b, &r)", "__builtin_sub_overflow(b, a, &r)")
COMPILE = "#!/bin/sh\\nset -e\\ngcc -O2 -o executable rpncalc.c\\n"

def pytest_programbench_agent(config, instance):
    def partial(instance, sandbox):
        with (Path(__file__).parent / "agent-calls.log").open("a") as f:
            f.write(instance.instance_id + "\\n")
        sandbox.write_file("rpncalc.c", SOURCE)
        sandbox.write_file("compile.sh", COMPILE, mode=0o755)
    return partial
"""


def eval_json(out: Path, iid: str) -> Path:
    return out / iid / f"{iid}.eval.json"


def edit(out: Path, iid: str, change: Any, *, vouch: bool = True) -> None:
    """Rewrite an eval.json; ``vouch``: as if the session that scored it had written it so."""
    path = eval_json(out, iid)
    result = json.loads(path.read_text())
    change(result)
    path.write_text(json.dumps(result, indent=2))
    if vouch:
        marker = out / iid / "programbench.json"
        data = json.loads(marker.read_text())
        data["eval_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        marker.write_text(json.dumps(data))


def errored(result: dict[str, Any]) -> None:
    """(a) A compile that timed out under load: every test not run, no branch tested."""
    result.update(error_code="compile_failed", error_details="timed out after 900 s")
    result["test_results"] = [
        {**t, "status": "not_run", "extra": {"error_code": "compile_failed"}} for t in result["test_results"]
    ]
    result["log"] = [e for e in result["log"] if e["step"] != "results_read"]


def branch_error(branch: str) -> Any:
    """(b) ``docker cp`` of one branch's results failed."""

    def change(result: dict[str, Any]) -> None:
        result["test_branch_errors"] = {
            branch: [{"error_code": "results_read_failed", "error_details": "docker cp timed out after 60s"}]
        }
        result["test_results"] = [
            t
            if t["branch"] != branch
            else {**t, "status": "not_run", "extra": {"error_code": "results_read_failed"}}
            for t in result["test_results"]
        ]
        result["log"] = [e for e in result["log"] if e.get("branch") != branch]

    return change


def missing_branch(branch: str) -> Any:
    """(c) A branch the task gained after the run was scored."""

    def change(result: dict[str, Any]) -> None:
        result["test_branches"] = [b for b in result["test_branches"] if b != branch]
        result["test_results"] = [t for t in result["test_results"] if t["branch"] != branch]
        result["log"] = [e for e in result["log"] if e.get("branch") != branch]

    return change


def all_passed(result: dict[str, Any]) -> None:
    """(e) Someone's hand-edit to all-passed."""
    result["test_results"] = [{**t, "status": "passed", "extra": {}} for t in result["test_results"]]


def essence(path: Path) -> dict[str, Any]:
    """An eval.json without what differs between any two runs (times, container ids, pytest chatter)."""
    r = json.loads(path.read_text())
    return {
        "results": [
            (t["branch"], t["name"], t["status"], t["extra"].get("error_code")) for t in r["test_results"]
        ],
        "log": [(e["step"], e.get("branch"), e.get("returncode")) for e in r["log"]],
        "branch_errors": {b: [e["error_code"] for e in es] for b, es in r["test_branch_errors"].items()},
        **{k: r[k] for k in ("test_branches", "error_code", "error_details", "executable_hash", "warnings")},
        "solution_branch": r["solution_branch"],
    }


def test_resume_rescores_exactly_what_programbench_eval_would(
    pytester: pytest.Pytester, engine: Engine, base_image: str, selftest_image: str, tmp_path: Path
) -> None:

    tasks, blobs, own = clone_selftest(engine, tmp_path, [f"conv_{s}" for s in STATES])
    ids = dict(zip(STATES, own, strict=True))
    out, theirs = pytester.path / "out", pytester.path / "official"
    options = [
        f"--pb-tasks-dir={tasks}",
        f"--pb-blob-dir={blobs}",
        "--pb-pull=never",
        "--pb-cpus=1",
        f"--pb-output={out}",
        f"--pb-report={out / 'report.json'}",
        "--pb-instance=pbselftest__conv-",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
    ]
    pytester.makeconftest(CONFTEST)
    first = pytester.runpytest_subprocess(*options)
    assert first.parseoutcomes() == {"partial": 5}

    branches = json.loads(eval_json(out, ids["complete"]).read_text())["test_branches"]
    assert len(branches) == 2
    edit(out, ids["errored"], errored)
    edit(out, ids["branch_error"], branch_error(branches[1]))
    edit(out, ids["missing_branch"], missing_branch(branches[0]))
    edit(out, ids["edited"], all_passed, vouch=False)
    shutil.copytree(out, theirs)
    (pytester.path / "agent-calls.log").unlink()

    with CreationWatch(engine, base_image) as created:
        resumed = pytester.runpytest_subprocess(*options)
    assert resumed.parseoutcomes() == {"partial": 5}
    assert not (pytester.path / "agent-calls.log").exists()  # no agent ran
    rows = {r["instance_id"]: r for r in json.loads((out / "report.json").read_text())["instances"]}
    resume = {
        s: (rows[i]["reused"], rows[i]["rescored"], rows[i]["rescored_branches"]) for s, i in ids.items()
    }
    assert resume == {
        "errored": (False, "full", []),
        "branch_error": (False, "part", [branches[1]]),
        "missing_branch": (False, "part", [branches[0]]),
        "complete": (True, "", []),
        "edited": (False, "full", []),
    }
    assert rows[ids["errored"]]["rescore_reason"] == "its eval.json has error_code compile_failed"
    assert rows[ids["edited"]]["rescore_reason"] == "its eval.json changed after it was scored"
    resumed.stdout.fnmatch_lines(
        [
            "verdicts from the run directory: 1 reused, 2 re-scored in part, 2 re-scored in full",
            f"  {ids['branch_error']}: re-scored branches {branches[1]}",
            f"  {ids['edited']}: re-scored in full: its eval.json changed after it was scored",
        ]
    )
    # Each branch runs in a container off the committed programbench-compiled/<id> image; the
    # compile (or an agent's sandbox, were one started) off the task image.
    containers = {s: created.of(i) for s, i in ids.items()}
    assert containers == {
        "errored": {"task": 1, "branches": 2},
        "branch_error": {"task": 1, "branches": 1},
        "missing_branch": {"task": 1, "branches": 1},
        "complete": {"task": 0, "branches": 0},
        "edited": {"task": 1, "branches": 2},
    }

    # What `programbench eval <run_dir>` (no --force) does with the copy, via its own function.
    official = programbench_eval(tasks, blobs, theirs, theirs, ids.values(), cpus=1, force=False)
    for state, iid in ids.items():
        summary = official[iid]
        row = rows[iid]
        assert (row["score"], row["n_resolved"], row["n_tests"], row["error_code"], row["branch_errors"]) == (
            summary.score,
            summary.n_resolved,
            summary.n_tests,
            summary.error_code,
            summary.test_branch_errors,
        ), state
        assert (summary.n_resolved, summary.n_tests) == (15, 18), state
        if state == "complete":
            # Nothing ran on either side: both rewrote the file from the JUnit XML in its log.
            assert eval_json(out, iid).read_bytes() == eval_json(theirs, iid).read_bytes()
        elif state != "edited":  # the official tool trusts an edited file; we score it again
            assert essence(eval_json(out, iid)) == essence(eval_json(theirs, iid)), state
