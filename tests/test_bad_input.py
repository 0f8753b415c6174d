"""Bad run directories and task files end in one clear error, on the real engine (issue 21).

A read-only ``--pb-output`` is a usage error (it was an INTERNALERROR); a run directory that
turns read-only while an item runs is that item's ``run_dir_unwritable`` error naming the file,
with the agent's workspace kept; a directory standing where eval.json goes, and a tests.json
with no active branch, stop their items before an agent runs, naming the path; a task.yaml
whose ``commit`` YAML reads as a number is taken, as programbench's own loader takes it.

Read-only is made the way a user meets it: a read-only bind mount as root (root ignores
modes), the directory's write bits otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import clone_selftest, session_command

from pytest_programbench.engine.containers import LABEL_RUN, Engine

READ_ONLY = """
import os, subprocess

def read_only(path):
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", "-o", "ro", str(path), str(path)], check=True)
    else:
        os.chmod(path, 0o555)
"""


@contextlib.contextmanager
def undone(path: Path) -> Iterator[None]:
    """Afterwards, make ``path`` writable again (however read_only made it read-only)."""
    try:
        yield
    finally:
        while subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0:
            subprocess.run(["umount", str(path)], check=True)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o755)


def read_only(path: Path) -> None:
    namespace: dict[str, object] = {}
    exec(READ_ONLY, namespace)
    namespace["read_only"](path)  # type: ignore[operator]


def test_a_read_only_output_directory_is_a_usage_error(
    pytester: pytest.Pytester, selftest_image: str
) -> None:
    out = pytester.path / "out"
    out.mkdir()
    with undone(out):
        read_only(out)
        result = pytester.run(*session_command("--pb-selftest", f"--pb-output={out}"), timeout=300)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"*the run directory {out} (--pb-output) cannot be written (*)*"])


MID_RUN = (
    READ_ONLY
    + """
from pathlib import Path
from pytest_programbench import selftest
from pytest_programbench.keys import RUN_DIR_KEY

def pytest_programbench_agent(config, instance):
    instance_dir = config.stash[RUN_DIR_KEY] / instance.rel_dir
    def agent(instance, sandbox):
        sandbox.write_file("rpncalc.c", selftest.reference_source())
        (Path(__file__).parent / "read-only-dir").write_text(str(instance_dir))
        read_only(instance_dir)  # a disk remounted read-only while the agent worked
    return agent
"""
)


def test_a_run_directory_turning_read_only_mid_item_is_named_and_the_workspace_kept(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    tasks, blobs, [iid] = clone_selftest(engine, pytester.path, ["read_only"])
    pytester.makeconftest(MID_RUN)
    out = pytester.path / "out"
    report = pytester.path / "report.json"
    with undone(out / iid):
        result = pytester.run(
            *session_command(
                f"--pb-tasks-dir={tasks}",
                f"--pb-blob-dir={blobs}",
                f"--pb-output={out}",
                f"--pb-report={report}",
                "--pb-cpus=1",
                "--pb-pull=never",
            ),
            timeout=600,
        )
    document = json.loads(report.read_text())
    [row] = document["instances"]
    kept = engine.labelled({LABEL_RUN: document["run_id"]})
    try:
        assert (row["outcome"], row["error_code"]) == ("error", "run_dir_unwritable"), result.stdout.str()
        assert (pytester.path / "read-only-dir").read_text() == str(out / iid)
        assert row["message"].startswith(f"cannot write {out / iid}/submission.tar.gz.")
        assert f"the run directory {out / iid} is not writable; the workspace is kept" in row["message"]
        [container] = kept
        assert (
            container.name.startswith("pb-kept-")
            and f"docker cp {container.name}:/workspace" in row["message"]
        )
        assert b"int main" in engine.read_file(container, "/workspace/rpncalc.c")
        result.stdout.fnmatch_lines(["*= ProgramBench =*", "*run_dir_unwritable*"])
        assert "INTERNALERROR" not in result.stdout.str()
    finally:
        for container in kept:
            engine.remove(container)


NO_AGENT = """
from pathlib import Path

def pytest_programbench_agent(config, instance):
    def agent(instance, sandbox):
        with (Path(__file__).parent / "agent-calls.log").open("a") as f:
            f.write(instance.instance_id + "\\n")
    return agent
"""


def test_a_directory_for_eval_json_and_a_task_without_branches_stop_before_the_agent(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    tasks, blobs, [dir_iid, none_iid] = clone_selftest(engine, pytester.path, ["eval_dir", "no_branch"])
    out = pytester.path / "out"
    in_the_way = out / dir_iid / f"{dir_iid}.eval.json"
    (in_the_way / "notes").mkdir(parents=True)
    tests_json = tasks / none_iid / "tests.json"
    data = json.loads(tests_json.read_text())
    for info in data["branches"].values():
        info["ignored"] = True
    tests_json.write_text(json.dumps(data))
    pytester.makeconftest(NO_AGENT)
    report = pytester.path / "report.json"
    result = pytester.run(
        *session_command(
            f"--pb-tasks-dir={tasks}",
            f"--pb-blob-dir={blobs}",
            f"--pb-output={out}",
            f"--pb-report={report}",
            "--pb-cpus=1",
            "--pb-pull=never",
        ),
        timeout=600,
    )
    rows = {r["instance_id"]: r for r in json.loads(report.read_text())["instances"]}
    assert (rows[dir_iid]["error_code"], rows[none_iid]["error_code"]) == ("run_dir_invalid", "task_invalid")
    assert rows[dir_iid]["message"] == (
        f"{in_the_way} is a directory, where the evaluator's result (eval.json) goes. Move it out of the run "
        "directory (or delete it) and rerun; nothing was run for this item"
    )
    branches = ", ".join(sorted(data["branches"]))
    problem = f"every branch is ignored ({branches}), so no hidden test would run"
    assert rows[none_iid]["message"].startswith(f"task file {tests_json} is invalid: {problem}")
    assert not (pytester.path / "agent-calls.log").exists() and (in_the_way / "notes").is_dir()
    assert (
        "IsADirectoryError" not in result.stdout.str()
        and "needs at least one branch" not in result.stdout.str()
    )


def test_a_commit_of_digits_is_taken_as_programbench_takes_it(
    pytester: pytest.Pytester, engine: Engine
) -> None:
    tasks, _, [iid] = clone_selftest(engine, pytester.path, ["digits"])
    task_yaml = tasks / iid / "task.yaml"
    task_yaml.write_text(task_yaml.read_text().replace("commit:", "commit: 1234567\nold_commit:", 1))
    result = pytester.run(*session_command(f"--pb-tasks-dir={tasks}", "--collect-only", "-q"), timeout=300)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.stdout.fnmatch_lines([f"programbench::instance[[]{iid}[]]"])
