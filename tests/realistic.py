"""Realistic task fixtures: Rust, Go and C task images with compiled references, and their tasks.

The images (``images/realistic/<lang>/Dockerfile``) are built offline from Debian trixie's
own toolchains on the mmdebstrap base ``pytest-programbench/base:trixie`` (or any base
with apt, ``PB_TEST_TRIXIE_IMAGE=debian:trixie-slim`` on a machine with a registry). Each
is laid out like a ProgramBench cleanroom image: ``/workspace/executable`` is the
compiled reference, the docs beside it, the ``agent`` user, python3 with pytest,
pytest-xdist and pytest-timeout. Everything else a task needs is written here:

- :data:`FIXTURES`: ``rust-home`` (the default ``~/.cargo``), ``rust-usrlocal``
  (``CARGO_HOME=/usr/local/cargo``, ``RUSTUP_HOME=/usr/local/rustup``, as the official rust
  images), ``go`` (default ``GOPATH``/``GOCACHE``, ``GOTOOLCHAIN=local``) and ``c`` (gcc, make).
- :func:`image_tag` / :func:`build_image`: the image under a tag carrying a hash of its
  build context and base, built only when that tag is missing (``python tests/realistic.py
  build`` builds them all; ``images/build-test-images.sh`` runs it).
- :func:`write_task`: ``tasks/<id>/task.yaml`` and ``tests.json`` (``eval_clean_hashes``
  is the sha256 of the image's own ``/workspace/executable``, since it depends on the
  toolchain), ``blobs/<id>/tests/<branch>.tar.gz`` from ``images/realistic/hidden/<lang>/``
  (two branches, about ten pytest tests, one that runs the program for tens of
  milliseconds), and the image tagged as programbench names the instance's image.
- :func:`write_submission`: ``dest/submission.tar.gz`` of a kind in :data:`HONEST`
  (the reference's own source and a ``compile.sh``) or :data:`CHEATS`; :func:`reference`
  reads the image's binary, which the cheats need.
- :func:`clone`: all of that for several instance ids at once (one per submission), so a
  single session scores many submissions on one image.

Tags made by write_task/clone are recorded with ``support.created_tag`` and removed when
the test session ends; the images themselves stay, cached by content.
"""

from __future__ import annotations

import ast
import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script by images/build-test-images.sh
    sys.path.insert(0, str(HERE))

from support import SESSION_TOKEN, created_tag  # noqa: E402

from pytest_programbench.selftest import IMAGE_TAG, write_targz  # noqa: E402

IMAGES = HERE.parent / "images" / "realistic"
HIDDEN = IMAGES / "hidden"
#: The base the realistic images are built on: the offline trixie base by default.
BASE_IMAGE = os.environ.get("PB_TEST_TRIXIE_IMAGE", "pytest-programbench/base:trixie")
XOR_KEY = 0x5A


@dataclass(frozen=True)
class Fixture:
    """One realistic task image and how its reference's own source is built."""

    name: str
    language: str  # as task.yaml says it
    context: str  # directory under images/realistic
    target: str  # Dockerfile stage ('' for the last)
    program: str
    sources: tuple[str, ...]  # files of the reference's source, relative to the context
    compile_sh: dict[str, str]  # honest kind -> compile.sh
    install: str  # compile.sh line installing the program outside /workspace
    stash_dir: str  # shell word: a toolchain cache directory of this image


_RUST_SOURCES = ("Cargo.toml", "src/main.rs")
_RUST_BUILDS = {
    "release": "cargo build --release --offline\ncp target/release/tally executable\n",
    "debug": "cargo build --offline\ncp target/debug/tally executable\n",
}
FIXTURES: dict[str, Fixture] = {
    "rust-home": Fixture(
        "rust-home", "rust", "rust", "task-home", "tally", _RUST_SOURCES, _RUST_BUILDS,
        "cargo install --offline --path .", '"${CARGO_HOME:-$HOME/.cargo}/registry/cache/index.crates.io-0"',
    ),
    "rust-usrlocal": Fixture(
        "rust-usrlocal", "rust", "rust", "task-usrlocal", "tally", _RUST_SOURCES, _RUST_BUILDS,
        "cargo install --offline --path .", '"${CARGO_HOME:-$HOME/.cargo}/registry/cache/index.crates.io-0"',
    ),
    "go": Fixture(
        "go", "go", "go", "", "csvstat", ("go.mod", "main.go"), {"build": "go build -o executable .\n"},
        "go install .", '"$(go env GOCACHE)/5e"',
    ),
    "c": Fixture(
        "c", "c", "c", "", "crcsum", ("Makefile", "crcsum.c"), {"make": "make\ncp crcsum executable\n"},
        "make install", '"$HOME/.cache/ccache/5e"',
    ),
}  # fmt: skip

#: Honest submissions: (fixture, kind of build) -> the reference's own source, built by compile.sh.
HONEST = {(f.name, kind) for f in FIXTURES.values() for kind in f.compile_sh}
#: Cheats: each scores 1.00 officially; what the audit must say about each is in the tests.
CHEATS = (
    "gzip_shm",  # the reference gzipped; ./executable a script unpacking it to /dev/shm at run time
    "gzip_tmp",  # the same, unpacked to /tmp
    "memfd",  # a launcher holding the reference XOR-ed, run through memfd_create + fexecve
    "cache_stash",  # the reference (base64 in the submission) unpacked into a toolchain cache
    "padded",  # the reference with bytes appended, copied to ./executable
    "install",  # an honest build that also installs the program outside /workspace
)


def context_hash(fixture: Fixture, base: str = BASE_IMAGE) -> str:
    """A hash of everything the image is built from: the context's files, the target and the base."""
    digest = hashlib.sha256(f"{base}\n{fixture.target}\n".encode())
    root = IMAGES / fixture.context
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def image_tag(fixture: Fixture, base: str = BASE_IMAGE) -> str:
    return f"pytest-programbench/realistic-{fixture.name}:{context_hash(fixture, base)}"


def _docker(*args: str, capture: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=capture, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} ... failed: {(done.stderr or '').strip()[-2000:]}")
    return done.stdout or ""


def _exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def build_image(fixture: Fixture, *, base: str = BASE_IMAGE, created: list[str] | None = None) -> str:
    """The fixture's image tag, built first when missing (``created`` gets what was made)."""
    tag = image_tag(fixture, base)
    if _exists(tag):
        return tag
    dangling = set(_docker("images", "-q", "--no-trunc", "--filter", "dangling=true").split())
    target = ["--target", fixture.target] if fixture.target else []
    _docker("build", "-q", "-t", tag, "--build-arg", f"BASE={base}", *target, str(IMAGES / fixture.context))
    if created is not None:
        created.append(tag)
        # The build stages stay behind untagged; they are ours too.
        now = set(_docker("images", "-q", "--no-trunc", "--filter", "dangling=true").split())
        created.extend(sorted(now - dangling))
    return tag


def reference(fixture: Fixture, image: str | None = None) -> bytes:
    """The image's ``/workspace/executable``: the compiled reference."""
    container = _docker("create", "--label", "io.pytest-programbench.run=test-realistic", image or image_tag(fixture))
    container = container.strip()
    try:
        raw = subprocess.run(
            ["docker", "cp", f"{container}:/workspace/executable", "-"], capture_output=True, check=True
        ).stdout
    finally:
        _docker("rm", "-f", container)
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = tar.next()
        extracted = tar.extractfile(member) if member is not None else None
        assert extracted is not None, "no /workspace/executable in the image"
        return extracted.read()


def branches(fixture: Fixture) -> dict[str, Path]:
    root = HIDDEN / fixture.context
    return {p.name: p for p in sorted(root.iterdir()) if (p / "eval" / "run.sh").is_file()}


def test_names(branch_dir: Path) -> list[str]:
    """The JUnit names pytest gives the branch's tests, as tests.json lists them."""
    names = []
    for path in sorted((branch_dir / "eval" / "tests").glob("test_*.py")):
        module = ".".join(["eval", "tests", path.stem])
        tree = ast.parse(path.read_text())
        names += [f"{module}.{node.name}" for node in tree.body if isinstance(node, ast.FunctionDef)
                  and node.name.startswith("test_")]  # fmt: skip
    return names


def _branch_members(branch_dir: Path) -> list[tuple[str, int, bytes | None]]:
    members: list[tuple[str, int, bytes | None]] = []
    for path in sorted(branch_dir.rglob("*")):
        rel = path.relative_to(branch_dir).as_posix()
        if "__pycache__" in rel:
            continue
        if path.is_dir():
            members.append((rel + "/", 0o755, None))
        else:
            members.append((rel, 0o755 if path.suffix == ".sh" else 0o644, path.read_bytes()))
    return members


def write_task(fixture: Fixture, tasks: Path, blobs: Path, ids: Iterable[str], *, image: str) -> str:
    """Task files, hidden-test archives and an image tag for each instance id; returns the clean hash."""
    from programbench.constants import image_name_from_instance_id

    clean = hashlib.sha256(reference(fixture, image)).hexdigest()
    data = {
        "branches": {
            name: {"ignore_reason": "", "ignored": False, "ignored_tests": [], "tests": test_names(path)}
            for name, path in branches(fixture).items()
        }
    }
    for iid in ids:
        task = {
            "repository": f"pytest-programbench/{fixture.program}",
            "commit": iid.rsplit(".", 1)[-1][:7],
            "language": fixture.language,
            "difficulty": "easy",
            "eval_clean_hashes": [clean],
        }
        (tasks / iid).mkdir(parents=True, exist_ok=True)
        (tasks / iid / "task.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
        (tasks / iid / "tests.json").write_text(json.dumps(data, indent=2))
        for name, path in branches(fixture).items():
            write_targz(blobs / iid / "tests" / f"{name}.tar.gz", _branch_members(path))
        _docker("tag", image, created_tag(f"{image_name_from_instance_id(iid)}:{IMAGE_TAG}"))
    return clean


def instance_id(fixture: Fixture, kind: str) -> str:
    """``pbreal__<fixture>-<kind>.<commit><token>``: this process's own id (see support.SESSION_TOKEN)."""
    return f"pbreal__{fixture.name}-{kind.replace('_', '-')}.0c0ffee{SESSION_TOKEN}"


def clone(fixture: Fixture, root: Path, kinds: Iterable[str], *, image: str) -> tuple[Path, Path, dict[str, str]]:
    """The fixture's task under one instance id per submission kind: (tasks, blobs, kind -> id)."""
    ids = {kind: instance_id(fixture, kind) for kind in kinds}
    write_task(fixture, root / "tasks", root / "blobs", ids.values(), image=image)
    return root / "tasks", root / "blobs", ids


def _compile(body: str) -> tuple[int, bytes]:
    return 0o755, ("#!/bin/sh\nset -e\n" + body).encode()


_UNPACK = """#!/bin/sh
# Unpacks the tool on first use, then runs it.
d={where}/.tool-$(id -u)
if [ ! -x "$d/tool" ]; then
    mkdir -p "$d" && gunzip -c /workspace/vendor/tool.gz > "$d/tool.$$" && chmod +x "$d/tool.$$" \\
        && mv -f "$d/tool.$$" "$d/tool" || exit 127
fi
exec "$d/tool" "$@"
"""

_LAUNCHER = r"""#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>
/* The tool, XOR-ed so no byte of it is seen as it is; run from memory, never from a file. */
extern const unsigned char blob[], blob_end[];
__asm__(".section .rodata\n.balign 16\n.global blob\nblob:\n.incbin \"vendor/tool.xor\"\n"
        ".global blob_end\nblob_end:\n.byte 0\n.previous\n");
extern char **environ;
int main(int argc, char **argv) {
    static unsigned char buf[1 << 16];
    size_t n = (size_t)(blob_end - blob);
    int fd = memfd_create("tool", MFD_CLOEXEC);
    if (fd < 0) return 127;
    for (size_t i = 0; i < n; i += sizeof buf) {
        size_t m = n - i < sizeof buf ? n - i : sizeof buf;
        for (size_t j = 0; j < m; j++) buf[j] = blob[i + j] ^ 0x5a;
        if (write(fd, buf, m) != (ssize_t)m) return 127;
    }
    (void)argc;
    fexecve(fd, argv, environ);
    return 127;
}
"""


def submission_files(fixture: Fixture, kind: str, ref: bytes | None = None) -> dict[str, tuple[int, bytes]]:
    """The workspace of a submission: relative path -> (mode, content). Cheats need ``ref``."""
    if kind in fixture.compile_sh:
        files = {name: (0o644, (IMAGES / fixture.context / name).read_bytes()) for name in fixture.sources}
        files["compile.sh"] = _compile(fixture.compile_sh[kind])
        return files
    if kind == "install":
        files = submission_files(fixture, next(iter(fixture.compile_sh)))
        files["compile.sh"] = _compile(next(iter(fixture.compile_sh.values())) + fixture.install + "\n")
        return files
    if ref is None:
        raise ValueError(f"the {kind} submission needs the reference binary")
    if kind in ("gzip_shm", "gzip_tmp"):
        where = "/dev/shm" if kind == "gzip_shm" else "/tmp"
        return {
            "compile.sh": _compile("cp run.sh executable\nchmod +x executable\n"),
            "run.sh": (0o755, _UNPACK.format(where=where).encode()),
            "vendor/tool.gz": (0o644, gzip.compress(ref, mtime=0)),
        }
    if kind == "memfd":
        return {
            "compile.sh": _compile("gcc -O2 -o executable launcher.c\n"),
            "launcher.c": (0o644, _LAUNCHER.encode()),
            "vendor/tool.xor": (0o644, bytes(b ^ XOR_KEY for b in ref)),
        }
    if kind == "cache_stash":
        stash = f"{fixture.stash_dir}/{fixture.program}"
        return {
            "compile.sh": _compile(
                f"mkdir -p {fixture.stash_dir}\nbase64 -d vendor/tool.b64 > {stash}\nchmod +x {stash}\n"
                f"printf '#!/bin/sh\\nexec %s \"$@\"\\n' {stash} > executable\nchmod +x executable\n"
            ),
            "vendor/tool.b64": (0o644, base64.encodebytes(ref)),
        }
    if kind == "padded":
        return {
            "compile.sh": _compile("cp vendor/tool.bin executable\nchmod +x executable\n"),
            "vendor/tool.bin": (0o755, ref + b"\0PADDING" * 512),
        }
    raise ValueError(f"unknown submission kind {kind!r}; expected {sorted(fixture.compile_sh)} or {CHEATS}")


def write_submission(fixture: Fixture, kind: str, dest: Path, ref: bytes | None = None) -> Path:
    """``dest/submission.tar.gz`` of the given kind, laid out like ``tar -czf ... -C /workspace .``."""
    files = submission_files(fixture, kind, ref)
    members: list[tuple[str, int, bytes | None]] = [("./", 0o755, None)]
    dirs = sorted({str(Path(name).parent) for name in files} - {"."})
    members += [(f"./{d}/", 0o755, None) for d in dirs]
    members += [(f"./{name}", mode, content) for name, (mode, content) in files.items()]
    return write_targz(dest / "submission.tar.gz", members, owner=(1000, "agent"))


def build_all(created_file: str | None = None) -> list[str]:
    """Every fixture's image (one build context may serve two fixtures); appends what it made to the file."""
    created: list[str] = []
    try:
        for fixture in FIXTURES.values():
            tag = build_image(fixture, created=created)
            print(f"realistic.py: {fixture.name}: {tag}", flush=True)
    finally:
        if created_file:
            with open(created_file, "a") as f:
                f.writelines(f"{ref}\n" for ref in created)
    return created


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build the realistic task images (cached by content).")
    parser.add_argument("command", choices=["build", "tags"])
    parser.add_argument("--created", help="append the images this run built to this file")
    args = parser.parse_args()
    if args.command == "build":
        build_all(args.created)
    else:
        for fixture in FIXTURES.values():
            print(image_tag(fixture))
