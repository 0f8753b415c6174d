"""Stand-ins for real ProgramBench tasks: their real metadata, generated hidden tests.

``programbench info`` only scores instance ids it knows (the package's 200 tasks), so a
run directory it must read has to hold real ids. Their images and hidden-test archives
are not on this machine (no registry, no Hugging Face), so a stand-in keeps the task's
real ``task.yaml`` and ``tests.json`` byte for byte and generates the rest:

- the image ``image_name_from_instance_id(iid):task_cleanroom_v6``, a tag of the
  self-test image (debian with gcc and python3) under a private ``PROGRAMBENCH_DOCKER_ORG``
  (see :class:`ImageTags`), so that real task images are never touched and concurrent
  sessions (xdist workers of this suite) never remove each other's tags;
- ``<blobs>/<iid>/tests/<branch>.tar.gz`` for every active branch: an ``eval/`` tree whose
  ``run.sh`` writes ``eval/results.xml`` with exactly the test names tests.json lists for
  that branch, each judged by running ``./executable <test name>``: exit 0 passes.

A submission's verdict on a test is therefore its program's exit status on the test's
name, which :func:`expected_counts` reproduces on the host.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import created_tag

from pytest_programbench.engine.containers import Engine
from pytest_programbench.selftest import write_targz

IMAGE_TAG = "task_cleanroom_v6"

# Runs every test of the branch as `./executable <name>` and writes JUnit XML the way
# pytest does, with the full test name as the testcase name (no classname), which is
# what programbench's parse_test_results reads back as the name.
_JUDGE = r'''"""Generated hidden tests: a test passes iff `./executable <its name>` exits 0."""
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

names = [line for line in Path("eval/tests.txt").read_text().splitlines() if line]
suite = ET.Element("testsuite", name="generated", tests=str(len(names)))
failures = 0
for name in names:
    case = ET.SubElement(suite, "testcase", name=name, time="0.001")
    try:
        code = subprocess.run(["./executable", name], timeout=30).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        code = repr(exc)
    if code != 0:
        failures += 1
        ET.SubElement(case, "failure", message=f"./executable exited {code}")
suite.set("failures", str(failures))
root = ET.Element("testsuites")
root.append(suite)
ET.ElementTree(root).write("eval/results.xml", encoding="utf-8", xml_declaration=True)
'''

_RUN_SH = b"""#!/bin/bash
# Generated hidden-test runner (see tests/realtask.py): the evaluator reads eval/results.xml.
set -e
cd "$(dirname "$0")/.."
python3 eval/judge.py
"""


def package_tasks_dir() -> Path:
    from programbench.constants import TASKS_DIR

    return Path(TASKS_DIR)


def load_task(iid: str) -> dict[str, Any]:
    """The package's tests.json of ``iid``."""
    data: dict[str, Any] = json.loads((package_tasks_dir() / iid / "tests.json").read_text())
    return data


def active_branches(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: info for name, info in task.get("branches", {}).items() if not info.get("ignored")}


def counted_tests(task: dict[str, Any]) -> list[str]:
    """``branch/name`` of every test the score counts: active branches, ignored tests dropped."""
    out = []
    for branch, info in active_branches(task).items():
        ignored = {t["name"] for t in info.get("ignored_tests") or []}
        out += [f"{branch}/{name}" for name in info["tests"] if name not in ignored]
    return out


def expected_counts(iid: str, passes: Callable[[str], bool]) -> tuple[int, int]:
    """(n_resolved, n_tests) when a test passes iff ``passes(test name)``."""
    tests = counted_tests(load_task(iid))
    return sum(passes(t.split("/", 1)[1]) for t in tests), len(tests)


def write_task(iid: str, tasks: Path, blobs: Path) -> None:
    """Copy the real task's metadata to ``tasks/<iid>``; generate its active branches' archives."""
    shutil.copytree(package_tasks_dir() / iid, tasks / iid)
    for branch, info in active_branches(load_task(iid)).items():
        names = "".join(f"{name}\n" for name in info["tests"])  # ignored ones too, as real runs report
        write_targz(
            blobs / iid / "tests" / f"{branch}.tar.gz",
            [
                ("eval/", 0o755, None),
                ("eval/judge.py", 0o644, _JUDGE.encode()),
                ("eval/run.sh", 0o755, _RUN_SH),
                ("eval/tests.txt", 0o644, names.encode()),
            ],
        )


def write_c_submission(dest: Path, source: str) -> Path:
    """``dest/submission.tar.gz``: ``main.c`` and a compile.sh building ``./executable`` with gcc."""
    compile_sh = b"#!/bin/sh\nset -e\ngcc -O2 -o executable main.c\n"
    return write_targz(
        dest / "submission.tar.gz",
        [
            ("./", 0o755, None),
            ("./compile.sh", 0o755, compile_sh),
            ("./main.c", 0o644, source.encode()),
        ],
        owner=(1000, "agent"),
    )


class ImageTags:
    """Task images as tags of one local image under ``org``; untags only what it tagged.

    Sessions scoring these tasks must run with ``PROGRAMBENCH_DOCKER_ORG=org``.
    """

    def __init__(self, engine: Engine, source: str, org: str) -> None:
        self.engine, self.source, self.org = engine, source, org
        self.created: list[str] = []

    def ref(self, iid: str) -> str:
        from programbench.constants import image_name_from_instance_id

        # The package's naming rule, with our org instead of the one it froze at import.
        repository = image_name_from_instance_id(iid).split("/", 1)[1]
        return f"{self.org}/{repository}:{IMAGE_TAG}"

    def add(self, iid: str) -> str:
        ref = self.ref(iid)
        if self.engine.image_exists(ref):
            raise RuntimeError(f"{ref} already exists; the org {self.org!r} was meant to be private")
        self.engine.tag(self.source, created_tag(ref))
        self.created.append(ref)
        return ref

    def remove_all(self) -> None:
        for ref in self.created:
            self.engine.client.images.remove(ref)  # the source keeps its own tag: this only untags
        self.created.clear()
