"""Host memory and writes stay bounded whatever an agent or a build prints, on the real engine.

One session (one process: the harness is what is measured) runs three agents: one whose
compile.sh prints 300 MB before building a correct solution, one that reports a 300 MB
trajectory, and a ``command`` agent that prints 200 MB. The harness's peak RSS, as the
kernel reports it (VmHWM, read at the session's end), stays far below what any of them
used to cost (1.5 GB for the build, ~900 MB for the trajectory; about 80 MB is the
session's own), and each file keeps its head and tail and counts the cut.
"""

from __future__ import annotations

import json

import pytest
from support import clone_selftest, session_command

from pytest_programbench.agents.agent import AGENT_LOG_HEAD_BYTES, AGENT_LOG_TAIL_BYTES
from pytest_programbench.agents.sandbox import TRAJECTORY_MAX_CHARS
from pytest_programbench.engine.containers import LABEL_RUN, Engine
from pytest_programbench.scoring.evaluator import STEP_OUTPUT_HEAD, STEP_OUTPUT_TAIL

BUILD_OUTPUT = 300_000_000
AGENT_OUTPUT = 200_000_000
TRAJECTORY = {"messages": ["x" * 1000] * 300_000}  # 300 MB of JSON, little memory in the agent

CONFTEST = f"""
from pathlib import Path
from pytest_programbench import selftest
from pytest_programbench.agents.agent import CommandAgent
from pytest_programbench.keys import RUN_DIR_KEY

SOURCE = selftest.reference_source()
QUIET = "#!/bin/sh\\nset -e\\ngcc -O2 -o executable rpncalc.c\\n"
LOUD = QUIET.replace("set -e\\n", "set -e\\nhead -c {BUILD_OUTPUT} /dev/zero | tr '\\\\0' x\\n")

def solve(sandbox, compile_sh):
    sandbox.write_file("rpncalc.c", SOURCE)
    sandbox.write_file("compile.sh", compile_sh, mode=0o755)

def loud(instance, sandbox):
    solve(sandbox, LOUD)

def big_trajectory(instance, sandbox):
    solve(sandbox, QUIET)
    sandbox.report(trajectory={{"messages": ["x" * 1000] * 300_000}})

def pytest_programbench_agent(config, instance):
    if "loud-build" in instance.instance_id:
        return loud
    if "big-trajectory" in instance.instance_id:
        return big_trajectory
    command = "head -c {AGENT_OUTPUT} /dev/zero | tr '\\\\0' y; echo done"
    return CommandAgent(command, config.stash[RUN_DIR_KEY] / instance.rel_dir).run

def pytest_sessionfinish(session):
    status = Path("/proc/self/status").read_text().splitlines()
    [peak] = [line.split()[1] for line in status if line.startswith("VmHWM:")]
    Path(__file__).with_name("vmhwm-kb").write_text(peak)
"""


def test_big_output_and_trajectories_cost_the_host_little(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    tasks, blobs, ids = clone_selftest(engine, pytester.path, ["loud_build", "big_trajectory", "chatty"])
    loud, big, chatty = ids
    pytester.makeconftest(CONFTEST)
    out = pytester.path / "out"
    result = pytester.run(
        *session_command(
            f"--pb-tasks-dir={tasks}",
            f"--pb-blob-dir={blobs}",
            f"--pb-output={out}",
            f"--pb-report={out / 'report.json'}",
            "--pb-cpus=1",
            "--pb-pull=never",
            "-p",
            "no:xdist",  # one process: the harness, all three items
        ),
        timeout=900,
    )
    report = json.loads((out / "report.json").read_text())
    rows = {r["instance_id"]: r for r in report["instances"]}
    assert (rows[loud]["outcome"], rows[loud]["n_resolved"]) == ("resolved", 18)
    assert rows[big]["outcome"] == "resolved"
    assert rows[chatty]["agent_exit_status"] == "Submitted", result.stdout.str()

    peak_mb = int((pytester.path / "vmhwm-kb").read_text()) / 1024
    print(f"harness peak RSS (VmHWM): {peak_mb:.0f} MB")
    assert peak_mb < 400

    # The build log: eval.json keeps its head and tail (the official tool keeps all 300 MB).
    eval_json = out / loud / f"{loud}.eval.json"
    assert eval_json.stat().st_size < 4 * (STEP_OUTPUT_HEAD + STEP_OUTPUT_TAIL)
    [compile_step] = [e for e in json.loads(eval_json.read_text())["log"] if e["step"] == "compile"]
    cut = BUILD_OUTPUT - STEP_OUTPUT_HEAD - STEP_OUTPUT_TAIL
    assert compile_step["output"] == (
        "x" * STEP_OUTPUT_HEAD
        + f"\n[... {cut} characters of output cut by pytest-programbench ...]\n"
        + "x" * STEP_OUTPUT_TAIL
    )

    # The trajectory: its ends, and how long it was.
    saved = json.loads((out / big / f"{big}.traj.json").read_text())
    compact = json.dumps(TRAJECTORY)
    assert saved["pb_trajectory_cut"]["characters"] == len(compact)
    assert saved["head"] == compact[: TRAJECTORY_MAX_CHARS // 2]
    assert saved["tail"] == compact[-(TRAJECTORY_MAX_CHARS // 2) :]

    # The command agent's log: its first and last 8 MiB.
    log = (out / chatty / "agent.log").read_bytes()
    note = f"\n[... {AGENT_OUTPUT + 5 - AGENT_LOG_HEAD_BYTES - AGENT_LOG_TAIL_BYTES} bytes of output cut"
    assert log.startswith(b"y" * AGENT_LOG_HEAD_BYTES + note.encode())
    assert log.endswith(b"y" * (AGENT_LOG_TAIL_BYTES - 5) + b"done\n")
    assert len(log) < AGENT_LOG_HEAD_BYTES + AGENT_LOG_TAIL_BYTES + 100
    assert engine.labelled({LABEL_RUN: report["run_id"]}) == []
