"""scoring.bounded_execute against programbench's own ContainerEnvironment.execute, side by side.

Both run a command through a stand-in for the docker CLI (a script that runs
``bash -lc <command>`` here, without this host's login profile, and does nothing for
anything else: in particular not the ``kill -KILL -1`` sweep that follows a timeout).
Below the bound they must return the same dict and raise the same errors; above it, ours
keeps the head and the tail.
"""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from programbench.container import ContainerEnvironment

from pytest_programbench.scoring import evaluator as scoring

FAKE_DOCKER = """#!/bin/sh
# docker exec -w <cwd> <container> bash -lc <command>: run the command here. Anything else: nothing.
if [ "$1" = exec ] && [ "$2" = -w ]; then
    cd "$3" || exit 125
    shift 4
    # bash -lc <command> without this host's login profile: a container's login shell reads the
    # image's, and the host's (pyenv's rehash, here) adds its own output under load.
    [ "$1" = bash ] && [ "$2" = -lc ] && exec bash --noprofile --norc -c "$3"
    exec "$@"
fi
exit 0
"""


@pytest.fixture
def env(tmp_path: Path) -> Any:
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    return SimpleNamespace(
        executable=str(docker), cwd=str(tmp_path), container_id="c0ffee", default_timeout=30
    )


def both(env: Any, command: str, timeout: int | None = None) -> tuple[Any, Any]:
    def run(execute: Any) -> Any:
        try:
            return execute(env, command, timeout=timeout)
        except Exception as exc:  # compared by type and text
            return (type(exc).__name__, str(exc))

    return run(ContainerEnvironment.execute), run(scoring.bounded_execute)


@pytest.mark.parametrize(
    "command",
    [
        "echo out; echo err >&2; exit 3",
        "printf 'a\\r\\nb\\rc\\n'",  # text mode translates newlines
        "printf 'caf\\303\\251 \\342\\202\\254\\n'",  # UTF-8 split over reads is still UTF-8
        "printf 'caf\\351\\n'",  # not UTF-8: both raise UnicodeDecodeError
        "printf 'ok\\n'; printf '\\377' >&2",
        "head -c 300000 /dev/zero | tr '\\0' x; echo",
        "true",
    ],
)
def test_below_the_bound_it_is_the_evaluators_execute(env: Any, command: str) -> None:
    official, ours = both(env, command)
    assert ours == official


def test_a_timeout_returns_what_the_evaluator_returns(env: Any) -> None:
    official, ours = both(env, "echo started; sleep 30", timeout=1)
    assert (
        ours == official == {"output": "", "returncode": -1, "exception_info": "Command timed out after 1s"}
    )


def test_long_output_keeps_its_head_and_tail_and_counts_the_cut(
    env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "STEP_OUTPUT_HEAD", 1000)
    monkeypatch.setattr(scoring, "STEP_OUTPUT_TAIL", 500)
    command = "seq 1 100000; echo to-stderr >&2"
    official, ours = both(env, command)
    out = official["output"].removesuffix("to-stderr\n")
    cut = len(out) - 1500
    note = f"\n[... {cut} characters of output cut by pytest-programbench ...]\n"
    assert ours["output"] == f"{out[:1000]}{note}{out[-500:]}to-stderr\n"
    assert ours["returncode"] == official["returncode"] == 0


def test_an_undecodable_byte_after_the_head_is_still_found(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The cut middle is not kept, but it is decoded: where the evaluator raises, so do we, and the
    # offset we name is the one its exception names (ours is read in chunks, so it carries pb_offset).
    monkeypatch.setattr(scoring, "STEP_OUTPUT_HEAD", 100)
    monkeypatch.setattr(scoring, "STEP_OUTPUT_TAIL", 100)
    command = "seq 1 10000; printf '\\377'; seq 1 10000"
    with pytest.raises(UnicodeDecodeError) as official:
        ContainerEnvironment.execute(env, command)
    with pytest.raises(UnicodeDecodeError) as ours:
        scoring.bounded_execute(env, command)
    assert official.value.start == 48894 == ours.value.pb_offset  # type: ignore[attr-defined]
