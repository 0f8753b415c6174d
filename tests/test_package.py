"""--pb-package on the real engine: a run of real benchmark ids becomes a submission `programbench submit
verify` accepts, and our own run directory packages with the official tool as it is.

The instances are stand-ins for two real C tasks (tests/realtask.py: their real task.yaml and
tests.json, the self-test image under their image names in a private PROGRAMBENCH_DOCKER_ORG,
generated hidden tests), solved by an agent from conftest.py that reports its steps, cost and
a trajectory, so the package has everything the official packager leaves as TODO to fill.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from realtask import ImageTags, write_task
from support import run_session

from pytest_programbench.engine.containers import Engine

SOURCES = {
    # 2 branches, 440 tests (11 ignored): about two thirds pass
    "lh3__seqtk.94e7070": "#include <string.h>\n"
    "int main(int argc, char **argv) { return argc > 1 && strlen(argv[1]) % 3 == 0; }\n",
    # 6 branches, 319 tests: the compile fails, and still it is an entry of the submission (score 0)
    "xorg62__tty-clock.f2f847c": '#error "deliberate compile failure"\nint main(void) { return 0; }\n',
}
AGENT = """
SOURCES = {sources!r}


def pytest_programbench_agent(config, instance):
    def agent(instance, sandbox):
        sandbox.write_file("main.c", SOURCES[instance.instance_id])
        sandbox.write_file("compile.sh", "#!/bin/sh\\nset -e\\ngcc -O2 -o executable main.c\\n", mode=0o755)
        built = sandbox.exec("./compile.sh", timeout=120)
        said = [{{"role": "assistant", "content": "wrote main.c"}}]
        sandbox.report(steps=2, cost=0.125, trajectory={{"messages": said, "built": built.returncode}})
        return {{"exit_status": "Submitted"}}

    return agent
"""
#: Our files in a run directory; none of them belongs in a submission.
OURS = ("programbench.json", "agent.json", "prompt.md", "agent.log")


def programbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("programbench")
    command = [str(script) if script.is_file() else "programbench", *args]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def stats(folder: Path) -> dict[str, Any]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "_stats").glob("*.json"))}


def test_a_run_of_real_ids_packages_and_verifies(engine: Engine, selftest_image: str, tmp_path: Path) -> None:
    tags = ImageTags(engine, selftest_image, org=f"pbtest-package-{uuid.uuid4().hex[:12]}")
    try:
        for iid in SOURCES:
            tags.add(iid)
            write_task(iid, tmp_path / "tasks", tmp_path / "blobs")
        (tmp_path / "conftest.py").write_text(AGENT.format(sources=SOURCES))
        env = {**os.environ, "PROGRAMBENCH_DOCKER_ORG": tags.org}
        out, pkg = tmp_path / "out", tmp_path / "pkg"
        options = (f"--pb-package={pkg}", "--pb-model=someprovider/model-x", "-n", "2")
        said, rows = run_session(tmp_path, out, *options, env=env)
        assert set(rows) == set(SOURCES), said
        assert rows["xorg62__tty-clock.f2f847c"]["error_code"] == "compile_failed", said
        assert 0 < rows["lh3__seqtk.94e7070"]["score"] < 1, said
        assert "2 instance(s) packaged for the leaderboard" in said and "PASS, 2/2 checks" in said, said

        # The official verifier accepts it.
        verified = programbench("submit", "verify", str(pkg), cwd=tmp_path)
        assert verified.returncode == 0 and "PASS" in verified.stdout, verified.stdout + verified.stderr
        score = json.loads((pkg / "_stats" / "score.json").read_text())
        assert set(score) == set(SOURCES)
        assert sum(score["lh3__seqtk.94e7070"].values()) == rows["lh3__seqtk.94e7070"]["n_resolved"]

        # What the official packager leaves as TODO, filled from the session.
        manifest = yaml.safe_load((pkg / "submission.yaml").read_text())
        assert manifest["system"]["agent"] == rows["lh3__seqtk.94e7070"]["agent"]
        assert (manifest["system"]["model"], manifest["system"]["provider"]) == (
            "someprovider/model-x",
            "someprovider",
        )
        assert manifest["submitter"]["name"] == "TODO"  # unknown to us: the summary says so
        assert "still TODO in submission.yaml" in said and "submitter.name" in said
        assert stats(pkg)["cost"] == dict.fromkeys(SOURCES, 0.125)
        assert stats(pkg)["steps"] == dict.fromkeys(SOURCES, 2)
        assert set(stats(pkg)["wall_time"]) == set(SOURCES) and "tokens" not in stats(pkg)
        for iid in SOURCES:
            trajectory = json.loads((pkg / iid / f"{iid}.traj.json").read_text())
            assert trajectory["messages"][0]["content"] == "wrote main.c"
            assert not [name for name in OURS if (pkg / iid / name).exists()]
        record = json.loads((pkg / "_pytest_programbench" / "run.json").read_text())
        assert (record["settings"]["cpus"], record["agent"]["model"]) == (1, "someprovider/model-x")
        assert record["versions"]["programbench"] and record["engines"][0]["scoring_cpus"] == 1
        assert not (pkg / ".programbench.lock").exists() and not (pkg / "progress.log").exists()
        # The stats come from the script shipped beside them, which anyone can run again.
        before = stats(pkg)
        subprocess.run([sys.executable, str(pkg / "_scripts" / "agent_stats.py"), str(pkg)], check=True)
        assert stats(pkg) == before

        # The run directory is left as it was: eval.json whole (not split), still ours to resume.
        eval_json = json.loads((out / "lh3__seqtk.94e7070" / "lh3__seqtk.94e7070.eval.json").read_text())
        assert eval_json["log"], "the run directory's eval.json was split"

        # ... and it packages with the official tool as it is, our markers, lock and logs beside.
        copy = tmp_path / "as-is"
        shutil.copytree(out, copy)
        assert (copy / "progress.log").is_file() and (
            copy / "lh3__seqtk.94e7070" / "programbench.json"
        ).is_file()
        packaged = programbench("submit", "package", str(copy), cwd=tmp_path)
        assert packaged.returncode == 0 and "Packaged 2 instance(s)" in packaged.stdout, packaged.stdout
        assert programbench("submit", "verify", str(copy), cwd=tmp_path).returncode == 0
        assert json.loads((copy / "_stats" / "score.json").read_text()) == score

        # Packaging again (no agent runs again; the failed compile is scored again, as programbench
        # eval redoes an eval.json with an error_code) keeps what someone filled in by hand.
        manifest["submitter"]["name"] = "Ada Lovelace"
        manifest["system"]["model"] = "model-x, 2026-06 snapshot"
        (pkg / "submission.yaml").write_text(yaml.safe_dump(manifest))
        said, again = run_session(tmp_path, out, *options, env=env)
        assert again["lh3__seqtk.94e7070"]["reused"] and again["xorg62__tty-clock.f2f847c"]["rescored"], said
        assert {i: r["agent_seconds"] for i, r in again.items()} == {
            i: r["agent_seconds"] for i, r in rows.items()
        }
        manifest = yaml.safe_load((pkg / "submission.yaml").read_text())
        assert (manifest["submitter"]["name"], manifest["system"]["model"]) == (
            "Ada Lovelace",
            "model-x, 2026-06 snapshot",
        )
        assert programbench("submit", "verify", str(pkg), cwd=tmp_path).returncode == 0
    finally:
        tags.remove_all()
