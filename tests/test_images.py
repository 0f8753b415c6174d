"""Task images are pulled through the Docker SDK from a real registry, once per session.

A real ``docker-registry`` runs on 127.0.0.1 (see registry.py) and holds the self-test
task image under several instance ids. Sessions run in a subprocess with
``PROGRAMBENCH_DOCKER_ORG=127.0.0.1:<port>/programbench`` (programbench reads it at
import), so the plugin names task images under the registry and must pull them. The
registry's access log says how often each image was pulled.

The pushed image is the self-test image plus a layer of random bytes that exists on the
engine only while some registry tag of it is present, so a pull really downloads a layer
and lasts long enough for two workers to want the image at the same time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from registry import Registry
from support import clone_selftest, created_tag

from pytest_programbench import selftest
from pytest_programbench.engine.containers import Engine

PUBLISHED = ["pull-a", "pull-b"]  # pushed to the registry
UNPUBLISHED = "unpublished"  # a task whose image the registry does not have
CPUS = "1"
FAT_LAYER_BYTES = 128 * 1024 * 1024


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@dataclass
class Mirror:
    """The self-test task under several ids, its image published under ``org`` in ``registry``."""

    engine: Engine
    registry: Registry
    tasks: Path
    blobs: Path
    runs: Path
    ids: dict[str, str]  # short name -> instance id

    @property
    def org(self) -> str:
        return f"{self.registry.host}/programbench"

    def ref(self, name: str, org: str = "") -> str:
        """The image reference the plugin uses for ``name`` when PROGRAMBENCH_DOCKER_ORG is ``org``."""
        from programbench import constants

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(constants, "DOCKER_ORG", org or self.org)  # read at call time
            return f"{constants.image_name_from_instance_id(self.ids[name])}:{selftest.IMAGE_TAG}"

    def local(self, name: str, org: str = "") -> bool:
        return self.engine.image_exists(self.ref(name, org))

    def absent(self, *names: str, org: str = "") -> None:
        """Remove the local tags; the last one takes the random layer with it."""
        for name in names:
            if self.local(name, org):
                self.engine.client.images.remove(self.ref(name, org))

    def present(self, *names: str) -> None:
        """Pull outside the plugin (before ``registry.mark()``, so it is not counted)."""
        for name in names:
            repository, _, tag = self.ref(name).rpartition(":")
            self.engine.client.images.pull(repository, tag=tag)


@pytest.fixture(scope="module")
def mirror(
    engine: Engine,
    selftest_image: str,
    reference_executable: bytes,
    registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Mirror]:
    root = tmp_path_factory.mktemp("mirror")
    tasks, blobs, ids = clone_selftest(engine, root, [*PUBLISHED, UNPUBLISHED])
    runs = root / "runs"
    for iid in ids:
        selftest.write_submission("correct", runs / iid, reference_executable)
    mirror = Mirror(
        engine, registry, tasks, blobs, runs, dict(zip([*PUBLISHED, UNPUBLISHED], ids, strict=True))
    )

    context = root / "fat"
    context.mkdir()
    # A token of its own keeps the build cache (and a parallel worker's copy of this
    # fixture) from handing out an image another fixture will delete.
    token = uuid.uuid4().hex
    (context / "Dockerfile").write_text(
        f"ARG BASE\nFROM ${{BASE}}\n"
        f"RUN echo {token} > /tmp/pb-pull-test.id"
        f" && head -c {FAT_LAYER_BYTES} /dev/urandom > /tmp/pb-pull-test.bin\n"
    )
    fat = f"pytest-programbench/pull-test:{token[:12]}"
    engine.build(str(context), created_tag(fat), {"BASE": selftest_image})
    for name in PUBLISHED:
        registry.push(engine, fat, mirror.ref(name))
    # Drop every tag of it: the plugin must pull, and the random layer must be downloaded.
    engine.client.images.remove(engine.client.images.get(fat).id, force=True)
    assert not any(mirror.local(name) for name in PUBLISHED)
    yield mirror
    mirror.absent(*PUBLISHED)  # the ports differ per run: leave no tags (nor the random layer) behind


def run_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mirror: Mirror, *args: str, org: str = ""
) -> tuple[pytest.RunResult, dict[str, Any]]:
    """One session in a subprocess; returns its result and its report rows by instance id."""
    monkeypatch.setenv("PROGRAMBENCH_DOCKER_ORG", org or mirror.org)
    report = pytester.path / "report.json"
    report.unlink(missing_ok=True)
    mirror.registry.mark()
    result = pytester.runpytest_subprocess(
        f"--pb-tasks-dir={mirror.tasks}",
        f"--pb-submissions={mirror.runs}",
        f"--pb-blob-dir={mirror.blobs}",
        f"--pb-output={pytester.path / 'out'}",
        f"--pb-report={report}",
        f"--pb-cpus={CPUS}",
        *args,
    )
    rows: dict[str, Any] = {}
    for row in json.loads(report.read_text())["instances"]:
        rows.setdefault(row["instance_id"], []).append(row)
    return result, rows


def instances(*names: str) -> str:
    return "--pb-instance=pbselftest__(" + "|".join(names) + r")\."


def assert_resolved(rows: list[dict[str, Any]], attempts: int = 1) -> None:
    assert [(r["outcome"], r["score"]) for r in rows] == [("resolved", 1.0)] * attempts, rows


def test_missing_images_are_pulled_and_scored(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mirror: Mirror
) -> None:
    mirror.absent(*PUBLISHED)
    result, rows = run_session(
        pytester, monkeypatch, mirror, "-n", "2", "--pb-pull=missing", instances(*PUBLISHED)
    )
    for name in PUBLISHED:
        assert_resolved(rows[mirror.ids[name]])
        assert mirror.local(name), f"{mirror.ref(name)} was not pulled"
        assert mirror.registry.pulls(mirror.ref(name)) == 1, mirror.registry.requests()
    result.stdout.fnmatch_lines(["*2 resolved*"])
    assert result.ret == pytest.ExitCode.OK


def test_two_workers_wanting_one_image_pull_it_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mirror: Mirror
) -> None:
    # Two items on two workers (xdist deals fewer than 2 items per worker round robin), both
    # needing pull-a at the start of their session: the shared lock makes one of them wait.
    mirror.absent(*PUBLISHED)  # both tags: the random layer goes and the pull downloads it
    result, rows = run_session(
        pytester,
        monkeypatch,
        mirror,
        "-n",
        "2",
        "-v",
        "--pb-pull=missing",
        "--pb-attempts=2",
        instances("pull-a"),
    )
    assert_resolved(rows[mirror.ids["pull-a"]], attempts=2)
    result.stdout.fnmatch_lines(["*[[]gw0[]]*RESOLVED*"], consecutive=False)
    result.stdout.fnmatch_lines(["*[[]gw1[]]*RESOLVED*"], consecutive=False)
    assert mirror.local("pull-a")
    assert mirror.registry.pulls(mirror.ref("pull-a")) == 1, mirror.registry.requests()


def test_always_pulls_a_present_image_once_per_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mirror: Mirror
) -> None:
    mirror.present("pull-a")
    result, rows = run_session(
        pytester,
        monkeypatch,
        mirror,
        "-n",
        "2",
        "-v",
        "--pb-pull=always",
        "--pb-attempts=2",
        instances("pull-a"),
    )
    assert_resolved(rows[mirror.ids["pull-a"]], attempts=2)
    result.stdout.fnmatch_lines(["*[[]gw0[]]*RESOLVED*"], consecutive=False)
    result.stdout.fnmatch_lines(["*[[]gw1[]]*RESOLVED*"], consecutive=False)
    assert mirror.registry.pulls(mirror.ref("pull-a")) == 1, mirror.registry.requests()
    # A new session pulls again.
    _, rows = run_session(
        pytester, monkeypatch, mirror, "-p", "no:xdist", "--pb-pull=always", instances("pull-a")
    )
    assert_resolved(rows[mirror.ids["pull-a"]])
    assert mirror.registry.pulls(mirror.ref("pull-a")) == 1, mirror.registry.requests()


def test_never_makes_an_absent_image_an_error_and_scores_the_rest(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mirror: Mirror
) -> None:
    mirror.absent("pull-a")
    mirror.present("pull-b")
    result, rows = run_session(
        pytester, monkeypatch, mirror, "-n", "2", "--pb-pull=never", instances(*PUBLISHED)
    )
    ref = mirror.ref("pull-a")
    (error,) = rows[mirror.ids["pull-a"]]
    assert (error["outcome"], error["error_code"]) == ("error", "image_missing")
    assert ref in error["message"]
    assert f"docker pull {ref}" in error["message"]
    assert_resolved(rows[mirror.ids["pull-b"]])
    result.stdout.fnmatch_lines([f"*image {ref} is not on the Docker engine*`docker pull {ref}`*"])
    result.stdout.fnmatch_lines(["*1 resolved*1 error*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert not mirror.local("pull-a")
    assert mirror.registry.requests() == []


def test_an_image_the_registry_lacks_is_an_error_and_the_rest_is_scored(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mirror: Mirror
) -> None:
    mirror.absent("pull-b")
    result, rows = run_session(
        pytester, monkeypatch, mirror, "-n", "2", "--pb-pull=missing", instances(UNPUBLISHED, "pull-b")
    )
    ref = mirror.ref(UNPUBLISHED)
    (error,) = rows[mirror.ids[UNPUBLISHED]]
    assert (error["outcome"], error["error_code"]) == ("error", "image_pull_failed")
    assert f"pulling {ref} failed" in error["message"]
    assert_resolved(rows[mirror.ids["pull-b"]])
    assert mirror.registry.pulls(mirror.ref("pull-b")) == 1
    result.stdout.fnmatch_lines([f"*pulling {ref} failed*PROGRAMBENCH_DOCKER_ORG*"])
    result.stdout.fnmatch_lines(["*1 resolved*1 error*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_an_unreachable_registry_is_an_error_and_the_rest_is_scored(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mirror: Mirror, engine: Engine
) -> None:
    with Registry(pytester.path / "gone") as gone:
        pass  # a port a registry answered on a moment ago, closed now
    org = f"{gone.host}/programbench"
    present = mirror.ref("pull-b", org)
    mirror.absent("pull-a", org=org)
    engine.tag(f"{selftest.image_name()}:{selftest.IMAGE_TAG}", created_tag(present))
    try:
        result, rows = run_session(
            pytester, monkeypatch, mirror, "-n", "2", "--pb-pull=missing", instances(*PUBLISHED), org=org
        )
    finally:
        engine.client.images.remove(present)
    ref = mirror.ref("pull-a", org)
    (error,) = rows[mirror.ids["pull-a"]]
    assert (error["outcome"], error["error_code"]) == ("error", "image_pull_failed")
    assert f"pulling {ref} failed" in error["message"]
    assert_resolved(rows[mirror.ids["pull-b"]])
    result.stdout.fnmatch_lines(["*1 resolved*1 error*"])


# -- progress ------------------------------------------------------------------------------------
# Pull progress is written to stderr with capture suspended, so it shows with default options,
# and under xdist too (workers share the controller's stderr); it is also logged at INFO.


def test_pull_progress_under_xdist_stays_off_the_terminal_even_with_s(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mirror: Mirror
) -> None:
    # A worker's stderr is the controller's terminal: its lines would land among xdist's status
    # letters ("Rprogrambench: ..."). The pull is in the status file instead.
    mirror.absent(*PUBLISHED)
    result, rows = run_session(pytester, monkeypatch, mirror, "-n", "2", "-s", instances("pull-a"))
    assert_resolved(rows[mirror.ids["pull-a"]])
    ref = mirror.ref("pull-a")
    assert not [line for line in result.outlines + result.errlines if f"{ref}:" in line and "Pull" in line]
    status = (pytester.path / "out" / "progress.log").read_text()
    assert status.count("pulling or building ") == 1, status


def test_pull_progress_is_logged_live_without_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mirror: Mirror
) -> None:
    mirror.absent(*PUBLISHED)
    result, _ = run_session(
        pytester, monkeypatch, mirror, "-p", "no:xdist", "--log-cli-level=INFO", instances("pull-a")
    )
    result.stdout.fnmatch_lines([f"INFO *{mirror.ref('pull-a')}: * Pull complete"])


@pytest.mark.parametrize("mode", [["-p", "no:xdist"], ["-n", "2"]], ids=["single", "xdist"])
def test_pull_progress_is_visible_with_default_options(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mirror: Mirror, mode: list[str]
) -> None:
    mirror.absent(*PUBLISHED)
    result, _ = run_session(pytester, monkeypatch, mirror, *mode, instances("pull-a"))
    seen = [line for line in result.outlines + result.errlines if "Pull complete" in line]
    if "-n" in mode:  # from xdist workers, never on the terminal (see the test above)
        assert not seen, seen
    else:
        assert seen, "no pull progress in the session's stdout or stderr"
        assert all(line.startswith("programbench: ") for line in seen), seen  # lines of their own
    # ... and the status file says, once, which item waited for the pull.
    status = (pytester.path / "out" / "progress.log").read_text()
    assert status.count("pulling or building ") == 1 and "pbselftest_1776_pull-a" in status, status
