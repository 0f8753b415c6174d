"""A session killed with ``kill -9`` mid-item, and the next session on the same run directory.

The first session (one process: the controller is the owner of everything it starts) is
killed while the evaluator tests a branch: its agent's container, the branch's container
and the image the evaluator committed stay on the engine, labelled with its owner. The next
session on the same ``--pb-output`` must remove exactly those (their owner is provably dead),
remove the partial files of dead writers and keep a live writer's, and score the packed
submission without running the agent again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from support import clone_selftest, session_command, session_options

from pytest_programbench.engine.containers import LABEL_INSTANCE, LABEL_OWNER, LABEL_RUN, Engine

# The executable the agent builds answers each call a second late, so the branch the first
# session is killed in is still running when the kill comes.
CONFTEST = """
from pathlib import Path
from pytest_programbench import selftest

COMPILE = (
    "#!/bin/sh\\nset -e\\ngcc -O2 -o rpncalc.real rpncalc.c\\n"
    "printf '#!/bin/sh\\\\nsleep 1\\\\nexec /workspace/rpncalc.real \\"$@\\"\\\\n' > executable\\n"
    "chmod +x executable\\n"
)

def pytest_programbench_agent(config, instance):
    def agent(instance, sandbox):
        with (Path(__file__).parent / "agent-calls.log").open("a") as f:
            f.write(instance.instance_id + "\\n")
        sandbox.write_file("rpncalc.c", selftest.reference_source())
        sandbox.write_file("compile.sh", COMPILE, mode=0o755)
    return agent
"""


def _images(engine: Engine, run_id: str) -> list[str]:
    return [str(i.id) for i in engine.client.images.list(filters={"label": f"{LABEL_RUN}={run_id}"})]


def test_the_next_session_sweeps_what_a_killed_one_left_and_keeps_its_work(
    pytester: pytest.Pytester, engine: Engine, selftest_image: str
) -> None:
    _, _, [iid] = clone_selftest(engine, pytester.path, ["killed"])  # the tasks and blobs under it
    pytester.makeconftest(CONFTEST)
    out = pytester.path / "out"
    options = session_options(pytester.path, out, "-p", "no:xdist")
    first = subprocess.Popen(session_command(*options), cwd=pytester.path, stdout=subprocess.DEVNULL)
    dead_run = ""
    try:
        # Until a branch's container runs, off the image the evaluator committed.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and first.poll() is None:
            boxes = engine.labelled({LABEL_INSTANCE: iid})
            if any(str(b.attrs["Config"]["Image"]).startswith("programbench-compiled/") for b in boxes):
                dead_run = boxes[0].labels[LABEL_RUN]
                break
            time.sleep(0.2)
        assert dead_run, "the first session never reached a branch"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(60)
        left = engine.labelled({LABEL_RUN: dead_run})
        assert {b.labels[LABEL_OWNER] for b in left} == {f"{os.uname().nodename}:{first.pid}"}
        assert len(left) == 2 and len(_images(engine, dead_run)) == 1  # sandbox, branch; the commit
        assert (out / iid / "agent.json").is_file()  # the agent's packed work is vouched for

        stray = out / iid / f"{iid}.eval.json.{first.pid}.partial"  # as a killed writer leaves one
        stray.write_text("{")
        live = out / iid / f"notes.txt.{os.getpid()}.partial"  # a live writer's: not ours to take
        live.write_text("")
        second = pytester.run(*session_command(*options), timeout=900)

        second.stdout.fnmatch_lines(
            ["programbench: removed 3 container(s) and image(s) and 1 partial file(s) that killed sessions*"]
        )
        assert engine.labelled({LABEL_RUN: dead_run}) == [] and _images(engine, dead_run) == []
        assert not stray.exists() and live.exists()
        [row] = json.loads((out / "report.json").read_text())["instances"]
        assert (row["outcome"], row["n_resolved"]) == ("resolved", 18)
        assert row["agent"] == "pytest_programbench_agent.<locals>.agent"  # its run, from the marker
        assert (pytester.path / "agent-calls.log").read_text().splitlines() == [iid]  # not run again
        # The ledger names no session once both are done: the killed one was swept, the second ended.
        assert (out / ".programbench.sessions").read_text() == ""
    finally:
        if first.poll() is None:
            first.kill()
        if dead_run:
            engine.sweep({LABEL_RUN: dead_run})
