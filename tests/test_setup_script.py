"""images/setup-test-machine.sh: what tox runs around the suite on a fresh machine.

Its set-up decisions are checked in its dry-run mode (the shared engine is never stopped
here): with no engine answering and the tools missing it must plan to install and start
them; with everything present, nothing. The teardown runs for real on tags of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from support import BASE_IMAGE

from pytest_programbench.engine.containers import Engine

SCRIPT = Path(__file__).resolve().parent.parent / "images" / "setup-test-machine.sh"

#: What the script needs besides the tools it checks for.
BASICS = (
    "bash",
    "docker",
    "id",
    "seq",
    "sleep",
    "grep",
    "sort",
    "comm",
    "tail",
    "mkdir",
    "rm",
    "dirname",
    "tac",
)


def fake_path(root: Path, present: tuple[str, ...] = ()) -> str:
    """A PATH holding the basics and stand-ins for ``present``; anything else is missing."""
    root.mkdir()
    for name in BASICS:
        found = shutil.which(name)
        assert found, name
        (root / name).symlink_to(found)
    for name in present:
        (root / name).write_text("#!/bin/sh\nexit 0\n")
        (root / name).chmod(0o755)
    return str(root)


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="the plan differs without root (sudo or a message)")
def test_a_fresh_machine_gets_an_engine_the_tools_and_the_images(tmp_path: Path) -> None:
    env = {
        "PATH": fake_path(tmp_path / "bin"),
        "DOCKER_HOST": f"unix://{tmp_path / 'no-engine.sock'}",
        "PB_SETUP_DRY_RUN": "1",
        "PB_PODMAN_USER": f"pbtest-{uuid.uuid4().hex[:8]}",  # no such user here
    }
    done = run(str(tmp_path / "state"), env=env)
    assert done.returncode == 0, done.stderr
    plan = [line.removeprefix("setup-test-machine.sh: ") for line in done.stdout.splitlines()]
    install = "would run: env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
    assert plan == [
        f"no Docker engine answers at {env['DOCKER_HOST']}: starting dockerd",
        "would run: apt-get update -qq",
        f"{install} docker.io",
        f"would run: setsid nohup dockerd -H {env['DOCKER_HOST']} >/tmp/pb-dockerd.log 2>&1 &",
        f"{install} mmdebstrap docker-registry iproute2 chromium chromium-driver "
        "openssh-server openssh-client podman catatonit uidmap",
        f"would run: useradd --create-home --shell /usr/sbin/nologin {env['PB_PODMAN_USER']}",
        "would run: images/build-test-images.sh",
    ]
    assert not (tmp_path / "state").exists()  # a dry run writes nothing


def test_an_engine_elsewhere_is_not_started_here(tmp_path: Path) -> None:
    env = {"PATH": fake_path(tmp_path / "bin"), "DOCKER_HOST": "tcp://127.0.0.1:9", "PB_SETUP_DRY_RUN": "1"}
    done = run(str(tmp_path / "state"), env=env)
    assert done.returncode == 1
    said = "no Docker engine answers at tcp://127.0.0.1:9; start it there, or unset DOCKER_HOST"
    assert done.stderr.splitlines() == [f"setup-test-machine.sh: {said}"]


def test_a_ready_machine_needs_nothing_installed_or_started(engine: Engine, tmp_path: Path) -> None:
    env = {
        "PATH": fake_path(
            tmp_path / "bin",
            (
                "dockerd",
                "mmdebstrap",
                "docker-registry",
                "ip",
                "chromium",
                "chromedriver",
                "sshd",
                "ssh-keygen",
                "podman",
                "catatonit",
                "newuidmap",
            ),
        ),
        "PB_SETUP_DRY_RUN": "1",
        "PB_PODMAN_USER": "pbpodman",  # made by the set-up that ran before this suite
    }
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    done = run(str(tmp_path / "state"), env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("engine "), lines
    assert lines[1:] == ["setup-test-machine.sh: would run: images/build-test-images.sh"]


def test_teardown_keeps_what_the_set_up_built_and_fails_on_leftovers(
    engine: Engine, base_image: str, tmp_path: Path
) -> None:
    prefix = f"pbtest-setup-{uuid.uuid4().hex[:12]}"
    built, leftover = f"{prefix}/built:x", f"{prefix}/leftover:x"
    state = tmp_path / "state"
    state.mkdir()
    (state / "tags-before").write_text("")
    (state / "created-images").write_text(built + "\n")
    env = {**os.environ, "PB_SUITE_TAGS": f"^{prefix}/"}
    try:
        for ref in (built, leftover):
            engine.tag(BASE_IMAGE, ref)
        failed = run("--teardown", str(state), env=env)
        assert failed.returncode == 1
        assert "kept the 1 test image(s) the set-up built" in failed.stdout
        assert engine.image_exists(built)  # the next run's set-up finds it
        assert "left these image tags behind" in failed.stderr and f"  {leftover}" in failed.stderr
        assert f"  {built}" not in failed.stderr
        engine.client.images.remove(leftover)
        clean = run("--teardown", str(state), env=env)
        assert clean.returncode == 0, clean.stderr
        assert clean.stdout.splitlines()[-1] == "setup-test-machine.sh: no image tags left behind"
        removed = run("--teardown", str(state), env={**env, "PB_SETUP_REMOVE_BUILT": "1"})
        assert removed.returncode == 0, removed.stderr
        assert f"removed {built} (built by the set-up)" in removed.stdout
        assert not engine.image_exists(built)
    finally:
        for ref in (built, leftover):
            if engine.image_exists(ref):
                engine.client.images.remove(ref)
    assert engine.image_exists(base_image)  # untagging never takes the image the tags pointed at


def test_teardown_without_a_set_up_takes_nothing_back(tmp_path: Path) -> None:
    # tox runs commands_post even when commands_pre failed before writing its state.
    done = run("--teardown", str(tmp_path / "never-set-up"), env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert "nothing to take back" in done.stdout


FAILING_TEST = """
from support import clone_selftest


def test_clones_then_fails(engine, selftest_image, tmp_path):
    from programbench.constants import image_name_from_instance_id

    _, _, (iid,) = clone_selftest(engine, tmp_path, ["left-behind"])
    with open("tag.txt", "w") as out:
        out.write(f"{image_name_from_instance_id(iid)}:task_cleanroom_v6")
    assert engine.image_exists(open("tag.txt").read())
    raise AssertionError("this test fails after making a tag")
"""


def test_the_suite_removes_its_tags_when_a_test_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, engine: Engine, selftest_image: str
) -> None:
    # The suite's own conftest as a plugin of an inner session whose test makes a clone tag, then fails.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent))
    pytester.makepyfile(test_inner=FAILING_TEST)
    result = pytester.runpytest_subprocess("-p", "conftest", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    tag = (pytester.path / "tag.txt").read_text()
    assert tag.startswith("programbench/pbselftest_1776_left-behind.5e1f7a0"), tag
    assert not engine.image_exists(tag)
    assert engine.image_exists(selftest_image)  # untagged, not removed


def test_teardown_names_a_tag_a_container_still_uses_without_failing(
    engine: Engine, base_image: str, tmp_path: Path
) -> None:
    # On a shared engine another session's scoring may hold such an image when the suite ends.
    from pytest_programbench.engine.containers import LABEL_RUN

    prefix = f"pbtest-setup-{uuid.uuid4().hex[:12]}"
    busy = f"{prefix}/busy:x"
    state = tmp_path / "state"
    state.mkdir()
    (state / "tags-before").write_text("")
    env = {**os.environ, "PB_SUITE_TAGS": f"^{prefix}/"}
    engine.tag(base_image, busy)
    try:
        with engine.container(busy, labels={LABEL_RUN: "test-setup-busy"}, network_mode="none"):
            held = run("--teardown", str(state), env=env)
        assert held.returncode == 0, held.stderr
        assert f"in use by a container, so not the suite's leftover: {busy}" in held.stdout
        free = run("--teardown", str(state), env=env)
        assert free.returncode == 1 and f"  {busy}" in free.stderr
    finally:
        engine.client.images.remove(busy)
