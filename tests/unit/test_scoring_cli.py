"""Scoring hands the evaluator its engine per call: nothing process-wide changes while it runs.

A fake ``docker`` on PATH stands in for the engine: it records how it was called and, on
``docker run``, waits until the test has looked at this process's environment and at
programbench's module-level ``DOCKER_RUN_ARGS`` *while the evaluator is inside that call*.
The prefetch and watchdog threads share both, so neither may change.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_programbench import selftest

FAKE_DOCKER = """#!/bin/sh
# Records argv and the engine it was pointed at, then holds `run` until the test says go.
python3 - "$@" <<'PY'
import json, os, sys
with open(os.environ["PB_FAKE_LOG"], "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "DOCKER_HOST": os.environ.get("DOCKER_HOST"),
                          "DOCKER_CONTEXT": os.environ.get("DOCKER_CONTEXT")}) + "\\n")
PY
if [ "$1" = run ] && [ -n "$PB_FAKE_RUN_OK" ]; then
    echo c0ffee
    exit 0
fi
if [ "$1" = run ]; then
    touch "$PB_FAKE_LOG.started"
    while [ ! -e "$PB_FAKE_LOG.go" ]; do sleep 0.05; done
    echo "fake engine refuses to start containers" >&2
    exit 1
fi
"""


class FakeEngine:
    """What scoring asks of an engine: where it is, whether it answers, what kind it is."""

    def __init__(self, host: str, podman: bool = False) -> None:
        self.host = host
        self.podman = podman

    def version(self) -> str:
        return "fake"

    def is_podman(self) -> bool:
        return self.podman


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``docker`` and ``podman`` on PATH are the fake; returns its log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "podman"):
        (bin_dir / name).write_text(FAKE_DOCKER)
        (bin_dir / name).chmod(stat.S_IRWXU)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PB_FAKE_LOG", str(log))
    monkeypatch.setenv("DOCKER_CONTEXT", "someone-elses")
    return log


def selftest_instance() -> Any:
    from pytest_programbench.selection.tasks import load_instances

    [inst] = load_instances(selftest.tasks_dir(), image_tag=selftest.IMAGE_TAG, skip_fixtures=False)
    return inst


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_scoring_passes_engine_labels_and_memory_per_call_and_changes_nothing_global(
    fake_cli: Path, tmp_path: Path
) -> None:
    from programbench import constants

    from pytest_programbench.errors import EvaluatorCrashed
    from pytest_programbench.scoring.evaluator import score_submission
    from pytest_programbench.scoring.verdict import ScoreRequest

    url = f"unix:///run/fake-{uuid.uuid4().hex}.sock"  # not this process's engine: a wrapper is needed
    environ, run_args = dict(os.environ), list(constants.DOCKER_RUN_ARGS)
    submission = selftest.write_submission("correct", tmp_path / "sub")
    crashed: list[BaseException] = []

    def score() -> None:
        try:
            score_submission(
                ScoreRequest(
                    selftest_instance(),
                    submission,
                    blob_dir=tmp_path,
                    instance_dir=tmp_path / "out",
                    cpus=1,
                    engine=FakeEngine(url),  # type: ignore[arg-type]
                    labels={"io.pytest-programbench.run": "r1"},
                    memory="512m",
                )
            )
        except BaseException as exc:
            crashed.append(exc)

    scorer = threading.Thread(target=score)
    scorer.start()
    started = Path(f"{fake_cli}.started")
    try:
        for _ in range(1200):  # a wait for the call to begin, not a timing assertion
            if started.exists() or not scorer.is_alive():
                break
            threading.Event().wait(0.05)
        assert started.exists(), crashed
        # Inside the evaluator's `docker run`: this process is as it was.
        assert dict(os.environ) == environ
        assert list(constants.DOCKER_RUN_ARGS) == run_args
    finally:
        Path(f"{fake_cli}.go").touch()
        scorer.join(timeout=120)
    assert len(crashed) == 1 and isinstance(crashed[0], EvaluatorCrashed), crashed
    assert "fake engine refuses" in str(crashed[0])
    [run, *_] = calls(fake_cli)
    # The engine reached its CLI through the wrapper; the labels and memory are on the run itself.
    assert (run["DOCKER_HOST"], run["DOCKER_CONTEXT"]) == (url, None)
    argv = run["argv"]
    assert (argv[0], argv[-3:]) == ("run", [selftest_instance().image_ref, "sleep", "2h"])
    tail = argv[argv.index("--label") :]
    assert tail[:7] == [
        "--label",
        "io.pytest-programbench.run=r1",
        "--memory",
        "512m",
        "--memory-swap",
        "512m",
        "--init",
    ]
    assert dict(os.environ) == environ and list(constants.DOCKER_RUN_ARGS) == run_args


def test_the_process_engine_gets_the_official_executable_unwrapped(
    fake_cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from programbench.constants import DOCKER_EXECUTABLE

    from pytest_programbench.engine.fleet import evaluator_cli

    monkeypatch.delenv("DOCKER_CONTEXT")
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/mine.sock")
    assert evaluator_cli("unix:///run/mine.sock") == DOCKER_EXECUTABLE
    assert evaluator_cli("unix:///run/other.sock") != DOCKER_EXECUTABLE


def test_a_podman_engine_is_driven_by_the_podman_cli_with_its_url(fake_cli: Path) -> None:
    import subprocess

    from pytest_programbench.engine.fleet import evaluator_cli

    url = f"unix:///run/user/1000/podman/podman-{uuid.uuid4().hex}.sock"
    wrapper = evaluator_cli(url, podman=True)
    assert Path(wrapper).name == "podman"
    subprocess.run([wrapper, "commit", "c1", "img:tag"], check=True)
    [call] = calls(fake_cli)
    assert call["argv"] == ["--url", url, "commit", "c1", "img:tag"]


def test_our_new_env_starts_the_container_the_official_one_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our ``_new_env`` is a copy of programbench's with two changes: the executable and the extra
    ``docker run`` options. Compared on the official code itself, so a release that changes it fails here."""
    from programbench.eval import eval as official

    from pytest_programbench.scoring.evaluator import ContainerCli, evaluator_class

    seen: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, **kwargs: Any) -> None:
            seen.append(kwargs)

    monkeypatch.setattr(official, "ContainerEnvironment", Recorder)
    common = {"tests_branches": ["b"], "image_name": "img", "docker_cpus": 3}
    ours = evaluator_class()(cli=ContainerCli("/x/docker", ("--label", "k=v")), **common)
    theirs = official.Evaluator(**common)
    for serial in (False, True):
        theirs._new_env("img:tag", serial_pytest=serial)
        expected = dict(seen[-1])
        expected["executable"] = "/x/docker"
        expected["run_args"] = [*expected["run_args"][:-1], "--label", "k=v", expected["run_args"][-1]]
        assert ours.container_kwargs("img:tag", serial_pytest=serial) == expected


def test_the_committed_image_is_removed_through_the_engines_cli(
    fake_cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """programbench's own ``rmi`` uses its module constant and this process's environment, which may
    name another engine; ours removes the image again where it was committed."""
    from programbench.eval import eval as official

    from pytest_programbench.engine.fleet import evaluator_cli
    from pytest_programbench.scoring.evaluator import ContainerCli, evaluator_class

    def compile_and_commit(self: Any) -> None:  # the part of the official run() that matters here
        env = self._new_env("img:tag")
        env.commit("programbench-compiled/x:1")
        env.cleanup()

    url = f"unix:///run/fake-{uuid.uuid4().hex}.sock"
    monkeypatch.setenv("PB_FAKE_RUN_OK", "1")
    monkeypatch.setattr(official.Evaluator, "run", compile_and_commit)
    evaluator = evaluator_class()(
        cli=ContainerCli(evaluator_cli(url)), tests_branches=["b"], image_name="img"
    )
    evaluator.run()
    made = calls(fake_cli)
    assert {c["DOCKER_HOST"] for c in made} == {url}  # every call (stop and rm again at __del__) there
    assert [c["argv"] for c in made if c["argv"][0] in ("commit", "rmi")] == [
        ["commit", "c0ffee", "programbench-compiled/x:1"],
        ["rmi", "-f", "programbench-compiled/x:1"],
    ]
