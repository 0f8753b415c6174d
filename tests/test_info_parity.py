"""`programbench info` reads our run directory and agrees with our scores, for real task ids.

`info` scores only the package's own tasks (it reads their tests.json to drop ignored
branches and tests), so this session scores three real C tasks through stand-ins
(tests/realtask.py): their real task.yaml and tests.json, the self-test image tagged under
their image names (in a private PROGRAMBENCH_DOCKER_ORG), generated hidden tests with their
real test names. Each submission gets
a different verdict: every test passes, about two thirds pass, the compile fails.
`programbench info <run dir>` is then run twice: the console script as users run it (its
table is parsed), and the same command with its summary objects dumped as JSON (the table
rounds scores to whole percents and shows no passed counts).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from realtask import ImageTags, expected_counts, write_c_submission, write_task

from pytest_programbench.engine.containers import Engine


def _name_length_not_multiple_of_3(name: str) -> bool:
    return len(name.encode()) % 3 != 0


@dataclass(frozen=True)
class Case:
    source: str  # main.c of the submission
    passes: Callable[[str], bool]  # which generated tests it passes, by test name
    error_code: str | None


CASES: dict[str, Case] = {
    # 1 branch, 1093 tests (40 ignored)
    "arq5x__bedtools2.dd57059": Case("int main(void) { return 0; }\n", lambda name: True, None),
    # 2 branches, 440 tests (11 ignored); no eval_clean_hashes, no difficulty
    "lh3__seqtk.94e7070": Case(
        "#include <string.h>\n"
        "int main(int argc, char **argv) { return argc > 1 && strlen(argv[1]) % 3 == 0; }\n",
        _name_length_not_multiple_of_3,
        None,
    ),
    # 6 branches, 319 tests (38 ignored); eval_clean_hashes; none of its branches runs
    "xorg62__tty-clock.f2f847c": Case(
        '#error "deliberate compile failure"\nint main(void) { return 0; }\n',
        lambda name: False,
        "compile_failed",
    ),
}


@dataclass(frozen=True)
class StandIns:
    tasks: Path
    blobs: Path
    runs: Path
    docker_org: str  # PROGRAMBENCH_DOCKER_ORG of the task images


@pytest.fixture(scope="module")
def stand_ins(
    engine: Engine, selftest_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StandIns]:
    root = tmp_path_factory.mktemp("realtasks")
    tasks, blobs, runs = root / "tasks", root / "blobs", root / "runs"
    # One org per fixture instance: xdist workers each build this fixture and tear it down.
    tags = ImageTags(engine, selftest_image, org=f"pbtest-info-{uuid.uuid4().hex[:12]}")
    try:
        for iid, case in CASES.items():
            tags.add(iid)
            write_task(iid, tasks, blobs)
            write_c_submission(runs / iid, case.source)
        yield StandIns(tasks, blobs, runs, tags.org)
    finally:
        tags.remove_all()


def programbench_cli() -> list[str]:
    script = Path(sys.executable).with_name("programbench")
    found = str(script) if script.is_file() else shutil.which("programbench")
    assert found, "the programbench console script is not installed next to this Python nor on PATH"
    return [found]


def _env() -> dict[str, str]:
    # Wide enough that rich never wraps a row; UTF-8 for the ✅ of a solved task.
    return {**os.environ, "COLUMNS": "240", "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1", "TERM": "dumb"}


def info_table(run_dir: Path) -> tuple[dict[str, tuple[str, str]], tuple[str, str]]:
    """`programbench info run_dir`: {instance: (score cell, comment cell)} and the Average row."""
    proc = subprocess.run(
        [*programbench_cli(), "info", str(run_dir)],
        capture_output=True,
        encoding="utf-8",
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows: dict[str, tuple[str, str]] = {}
    average = ("", "")
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s*(\S+)\s+(✅|\d+)\s+(\S.*?)\s*$", line)
        if m is None:
            continue
        if m[1] == "Average":
            average = (m[2], m[3])
        else:
            rows[m[1]] = (m[2], m[3])
    return rows, average


# `programbench info` itself, with BatchEvalSummary.summary() (what it prints) also dumping
# the summaries it computed: exact scores and counts, not the rounded table.
_DUMPING_INFO = """
import sys
from programbench.cli.main import app
from programbench.eval.eval_batch import BatchEvalSummary

dump, run_dir = sys.argv[1], sys.argv[2]
table = BatchEvalSummary.summary

def summary(self):
    open(dump, "w").write(self.model_dump_json())
    return table(self)

BatchEvalSummary.summary = summary
sys.argv = ["programbench", "info", run_dir]
app()
"""


def info_summaries(run_dir: Path, dump: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _DUMPING_INFO, str(dump), str(run_dir)],
        capture_output=True,
        encoding="utf-8",
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    batch: dict[str, Any] = json.loads(dump.read_text())
    return batch


@pytest.mark.parametrize("workers", ["0", "2"], ids=["n0", "n2"])
def test_programbench_info_agrees_with_our_report(
    pytester: pytest.Pytester, stand_ins: StandIns, workers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, report = pytester.path / "out", pytester.path / "report.json"
    monkeypatch.setenv("PROGRAMBENCH_DOCKER_ORG", stand_ins.docker_org)  # read by the session only
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        f"--pb-tasks-dir={stand_ins.tasks}",
        f"--pb-blob-dir={stand_ins.blobs}",
        f"--pb-submissions={stand_ins.runs}",
        "--pb-pull=never",
        "--pb-cpus=1",
        f"--pb-output={out}",
        f"--pb-report={report}",
        "-n",
        workers,
    )
    print(f"session -n {workers}: {time.monotonic() - started:.1f}s")
    result.stdout.fnmatch_lines(["*1 resolved, 1 partial, 1 zero*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    ours = {row["instance_id"]: row for row in json.loads(report.read_text())["instances"]}
    assert set(ours) == set(CASES)

    # Our verdicts are what the generated hidden tests decide.
    for iid, case in CASES.items():
        n_resolved, n_tests = expected_counts(iid, case.passes)
        assert (ours[iid]["n_resolved"], ours[iid]["n_tests"], ours[iid]["error_code"]) == (
            n_resolved,
            n_tests,
            case.error_code,
        ), iid
        assert ours[iid]["score"] == n_resolved / n_tests
        assert (out / iid / f"{iid}.eval.json").is_file()
        assert (out / iid / "submission.tar.gz").is_file()
    assert 0 < ours["lh3__seqtk.94e7070"]["score"] < 1

    # programbench info: exact numbers.
    started = time.monotonic()
    batch = info_summaries(out, pytester.path / "info.json")
    theirs = {s["instance_id"]: s for s in batch["summaries"]}
    assert set(theirs) == set(ours)
    for iid, row in ours.items():
        assert (theirs[iid]["score"], theirs[iid]["n_resolved"], theirs[iid]["n_tests"]) == (
            row["score"],
            row["n_resolved"],
            row["n_tests"],
        ), iid
        assert theirs[iid]["error_code"] == row["error_code"], iid
        assert theirs[iid]["test_branch_errors"] == row["branch_errors"], iid
        assert (theirs[iid]["n_system_errors"], theirs[iid]["n_warnings"]) == (0, 0), iid
    mean = sum(r["score"] for r in ours.values()) / len(ours)
    assert batch["average_pass_rate"] == pytest.approx(mean)

    # programbench info: the table users read.
    table, average = info_table(out)
    assert set(table) == set(ours)
    for iid, row in ours.items():
        score = "✅" if row["score"] == 1.0 else f"{row['score'] * 100:.0f}"
        comment = f"ERROR: {row['error_code']}" if row["error_code"] else f"{row['n_tests']} tests"
        assert table[iid] == (score, comment), iid
    assert average == (f"{mean * 100:.0f}", f"{len(ours)} instances")
    print(f"programbench info (twice): {time.monotonic() - started:.1f}s")
