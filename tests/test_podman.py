"""The whole pipeline on Podman, rootful and rootless, scoring exactly as on Docker.

Debian's Podman serves the Docker API (``podman system service``, tests/engines.py); a
session on ``--pb-docker-host`` of that socket runs the sandbox and the agent, packs the
workspace, has the official evaluator score it (through the ``podman`` CLI), audits it
through the engine's own diff and process list (no overlay shortcut: Podman's storage is
not Docker's overlay2) and sweeps what it started. The same submissions replayed on the
Docker engine must score and be flagged exactly alike. Rootless Podman on this machine's
cgroup v1 ignores every resource limit; the header says so, and the scores still agree.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engines import PodmanEngine
from support import clone_selftest, run_session, session_command

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_RUN, Engine

# The agent writes, per instance: the reference source, a broken copy (15/18), or the reference
# built by a compile.sh that also leaves a login hook outside /workspace and a process behind.
AGENT = """
from pytest_programbench import selftest

COMPILE = "#!/bin/sh\\nset -e\\ngcc -O2 -o executable rpncalc.c\\n"
HOOK = "echo '# left by compile.sh' > /etc/profile.d/zz-pbtest.sh\\n"
CHEAT = COMPILE + HOOK + "sleep 300 >/dev/null 2>&1 &\\n"


def pytest_programbench_agent(config, instance):
    def agent(instance, sandbox):
        source = selftest.reference_source()
        if "-partial." in instance.instance_id:
            source = source.replace("__builtin_sub_overflow(a, b, &r)", "__builtin_sub_overflow(b, a, &r)")
        sandbox.write_file("rpncalc.c", source)
        sandbox.write_file("compile.sh", CHEAT if "-cheat." in instance.instance_id else COMPILE, mode=0o755)
        sandbox.report(steps=1)
        return {"exit_status": "Submitted"}

    return agent
"""
#: What each kind scores: (n_resolved, n_tests), and what the audit finds (code, path).
EXPECTED = {
    "correct": ((18, 18), set()),
    "partial": ((15, 18), set()),
    "cheat": ((18, 18), {("outside_workspace", "/etc/profile.d/zz-pbtest.sh"), ("compile_left_process", "")}),
}


@pytest.fixture(scope="module", params=["rootful", "rootless"])
def podman(request: pytest.FixtureRequest, selftest_image: str) -> Iterator[PodmanEngine]:
    service = PodmanEngine(rootless=request.param == "rootless")
    service.start()
    try:
        service.load(selftest_image)
        yield service
    finally:
        service.wipe()
        service.stop()


def verdicts(rows: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the engine: the score, its counts, the hidden tests, the audit's findings."""
    return {
        iid: (
            r["score"],
            r["n_resolved"],
            r["n_tests"],
            r["error_code"],
            r.get("hidden_tests"),
            # A process finding's detail is the command line at the moment the audit looked.
            sorted((f["code"], f["path"]) for f in r.get("findings", [])),
        )
        for iid, r in rows.items()
    }


def test_a_selftest_session_on_podman_scores_exactly_as_on_docker(
    engine: Engine, podman: PodmanEngine, selftest_image: str, tmp_path: Path
) -> None:
    from programbench.constants import image_name_from_instance_id

    mode = "rootless" if podman.rootless else "rootful"
    kinds = list(EXPECTED) if not podman.rootless else ["partial", "cheat"]
    _, _, ids = clone_selftest(engine, tmp_path, [f"podman_{mode}_{kind}" for kind in kinds])
    with Engine(podman.host) as on_podman:
        for iid in ids:
            on_podman.tag(selftest_image, f"{image_name_from_instance_id(iid)}:{selftest.IMAGE_TAG}")
    (tmp_path / "conftest.py").write_text(AGENT)
    out = tmp_path / "on-podman"
    said, rows = run_session(tmp_path, out, "-n", "2", f"--pb-docker-host={podman.host}")
    assert set(rows) == set(ids), said
    for kind, iid in zip(kinds, ids, strict=True):
        (counts, findings) = EXPECTED[kind]
        assert (rows[iid]["n_resolved"], rows[iid]["n_tests"]) == counts, (kind, said)
        assert {(f["code"], f["path"]) for f in rows[iid]["findings"]} == findings, (kind, said)
        # Podman's process list, read the way Docker's is: the command, not the whole ps line.
        assert all(f["detail"] in ("added", "sleep 300") for f in rows[iid]["findings"]), rows[iid][
            "findings"
        ]
        assert rows[iid]["engine"] == podman.host
        integrity = json.loads((out / iid / f"{iid}.integrity.json").read_text())
        assert integrity["audit_errors"] == [], integrity  # every look the audit took worked on Podman
    assert "engine Podman " in said, said
    assert (
        "rootless Podman on cgroup v1 ignores every CPU, memory and pids limit" in said
    ) == podman.rootless
    # The evaluator's containers and committed images, and the sandboxes: nothing of the run is left.
    run_id = json.loads((out / "report.json").read_text())["run_id"]
    with Engine(podman.host) as on_podman:
        assert on_podman.labelled({LABEL_RUN: run_id}) == []
        assert on_podman._labelled_images({LABEL_RUN: run_id}) == []
    cleanup = subprocess.run(
        session_command("--pb-cleanup", f"--pb-docker-host={podman.host}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cleanup.returncode == 0 and f"from {podman.host}" in cleanup.stdout, (
        cleanup.stdout + cleanup.stderr
    )

    # The same submissions on Docker: the same verdicts, to the hidden test and the finding.
    (tmp_path / "conftest.py").write_text("")
    said_docker, on_docker = run_session(
        tmp_path, tmp_path / "on-docker", f"--pb-submissions={out}", "-n", "2"
    )
    assert {r["engine"] for r in on_docker.values()} == {engine.host}, said_docker
    assert verdicts(on_docker) == verdicts(rows), said_docker
