"""Packing fidelity on the real engine: our submission.tar.gz unpacks, in the task image, to the
tree GNU tar's ``tar -czf submission.tar.gz -C /workspace .`` of the same workspace unpacks to.

Both archives are unpacked the way the evaluator unpacks a submission: programbench's own
``ContainerEnvironment.copy_in_tar`` (``docker exec -i <c> tar -C /workspace/ -xzf -``) in a
fresh container of the task image, after the evaluator's wipe of ``/workspace``. The trees are
then listed inside that container, names as raw bytes: type, mode, owner, size, mtime, link
count, content hash, link target. Honest names (deep Java-style trees, names over 100 bytes,
non-ASCII directories) and hostile ones (newlines, escapes, bytes that are not UTF-8, option-like
names, long and escaping symlinks, setuid and mode-000 files) must come out alike; the one
intended difference is that fifos are left out of ours (and listed). The honest workspace also
holds a correct solution under a deep non-ASCII path, scored by the official evaluator.
"""

from __future__ import annotations

import json
import shlex
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import clone_selftest

from pytest_programbench import selftest
from pytest_programbench.agents.sandbox import Limits, Sandbox, open_sandbox
from pytest_programbench.engine.containers import LABEL_RUN, Engine

RUN_ID = f"test-fidelity-{uuid.uuid4().hex[:8]}"
DEEP = "src/test/resources/com/example/rpncalc/fixtures/données/très/profond/répertoire"
SOURCE_PATH = f"{DEEP}/rpncalc.c"
JAVA_FILE = b"DefaultApplicationServiceImplementationWithAVeryLongName.java"

# Each entry: (kind, name as bytes, extra). Kinds: dir, file (content, mode), link (target),
# hard (existing name), fifo. Created in this order by the agent user, inside the container.
Entry = tuple[str, bytes, Any]


def _honest() -> list[Entry]:
    java = b"src/main/java/com/example/application/service/implementation/internal"
    deep = b"/".join([b"level-%02d-" % i + b"d" * 50 for i in range(8)])  # ~480 bytes
    return [
        ("dir", DEEP.encode(), None),
        ("file", SOURCE_PATH.encode(), (selftest.reference_source().encode(), 0o644)),
        (
            "file",
            b"compile.sh",
            (f'#!/bin/sh\nset -e\ngcc -O2 -o executable "{SOURCE_PATH}"\n'.encode(), 0o755),
        ),
        ("dir", java, None),
        ("file", java + b"/" + JAVA_FILE, (b"class A {}\n", 0o644)),
        ("dir", b"src/donn\xc3\xa9es", None),
        ("file", b"src/donn\xc3\xa9es/wc.py", (b"print('wc')\n", 0o644)),
        ("dir", "docs/日本語".encode(), None),
        ("file", "docs/日本語/説明.md".encode(), (b"# doc\n", 0o644)),
        ("file", "emoji-🦀.rs".encode(), (b"fn main() {}\n", 0o600)),
        ("dir", "Ünïcödé dir".encode(), None),
        ("file", "Ünïcödé dir/file with spaces.txt".encode(), (b"x" * 5000, 0o444)),
        ("file", b"n" * 200, (b"two hundred bytes of name\n", 0o644)),
        ("file", "é".encode() * 127, (b"254 bytes of name\n", 0o644)),
        ("dir", deep, None),
        ("file", deep + b"/leaf.txt", (b"deep\n", 0o644)),
        ("dir", b".cargo", None),
        ("file", b".cargo/config.toml", (b"[build]\n", 0o644)),
        ("dir", b"target/empty", None),
        ("link", b"link-to-wc", b"src/donn\xc3\xa9es/wc.py"),
        ("link", b"link-long", java + b"/" + JAVA_FILE),
        ("hard", b"hard-donn\xc3\xa9es.py", b"src/donn\xc3\xa9es/wc.py"),
        ("hard", deep + b"/hard-leaf.txt", deep + b"/leaf.txt"),
    ]


def _hostile() -> list[Entry]:
    return [
        ("file", b"new\nline", (b"1", 0o644)),
        ("file", b"tab\tand\rreturn", (b"2", 0o644)),
        ("file", b"\x1b[31mred\x1b[0m", (b"3", 0o644)),
        ("file", b"back\\slash", (b"4", 0o644)),
        ("file", b"latin1-\xe9-not-utf8-\xff\xfe", (b"5", 0o644)),
        ("dir", b"dir-\xff", None),
        ("file", b"dir-\xff/inner-\xfe", (b"6", 0o644)),
        ("file", b"--checkpoint-action=exec=sh", (b"7", 0o644)),
        ("file", b"-rf", (b"8", 0o644)),
        ("file", b"*?[glob]", (b"9", 0o644)),
        ("file", b" leading and trailing ", (b"10", 0o644)),
        ("file", b"...", (b"11", 0o644)),
        ("file", b"setuid", (b"#!/bin/sh\n", 0o4755)),
        ("file", b"mode-000", (b"secret", 0o000)),
        ("dir", b"sticky", None),
        ("link", b"shadow", b"/etc/shadow"),
        ("link", b"up", b"../../../etc/passwd"),
        ("link", b"dangling", b"does/not/exist"),
        ("link", b"loop-a", b"loop-b"),
        ("link", b"loop-b", b"loop-a"),
        ("link", b"long-target", b"/" + b"/".join([b"t" * 60] * 40)),
        ("link", b"link-\xff", b"dir-\xff/inner-\xfe"),
        ("hard", b"hard\nlink", b"new\nline"),
        ("fifo", b"pipe", None),
        ("fifo", b"dir-\xff/pipe\n", None),
    ]


NAME_SETS = {"honest": _honest, "hostile": _hostile}

MAKE = textwrap.dedent(
    """
    import json, os, sys
    os.chdir(b"/workspace")
    for kind, name, extra in json.loads(sys.stdin.read()):
        name = bytes.fromhex(name)
        if kind == "dir":
            os.makedirs(name, exist_ok=True)
        elif kind == "file":
            content, mode = extra
            with open(name, "wb") as f:
                f.write(bytes.fromhex(content))
            os.chmod(name, mode)
        elif kind == "link":
            os.symlink(bytes.fromhex(extra), name)
        elif kind == "hard":
            os.link(bytes.fromhex(extra), name)
        elif kind == "fifo":
            os.mkfifo(name)
    os.chmod(b"sticky", 0o1777) if os.path.isdir(b"sticky") else None
    """
)

LIST = textwrap.dedent(
    """
    import hashlib, json, os, stat
    rows = {}
    def add(path):
        st = os.lstat(path)
        row = {"mode": oct(st.st_mode), "owner": [st.st_uid, st.st_gid], "nlink": st.st_nlink}
        if not stat.S_ISLNK(st.st_mode):
            row["mtime"] = int(st.st_mtime)
        if stat.S_ISREG(st.st_mode):
            row["size"] = st.st_size
            with open(path, "rb") as f:
                row["sha256"] = hashlib.sha256(f.read()).hexdigest()
        if stat.S_ISLNK(st.st_mode):
            row["target"] = os.readlink(path).hex()
        rows[os.path.relpath(path, b"/workspace").hex()] = row
    add(b"/workspace")
    for folder, dirs, names in os.walk(b"/workspace"):
        for name in dirs + names:
            add(os.path.join(folder, name))
    print(json.dumps(rows, sort_keys=True))
    """
)


def _spec(entries: list[Entry]) -> str:
    rows = []
    for kind, name, extra in entries:
        if kind == "file":
            extra = [extra[0].hex(), extra[1]]
        elif kind in ("link", "hard"):
            extra = extra.hex()
        rows.append([kind, name.hex(), extra])
    return json.dumps(rows)


@pytest.fixture(scope="module")
def packed(
    engine: Engine, selftest_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Path, Path, tuple[str, ...]]]]:
    """Per name set: (our archive, GNU tar's archive, what packing left out), from one workspace each."""
    out: dict[str, tuple[Path, Path, tuple[str, ...]]] = {}
    root = tmp_path_factory.mktemp("fidelity")
    for name, entries in NAME_SETS.items():
        with open_sandbox(
            engine, selftest_image, run_id=RUN_ID, worker="gw-test", instance_id=name, limits=Limits(cpus=1)
        ) as box:
            _populate(box, entries())
            gnu = root / f"{name}-gnu.tar.gz"
            container = engine.get(box.container_id)
            made = engine.exec(container, "tar -czf /tmp/gnu.tar.gz -C /workspace .", user="0", workdir="/")
            assert made.returncode == 0, made.output
            gnu.write_bytes(engine.read_file(container, "/tmp/gnu.tar.gz"))
            ours = box.pack(root / name / "submission.tar.gz")
            out[name] = (ours.path, gnu, ours.skipped)
    yield out
    assert engine.labelled({LABEL_RUN: RUN_ID}) == []


def _populate(box: Sandbox, entries: list[Entry]) -> None:
    # Made by a script in the container, as the agent user: the names are bytes no shell quoting
    # would carry, and this is how an agent's own files come to be.
    box.write_file("/tmp/spec.json", _spec(entries), mode=0o644)
    made = box.exec(f"python3 -c {shlex.quote(MAKE)} < /tmp/spec.json")
    assert made.returncode == 0, made.output


def _unpacked_tree(engine: Engine, image: str, archive: Path) -> dict[str, Any]:
    """The tree ``archive`` unpacks to in a fresh task container, as the evaluator unpacks it."""
    from programbench.container import ContainerEnvironment

    labels = ["--label", f"{LABEL_RUN}={RUN_ID}", "--network", "none"]
    env = ContainerEnvironment(image=image, cwd="/workspace", cpus=1, run_args=labels)
    try:
        wiped = env.execute("rm -rf /workspace/* /workspace/.[!.]*")  # the evaluator's wipe_workspace
        assert wiped["returncode"] == 0, wiped
        env.copy_in_tar(archive, "/workspace/")
        listed = env.execute(f"python3 -c {shlex.quote(LIST)}")
        assert listed["returncode"] == 0, listed
        return dict(json.loads(listed["output"].splitlines()[-1]))
    finally:
        env.cleanup()


@pytest.mark.parametrize("name_set", list(NAME_SETS))
def test_our_archive_unpacks_in_the_task_image_as_gnu_tars_does(
    engine: Engine, selftest_image: str, packed: dict[str, tuple[Path, Path, tuple[str, ...]]], name_set: str
) -> None:
    ours, gnu, skipped = packed[name_set]
    got = _unpacked_tree(engine, selftest_image, ours)
    want = _unpacked_tree(engine, selftest_image, gnu)
    fifos = {n.hex() for kind, n, _ in NAME_SETS[name_set]() if kind == "fifo"}
    # GNU tar submits fifos; we leave them out and say which (sandbox.SubmissionWarning).
    assert {k for k in want if int(want[k]["mode"], 8) & 0o170000 == 0o010000} == fifos
    assert sorted(skipped) == sorted("./" + bytes.fromhex(f).decode(errors="surrogateescape") for f in fifos)
    want = {k: v for k, v in want.items() if k not in fifos}
    missing = sorted(bytes.fromhex(k) for k in set(want) - set(got))
    extra = sorted(bytes.fromhex(k) for k in set(got) - set(want))
    assert (missing, extra) == ([], []), "trees differ in their names"
    differing = {bytes.fromhex(k): (got[k], want[k]) for k in want if got[k] != want[k]}
    assert differing == {}
    # Not two empty trees alike: every name the agent made is there.
    assert {n.hex() for kind, n, _ in NAME_SETS[name_set]() if kind != "fifo"} <= set(got)


def test_honest_deep_and_non_ascii_workspace_scores_full_marks(
    engine: Engine,
    selftest_image: str,
    packed: dict[str, tuple[Path, Path, tuple[str, ...]]],
    tmp_path: Path,
) -> None:
    from pytest_programbench.scoring.evaluator import score_submission
    from pytest_programbench.scoring.verdict import ScoreRequest
    from pytest_programbench.selection.tasks import load_instances, load_tests

    tasks, blobs, [iid] = clone_selftest(engine, tmp_path, ["fidelity"])
    [instance] = load_instances(tasks, image_tag=selftest.IMAGE_TAG, skip_fixtures=False)
    outcome = score_submission(
        ScoreRequest(
            instance,
            packed["honest"][0],
            blob_dir=blobs / iid,
            instance_dir=tmp_path / "out" / iid,
            cpus=1,
            task=load_tests(instance),
            labels={LABEL_RUN: RUN_ID},
        )
    )
    assert (outcome.score, outcome.n_resolved, outcome.n_tests, outcome.error_code) == (1.0, 18, 18, None)
