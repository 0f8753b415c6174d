"""An engine that dies, or a session stopped with SIGTERM: one clear error, no leak, a summary.

The engine-kill cases run on a second dockerd of their own (tests/engines.py), so killing it
leaves the engine the rest of the suite uses alone. Each session is a real pytest process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from engines import SecondEngine
from support import clone_selftest, wait_for
from support import session_options as options

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_RUN, Engine

SLOW_AGENT = """
def pytest_programbench_agent(config, instance):
    def agent(instance, sandbox):
        sandbox.exec("sleep 600")
    return agent
"""


def session(cwd: Path, *args: str, host: str | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if host is not None:
        env["DOCKER_HOST"] = host
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def labelled(host: str, run_id: str | None) -> dict[str, list[Any]]:
    """What the engine still holds with our run label (containers and images)."""
    with Engine(host) as eng:
        labels = {LABEL_RUN: run_id}
        return {"containers": eng.labelled(labels), "images": eng._labelled_images(labels)}


def only_row(out: Path) -> dict[str, Any]:
    (row,) = json.loads((out / "report.json").read_text())["instances"]
    return dict(row)


def cleanup_on(host: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--pb-cleanup"],
        cwd=cwd,
        env={**os.environ, "DOCKER_HOST": host},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_an_engine_dying_mid_item_is_one_clear_error_and_leaks_nothing(
    engine_b: SecondEngine, tmp_path: Path
) -> None:
    # One test for both phases, not a parametrized pair: xdist could run a pair on two workers
    # at once, and one would kill the engine under the other.
    for phase in ("agent", "scoring"):
        engine_dies_during(phase, engine_b, tmp_path / phase)


def engine_dies_during(phase: str, engine_b: SecondEngine, tmp_path: Path) -> None:
    tmp_path.mkdir()
    with Engine(engine_b.host) as eng:
        clone_selftest(eng, tmp_path, [f"enginekill_{phase}"])
    out = tmp_path / "out"
    if phase == "agent":
        (tmp_path / "conftest.py").write_text(SLOW_AGENT)
        args = options(tmp_path, out)
        ready = r"\+\d+s agent \S+ started$"
    else:
        runs = tmp_path / "runs"
        (iid,) = [p.name for p in (tmp_path / "tasks").iterdir()]
        selftest.write_submission("correct", runs / iid)
        args = options(tmp_path, out, f"--pb-submissions={runs}")
        ready = r"scoring: testing branch 1/"
    proc = session(tmp_path, *args, host=engine_b.host)
    try:
        wait_for(out / "progress.log", ready, proc)
        engine_b.kill()
        output = proc.communicate(timeout=300)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        engine_b.start()
    # One error for the one item, with its cause, and the summary still printed.
    assert "= 1 error in" in output, output
    assert "= ProgramBench =" in output
    row = only_row(out)
    assert (row["outcome"], row["error_code"]) == ("error", "engine_unavailable"), row
    assert engine_b.host in row["message"]
    assert not (out / row["instance_id"] / "programbench.json").exists()  # nothing passes for finished

    # Back up, the engine still holds what the dead session could not remove: all of it labelled,
    # and --pb-cleanup (the session's owner is provably dead) takes it all.
    run_id = json.loads((out / "report.json").read_text())["run_id"]
    leftovers = labelled(engine_b.host, run_id)
    # The kill may land before the branch's container exists; the committed image always does.
    assert leftovers["containers"] or leftovers["images"], "nothing of the killed item outlived the engine"
    said = cleanup_on(engine_b.host, tmp_path)
    assert "removed" in said
    assert labelled(engine_b.host, run_id) == {"containers": [], "images": []}


def test_sigterm_while_scoring_stops_like_ctrl_c_and_removes_everything(
    engine: Engine, selftest_image: str, tmp_path: Path
) -> None:
    _, _, (iid,) = clone_selftest(engine, tmp_path, ["sigterm_scoring"])
    runs = tmp_path / "runs"
    selftest.write_submission("correct", runs / iid)
    out = tmp_path / "out"
    proc = session(tmp_path, *options(tmp_path, out, f"--pb-submissions={runs}"))
    try:
        wait_for(out / "progress.log", r"scoring: testing branch 1/", proc)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=180)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "= ProgramBench =" in output, output
    row = only_row(out)
    assert (row["outcome"], row["error_code"]) == ("not_run", "not_run")
    run_id = json.loads((out / "report.json").read_text())["run_id"]
    assert labelled(engine.host, run_id) == {"containers": [], "images": []}
    # The evaluator's committed image is gone too (the evaluator's own finally, or our sweep).
    assert engine.client.images.list(name=f"programbench-compiled/{iid}") == []
