"""The bundled self-test task: where its files live and how to make its blobs and submissions.

``pbselftest__rpncalc.5e1f7a0`` is a small ProgramBench task in the exact programbench layout (task.yaml,
tests.json, per-branch test archives, a task image with ``/workspace/executable``), scored by the real
``programbench`` Evaluator. ``--pb-selftest`` and this project's own tests use it because the 200 real
tasks need Docker Hub images and Hugging Face archives, which many machines (CI included) cannot reach.

This module only writes files; building the image (``images/selftest``) and running the Evaluator is the
caller's business, so it imports neither docker nor programbench at import time.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_programbench.engine.containers import Engine

INSTANCE_ID = "pbselftest__rpncalc.5e1f7a0"
IMAGE_TAG = "task_cleanroom_v6"

_PACKAGE_DIR = Path(__file__).resolve().parent
_DATA_DIR = _PACKAGE_DIR / "selftest_task"
_SOURCE_NAME = "rpncalc.c"

_COMPILE_SH = b"#!/bin/sh\nset -e\ngcc -O2 -o executable rpncalc.c\n"

SUBMISSION_KINDS: tuple[str, ...] = (
    "correct",
    "partial",
    "compile_failure",
    "no_compile_sh",
    "smuggled_executable",
    "reference_copy",
    "empty",
    "not_gzip",
)

# (n_resolved, n_tests, error_code) after ``result.without_ignored(ignored_tests)``, measured with
# programbench 1.2.5's Evaluator called the way ``programbench.eval.eval_batch._evaluate_instance`` calls
# it, against the image built from images/selftest on the offline base. 18 tests count: 20 in the two
# active branches minus 2 ignored_tests; the ignored branch is never run.
EXPECTED: dict[str, tuple[int, int, str | None]] = {
    "correct": (18, 18, None),
    "partial": (15, 18, None),
    "compile_failure": (0, 18, "compile_failed"),
    "no_compile_sh": (0, 18, "compile_failed"),
    # The evaluator deletes a shipped ./executable before compile.sh runs; the no-op compile.sh then
    # leaves nothing to stash.
    "smuggled_executable": (0, 18, "copy_executable_failed"),
    # eval_clean_hashes deletes the vendored reference binary, so compile.sh's `cp` fails. This only
    # holds while the image's /workspace/executable hashes to the value in task.yaml (same gcc).
    "reference_copy": (0, 18, "compile_failed"),
    "empty": (0, 18, "compile_failed"),
    # The container's `tar -xzf` fails and Evaluator.run() raises RuntimeError; eval_batch turns any
    # exception into an InstanceEvalSummary with error_code=type(e).__name__ and no tests.
    "not_gzip": (0, 0, "RuntimeError"),
}


def images_dir() -> Path:
    """The ``images/`` tree: ``<package>/_images`` in a wheel, ``<repo>/images`` in a checkout."""
    for candidate in (_PACKAGE_DIR / "_images", _PACKAGE_DIR.parent / "images"):
        # Checking for the Dockerfile, not the folder, so an unrelated site-packages/images is skipped.
        if (candidate / "selftest" / "Dockerfile").is_file():
            return candidate
    raise FileNotFoundError(
        f"the self-test image context is missing: neither {_PACKAGE_DIR / '_images'} nor "
        f"{_PACKAGE_DIR.parent / 'images'} holds selftest/Dockerfile; reinstall pytest-programbench"
    )


def image_context() -> Path:
    """Docker build context of the self-test task image."""
    return images_dir() / "selftest"


def base_build_script() -> Path:
    """Script that builds the registry-free base image (``pytest-programbench/base:bookworm``)."""
    return images_dir() / "base" / "build-offline.sh"


def image_name() -> str:
    """Image repository of the task, as programbench names it (honours PROGRAMBENCH_DOCKER_ORG)."""
    # Imported late: programbench.constants freezes its environment variables on first import.
    from programbench.constants import image_name_from_instance_id

    return image_name_from_instance_id(INSTANCE_ID)


def tasks_dir() -> Path:
    """Folder holding ``<INSTANCE_ID>/task.yaml`` and ``tests.json`` (a ``--pb-tasks-dir``)."""
    return _DATA_DIR / "tasks"


def branches_dir() -> Path:
    """Sources of the hidden test branches, one ``<branch>/eval/`` tree each."""
    return _DATA_DIR / "branches"


def branch_names() -> list[str]:
    """Every branch with sources, ignored ones included."""
    return sorted(p.name for p in branches_dir().iterdir() if (p / "eval" / "run.sh").is_file())


def reference_source() -> str:
    """The reference C program; the only copy, shared by the image build and the submissions."""
    return (image_context() / _SOURCE_NAME).read_text()


# A member is (name, mode, content); content None means a directory.
_Member = tuple[str, int, bytes | None]


def write_targz(dest: Path, members: list[_Member], owner: tuple[int, str] = (0, "root")) -> Path:
    """Write members (name, mode, content or None for a directory) to a tar.gz whose bytes depend on
    the arguments only (no clock, umask or order); return ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode, content in sorted(members, key=lambda m: m[0].rstrip("/").split("/")):
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = owner[0]
            info.uname = info.gname = owner[1]
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    with dest.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(raw.getvalue())
    return dest


def _branch_members(branch: str) -> list[_Member]:
    root = branches_dir() / branch
    members: list[_Member] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or ".pytest_cache" in rel.parts or path.suffix == ".pyc":
            continue
        if path.is_dir():
            members.append((f"{rel.as_posix()}/", 0o755, None))
        else:
            # Modes by rule, not from disk: a checkout's umask or a wheel install must not change bytes.
            mode = 0o755 if path.suffix == ".sh" else 0o644
            members.append((rel.as_posix(), mode, path.read_bytes()))
    return members


def write_blob_dir(dest: Path) -> Path:
    """Write ``dest/<INSTANCE_ID>/tests/<branch>.tar.gz`` for every branch; return ``dest``.

    ``dest`` is then a blob dir in programbench's sense (``PROGRAMBENCH_BLOB_DIR``, ``--pb-blob-dir``).
    The evaluator streams each archive into ``/workspace/``, hence members named ``eval/...``.
    """
    tests = dest / INSTANCE_ID / "tests"
    for branch in branch_names():
        write_targz(tests / f"{branch}.tar.gz", _branch_members(branch))
    return dest


def clone(engine: Engine, tasks: Path, blobs: Path, ids: Sequence[str]) -> None:
    """The self-test task under other instance ids: task files, hidden tests and an image tag each.

    One session can then score several submissions with one image (the test suite and the
    benchmarks do). ``blobs`` gets the self-test task's own archives too.
    """
    from programbench.constants import image_name_from_instance_id

    write_blob_dir(blobs)
    source_task = tasks_dir() / INSTANCE_ID
    for iid in ids:
        shutil.copytree(source_task, tasks / iid)
        shutil.copytree(blobs / INSTANCE_ID, blobs / iid)
        engine.tag(f"{image_name()}:{IMAGE_TAG}", f"{image_name_from_instance_id(iid)}:{IMAGE_TAG}")


def _patched(source: str, old: str, new: str) -> str:
    # Fail loudly if the reference source drifts away from a patch instead of shipping an unpatched copy.
    if source.count(old) != 1:
        raise RuntimeError(f"self-test patch target not found exactly once in {_SOURCE_NAME}: {old!r}")
    return source.replace(old, new)


def _workspace(files: dict[str, tuple[int, bytes]]) -> list[_Member]:
    # Laid out like `tar -czf submission.tar.gz -C workspace .`: a "./" entry, then "./<path>".
    members: list[_Member] = [("./", 0o755, None)]
    dirs = {str(Path(name).parent) for name in files} - {"."}
    members += [(f"./{d}/", 0o755, None) for d in sorted(dirs)]
    members += [(f"./{name}", mode, content) for name, (mode, content) in files.items()]
    return members


_SMUGGLED_SCRIPT = b"""#!/bin/sh
# Stand-in for a prebuilt binary: builds the bundled source on first use, then runs it.
bin=/tmp/rpncalc-smuggled
if [ ! -x "$bin" ]; then
    gcc -O2 -o "$bin.$$" "$(dirname "$0")/rpncalc.c" && mv -f "$bin.$$" "$bin" || exit 127
fi
exec "$bin" "$@"
"""


def write_submission(kind: str, dest: Path, reference_executable: bytes | None = None) -> Path:
    """Write ``dest/submission.tar.gz`` of the given kind (see SUBMISSION_KINDS, EXPECTED); return its path.

    ``reference_executable`` is the task image's ``/workspace/executable``: required for
    ``reference_copy``; ``smuggled_executable`` ships it (padded) when given, else a working script.
    """
    if kind not in SUBMISSION_KINDS:
        raise ValueError(f"unknown self-test submission kind {kind!r}; expected one of {SUBMISSION_KINDS}")
    archive = dest / "submission.tar.gz"
    source = reference_source()
    src = source.encode()
    files: dict[str, tuple[int, bytes]]
    if kind == "not_gzip":
        dest.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(b"this is not a gzip archive\n")
        return archive
    if kind == "empty":
        write_targz(archive, [])
        return archive
    if kind == "correct":
        files = {"compile.sh": (0o755, _COMPILE_SH), _SOURCE_NAME: (0o644, src)}
    elif kind == "partial":
        # Subtraction with swapped operands: breaks the tests that use `-` and nothing else.
        bug = _patched(source, "__builtin_sub_overflow(a, b, &r)", "__builtin_sub_overflow(b, a, &r)")
        files = {"compile.sh": (0o755, _COMPILE_SH), _SOURCE_NAME: (0o644, bug.encode())}
    elif kind == "compile_failure":
        bad = _patched(source, "#define VERSION", '#error "deliberate compile failure"\n#define VERSION')
        files = {"compile.sh": (0o755, _COMPILE_SH), _SOURCE_NAME: (0o644, bad.encode())}
    elif kind == "no_compile_sh":
        files = {_SOURCE_NAME: (0o644, src)}
    elif kind == "smuggled_executable":
        # Padding changes the sha256 so eval_clean_hashes cannot catch it: only the evaluator's own
        # `rm -f ./executable` stands between this archive and a full score.
        smuggled = reference_executable + b"\0" * 64 if reference_executable is not None else _SMUGGLED_SCRIPT
        files = {
            "compile.sh": (0o755, b"#!/bin/sh\n# ./executable is already built\nexit 0\n"),
            "executable": (0o755, smuggled),
            _SOURCE_NAME: (0o644, src),
        }
    else:  # reference_copy
        if reference_executable is None:
            raise ValueError("the reference_copy submission needs reference_executable (the image's binary)")
        files = {
            "compile.sh": (0o755, b"#!/bin/sh\nset -e\ncp vendor/rpncalc executable\n"),
            "vendor/rpncalc": (0o755, reference_executable),
        }
    # Owned by agent (1000) like a workspace archived inside the task container by mini-swe-agent,
    # which runs as `--user agent`; the evaluator's root `tar -x` hands /workspace to that uid.
    write_targz(archive, _workspace(files), owner=(1000, "agent"))
    return archive


def scripted_agent(instance: Any, sandbox: Any) -> dict[str, Any]:
    """The self-test's agent: writes the reference source and a compile.sh, builds, checks, submits.

    It exercises what every agent does (files in, commands run, a build left in
    /workspace) without a model, so ``pytest --pb-selftest`` proves the machine can run
    the whole pipeline.
    """
    sandbox.write_file(_SOURCE_NAME, reference_source())
    sandbox.write_file("compile.sh", _COMPILE_SH, mode=0o755)
    built = sandbox.exec("./compile.sh && ./executable --version", timeout=120)
    sandbox.report(steps=3)
    if built.returncode != 0:
        return {"exit_status": f"build failed: {built.output.strip()[-200:]}"}
    return {"exit_status": "Submitted"}
