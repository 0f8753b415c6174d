"""Several engines in one session, for real: the default engine and a second dockerd (tests/engines.py).

Items spread over both, each item's containers appear on its own engine only, the scores
are what one engine gives, and an engine killed mid-run costs its items alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engines import SecondEngine, SshEngine
from support import CreationWatch, clone_selftest, run_session, session_command, session_options, wait_for

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_RUN, Engine

# Items on the second engine sleep until it is killed; the others build the reference.
SLOW_ON_B = """
from pytest_programbench.selftest import scripted_agent

def pytest_programbench_agent(config, instance):
    def agent(instance, sandbox):
        if "pb-test-engine-b" in sandbox.docker_host:
            sandbox.exec("sleep 600")
        return scripted_agent(instance, sandbox)
    return agent
"""


@pytest.fixture
def make_tasks(engine: Engine, engine_b: SecondEngine) -> Iterator[Callable[[Path, list[str]], list[str]]]:
    """Self-test clones whose image tags exist on both engines; the tags go when the test ends."""
    from programbench.constants import image_name_from_instance_id

    refs: list[str] = []

    def make(root: Path, names: list[str]) -> list[str]:
        _, _, ids = clone_selftest(engine, root, names)
        with Engine(engine_b.host) as other:
            for iid in ids:
                refs.append(f"{image_name_from_instance_id(iid)}:{selftest.IMAGE_TAG}")
                other.tag(f"{selftest.image_name()}:{selftest.IMAGE_TAG}", refs[-1])
        return ids

    yield make
    engine_b.start()  # a test may have killed it
    for host in (engine.host, engine_b.host):
        with Engine(host) as eng:
            for ref in refs:
                eng.remove_image(ref)


def session(
    root: Path, out: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    return run_session(root, out, f"--junitxml={out / 'junit.xml'}", *extra, env=env)


def options(root: Path, out: Path, *extra: str) -> list[str]:
    return session_options(root, out, f"--junitxml={out / 'junit.xml'}", *extra)


def hosts(engine: Engine, engine_b: SecondEngine) -> list[str]:
    return [f"--pb-docker-host={engine.host}", f"--pb-docker-host={engine_b.host}"]


@pytest.fixture(scope="module")
def over_ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshEngine]:
    """The default engine, reached as ssh://root@127.0.0.1 (sshd on localhost, key auth)."""
    ssh = SshEngine(tmp_path_factory.mktemp("ssh"))
    ssh.start()
    yield ssh
    ssh.stop()


def ours(host: str, run_id: str) -> list[Any]:
    with Engine(host) as eng:
        return [*eng.labelled({LABEL_RUN: run_id}), *eng._labelled_images({LABEL_RUN: run_id})]


@pytest.mark.parametrize("via", ["unix", "ssh"])
def test_items_spread_over_two_engines_each_on_its_own_and_score_as_on_one(
    engine: Engine,
    engine_b: SecondEngine,
    make_tasks: Callable[[Path, list[str]], list[str]],
    tmp_path: Path,
    via: str,
    request: pytest.FixtureRequest,
) -> None:
    # Over ssh, one item per engine is enough to show the transport carries a whole item.
    ids = make_tasks(tmp_path, [f"fleet_{via}_{n}" for n in ("abcd" if via == "unix" else "ab")])
    host_a, env = engine.host, None
    if via == "ssh":
        ssh: SshEngine = request.getfixturevalue("over_ssh")
        host_a, env = ssh.url, ssh.env()
    out = tmp_path / "out"
    fleet = [f"--pb-docker-host={host_a}", f"--pb-docker-host={engine_b.host}"]
    image = f"{selftest.image_name()}:{selftest.IMAGE_TAG}"
    with (
        Engine(engine_b.host) as other,
        CreationWatch(engine, image) as on_a,
        CreationWatch(other, image) as on_b,
    ):
        said, rows = session(tmp_path, out, "-n", "2", "--pb-agent=selftest", *fleet, env=env)
    # The header names both engines with their slots and cores.
    assert f"{engine_b.host}: 1 slot(s), 1 worker(s)" in said, said
    assert f"{host_a}: 1 slot(s), 1 worker(s)" in said, said
    assert set(rows) == set(ids), said
    assert {r["engine"] for r in rows.values()} == {host_a, engine_b.host}, rows
    for iid, row in rows.items():
        assert row["outcome"] == "resolved", f"{json.dumps(row, indent=1)}\n{said}"
        mine, other_watch = (on_a, on_b) if row["engine"] == host_a else (on_b, on_a)
        # Its sandbox and compile container, and one container per tested branch, on its engine alone.
        assert mine.of(iid)["task"] == 2 and mine.of(iid)["branches"] >= 1, (iid, mine.instances)
        assert other_watch.of(iid) == {"task": 0, "branches": 0}, (iid, other_watch.instances)
    junit = (out / "junit.xml").read_text()
    assert f'name="pb_engine" value="{engine_b.host}"' in junit
    assert f"engine {engine_b.host}: " in said  # the summary's per-engine line
    run_id = json.loads((out / "report.json").read_text())["run_id"]
    assert ours(engine.host, run_id) == [] and ours(engine_b.host, run_id) == []
    if via == "ssh":
        return  # the one-engine comparison needs doing once

    # The same submissions scored on one engine (replayed from the run directory) score the same.
    again = tmp_path / "one-engine"
    _, single = session(tmp_path, again, f"--pb-submissions={out}")
    assert {i: (r["score"], r["n_resolved"], r["n_tests"]) for i, r in single.items()} == {
        i: (r["score"], r["n_resolved"], r["n_tests"]) for i, r in rows.items()
    }
    assert {r.get("engine") for r in single.values()} == {engine.host}


def test_without_n_items_take_turns_on_the_engines(
    engine: Engine, engine_b: SecondEngine, make_tasks: Callable[[Path, list[str]], list[str]], tmp_path: Path
) -> None:
    make_tasks(tmp_path, ["turn_a", "turn_b"])
    runs = tmp_path / "runs"
    for task in (tmp_path / "tasks").iterdir():
        selftest.write_submission("correct", runs / task.name)
    said, rows = session(tmp_path, tmp_path / "out", f"--pb-submissions={runs}", *hosts(engine, engine_b))
    assert sorted(r["engine"] for r in rows.values()) == sorted([engine.host, engine_b.host]), said
    assert all(r["outcome"] == "resolved" for r in rows.values()), rows


def test_an_unreachable_engine_at_start_is_a_usage_error_naming_it(engine: Engine, tmp_path: Path) -> None:
    missing = f"unix://{tmp_path}/no-engine.sock"
    done = subprocess.run(
        session_command(
            "--pb-selftest",
            f"--pb-docker-host={engine.host}",
            f"--pb-docker-host={missing}",
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
    assert f"--pb-docker-host {missing}: no Docker engine answers" in done.stderr


def test_an_engine_killed_mid_run_fails_its_items_alone_and_a_rerun_finishes(
    engine: Engine, engine_b: SecondEngine, make_tasks: Callable[[Path, list[str]], list[str]], tmp_path: Path
) -> None:
    ids = make_tasks(tmp_path, ["kill_a", "kill_b", "kill_c", "kill_d"])
    (tmp_path / "conftest.py").write_text(SLOW_ON_B)
    out = tmp_path / "out"
    args = ["-n", "2", *hosts(engine, engine_b)]
    proc = subprocess.Popen(
        session_command(*options(tmp_path, out, *args)),
        cwd=tmp_path,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(out / "progress.log", r"^\S+ gw1 .*agent \S+ started$", proc)
        engine_b.kill()
        said = proc.communicate(timeout=600)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        engine_b.start()
    rows = {r["instance_id"]: r for r in json.loads((out / "report.json").read_text())["instances"]}
    on_b = [r for r in rows.values() if r["engine"] == engine_b.host]
    on_a = [r for r in rows.values() if r["engine"] == engine.host]
    assert on_b and all(r["error_code"] == "engine_unavailable" for r in on_b), said
    assert on_a and all(r["outcome"] == "resolved" for r in on_a), said
    run_id = json.loads((out / "report.json").read_text())["run_id"]
    assert ours(engine.host, run_id) == []

    # Engine back, a rerun with the same run directory finishes what the kill cut short.
    (tmp_path / "conftest.py").write_text("")
    subprocess.run(
        [sys.executable, "-m", "pytest", "--pb-cleanup", f"--pb-docker-host={engine_b.host}"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=True,
    )
    said, again = session(tmp_path, out, "--pb-agent=selftest", *args)
    assert set(again) == set(ids)
    assert all(r["outcome"] == "resolved" for r in again.values()), said
    assert all(again[r["instance_id"]].get("reused") for r in on_a), said  # the finished ones are kept
    assert ours(engine_b.host, run_id) == []
