"""Integrity: evidence, beside the official score, that a submission games the hidden tests.

The official evaluator stays the grader of record: nothing here changes what it runs or
computes. We read the submission archive on the host, and watch the evaluator's own
containers through the engine at the moments it hands them over (a filesystem diff, a
process list, an archive read: none of them starts a process inside the container),
then read its log. Each finding names what was seen (a path, a hash, two counts), so a
person can judge it; ``--pb-integrity strict`` counts a flagged instance as 0.

The checks follow how the hidden tests run: ``eval/run.sh`` is unpacked into
``/workspace`` over the compiled submission and runs pytest from there in a login
shell (``bash -lc``), so pytest reads ini files and conftest.py from ``/workspace`` and
``/workspace/eval``, Python imports the workspace root before the standard library,
and the shell sources ``/etc/profile``, ``/etc/profile.d`` and the home directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import re
import select
import socket
import struct
import sys
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pytest_programbench import files
from pytest_programbench.scoring.likeness import BUILT_SHARE_THRESHOLD, SHARE_THRESHOLD, Match, Reference

if TYPE_CHECKING:
    from pytest_programbench.engine.containers import Engine

log = logging.getLogger("pytest_programbench")

#: Every finding code and what it means (docs/integrity.md repeats these).
CODES: dict[str, str] = {
    "test_config": "pytest or Python start-up configuration the hidden tests would load",
    "shadowed_module": "a Python module at the workspace root named like one the test run imports",
    "hidden_test_dir": "files under eval/, the directory the hidden tests are unpacked into",
    "link_outside_workspace": "a symbolic link pointing outside /workspace",
    "reference_binary": "the given binary (the task's eval_clean_hashes), or most of its content, "
    "in a file or a running process: copied, cut, padded, compressed or encoded",
    "outside_workspace": "the compile step changed a file outside /workspace, the temp dirs and the "
    "toolchain caches the task image's environment names",
    "installed_binary": "the compile step installed a program outside /workspace (cargo install, "
    "go install, make install)",
    "compile_left_process": "compile.sh left a process running in the compile container",
    "process_outlived_tests": "a process was still running when the evaluator read results.xml",
    "junit_mismatch": "results.xml disagrees with pytest's own summary of the same test run",
    "forged_test_output": "the test step printed more pytest summary lines than it ran pytest sessions",
}

WORKSPACE = "/workspace"
HIDDEN_TEST_DIR = "eval"
#: Where the evaluator keeps the built executable between compile and tests.
_STASH = "/opt/programbench-stashed-executable-do-not-modify"
#: Files are hashed up to this size; the given binaries are far smaller.
HASH_LIMIT = 1 << 30
#: Bytes of a candidate ini file read to look for a pytest section.
_HEAD = 1 << 16

_INI_SECTIONS: dict[str, re.Pattern[bytes]] = {
    "pytest.ini": re.compile(rb""),  # pytest.ini wins even when empty
    ".pytest.ini": re.compile(rb""),
    "tox.ini": re.compile(rb"^\s*\[pytest\]", re.MULTILINE),
    "setup.cfg": re.compile(rb"^\s*\[tool:pytest\]", re.MULTILINE),
    "pyproject.toml": re.compile(rb"^\s*\[tool\.pytest", re.MULTILINE),
}
_STARTUP_FILES = ("sitecustomize", "usercustomize")
# The test run imports pytest, its plugins and much of the standard library after /workspace is
# first on sys.path; a few stdlib names are everyday file names nothing in a test run imports.
_HARMLESS_NAMES = {"test", "code", "this", "antigravity", "idlelib", "turtledemo", "main", "build"}
SHADOWABLE = (set(sys.stdlib_module_names) - _HARMLESS_NAMES) | {
    "pytest",
    "_pytest",
    "py",
    "pluggy",
    "iniconfig",
    "packaging",
    "xdist",
    "execnet",
    "pytest_timeout",
    "pytest_rerunfailures",
    "pytest_timeout_retry",
    "junitparser",
    "exceptiongroup",
    "tomli",
}

#: Outside /workspace, where a build may leave files for the test run (only hashes are checked there).
_TEMP_ROOTS = ("/tmp", "/var/tmp")

#: Outside /workspace and the toolchain caches, what honest builds and the evaluator itself change.
_ALWAYS_ALLOWED = (
    WORKSPACE,
    *_TEMP_ROOTS,
    "/var/cache",
    _STASH,
    # programbench blackholes DNS around compile.sh by rewriting resolv.conf, keeping a backup.
    "/etc/resolv.conf",
    "/etc/resolv.conf.programbench-build-bak",
    # The engine mounts its init there for `docker run --init`, which the evaluator uses.
    "/usr/sbin/docker-init",
    "/sbin/docker-init",
    "/run/podman-init",  # Podman's, for `--init`
)

# Each toolchain's own caches and lock files, as its documentation names them: (the variable
# naming its home, that home's default below a user's home, what under it is cache).
_TOOL_HOMES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # https://doc.rust-lang.org/cargo/guide/cargo-home.html: registry/ and git/ are caches; the
    # lock files .package-cache and .package-cache-mutate, and .global-cache (cargo's record of
    # cache use, 1.78+); bin/ is where `cargo install` puts programs (see _TOOL_INSTALLS).
    ("CARGO_HOME", ".cargo", ("registry", "git", ".package-cache", ".package-cache-mutate", ".global-cache")),
    # rustup keeps downloads and temporary files in its home.
    ("RUSTUP_HOME", ".rustup", ("downloads", "tmp", "update-hashes")),
    # `go help gopath`: pkg/mod (GOMODCACHE's default) and the checksum database cache.
    ("GOPATH", "go", ("pkg/mod", "pkg/sumdb")),
    ("GOMODCACHE", "go/pkg/mod", ("",)),
    # Maven, Gradle, Stack, Cabal, GHCup, npm and ccache: their own documented caches.
    ("", ".m2/repository", ("",)),
    ("GRADLE_USER_HOME", ".gradle", ("",)),
    ("STACK_ROOT", ".stack", ("",)),
    ("CABAL_DIR", ".cabal", ("packages", "logs")),
    ("", ".ghcup", ("cache", "tmp", "logs")),
    ("npm_config_cache", ".npm", ("",)),
    ("CCACHE_DIR", ".ccache", ("",)),
)
# XDG bases (https://specifications.freedesktop.org/basedir-spec): every tool's cache under the
# cache home (go-build, pip, ccache ...); under the config home, Go's env file and telemetry.
_XDG = (("XDG_CACHE_HOME", ".cache", ("",)), ("XDG_CONFIG_HOME", ".config", ("go",)))
# Where installing a program puts it: `cargo install` (CARGO_HOME/bin, or CARGO_INSTALL_ROOT),
# `go install` (GOBIN, else GOPATH/bin), `pip install --user` and friends (~/.local/bin).
_TOOL_INSTALLS = (("CARGO_INSTALL_ROOT", "", "bin"), ("CARGO_HOME", ".cargo", "bin"), ("GOBIN", "", ""),
                  ("GOPATH", "go", "bin"), ("", ".local", "bin"))  # fmt: skip
#: Bookkeeping `cargo install` writes beside the programs it installs.
_INSTALL_RECORDS = (".crates.toml", ".crates2.json")
#: Directories on a usual PATH, where `make install` and other installers put programs.
_SYSTEM_BIN = ("/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/usr/sbin", "/bin", "/sbin")


@dataclass(frozen=True)
class Toolchain:
    """What, outside /workspace, a build may write (caches) and where programs get installed.

    Derived from the task image itself, never guessed: its ``Env`` (``CARGO_HOME``,
    ``RUSTUP_HOME``, ``GOPATH``, ``GOMODCACHE``, ``GOCACHE``, ``GOBIN``, ``XDG_*``,
    ``TMPDIR``, ``HOME``, ...) and its users' home directories, with each tool's
    documented defaults below a home where the variable is not set.
    """

    caches: tuple[str, ...]
    installs: tuple[str, ...]
    records: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str], homes: Iterable[str] = ()) -> Toolchain:
        all_homes = list(dict.fromkeys([h for h in [env.get("HOME", ""), *homes] if h.startswith("/")]))
        caches: list[str] = list(_ALWAYS_ALLOWED)
        if env.get("TMPDIR", "").startswith("/"):
            caches.append(env["TMPDIR"])
        if env.get("GOCACHE", "").startswith("/"):
            caches.append(env["GOCACHE"])
        installs: list[str] = list(_SYSTEM_BIN)
        records: list[str] = []

        def tool_homes(variable: str, default: str) -> list[str]:
            value = env.get(variable, "") if variable else ""
            if value:  # GOPATH may be a list; the others are one path
                return [v for v in value.split(":") if v.startswith("/")]
            return [posixpath.join(h, default) for h in all_homes] if default else []

        for variable, default, below in (*_TOOL_HOMES, *_XDG):
            for home in tool_homes(variable, default):
                caches += [posixpath.join(home, b).rstrip("/") for b in below]
        for variable, default, bin_dir in _TOOL_INSTALLS:
            for home in tool_homes(variable, default):
                installs.append(posixpath.join(home, bin_dir).rstrip("/"))
                if variable.startswith("CARGO"):
                    records += [posixpath.join(home, r) for r in _INSTALL_RECORDS]
        return cls(
            tuple(dict.fromkeys(caches)), tuple(dict.fromkeys(installs)), tuple(dict.fromkeys(records))
        )

    def allows(self, path: str) -> bool:
        return _under(path, self.caches) or path in self.records

    def installed(self, path: str) -> bool:
        return _under(path, self.installs)


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def image_homes(passwd: str) -> list[str]:
    """Home directories of root and of the regular users (uid >= 1000) in an /etc/passwd."""
    homes = []
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2].isdigit() and (fields[2] == "0" or 1000 <= int(fields[2]) < 65534):
            homes.append(fields[5])
    return homes


#: Without the image's own configuration: root's and the agent's homes with the tools' defaults.
DEFAULT_TOOLCHAIN = Toolchain.from_env({"HOME": "/root"}, ["/root", "/home/agent"])
#: The evaluator's containers run `docker run --init ... sleep 2h`: one init (Docker's docker-init,
#: Podman's catatonit at /run/podman-init), one keeper.
_INIT_PREFIXES = ("/sbin/docker-init", "docker-init", "/run/podman-init")
_KEEPER = "sleep 2h"
_SUMMARY_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|rerun)")
# pytest's last line, whole: `==== 1 failed, 8 passed in 0.93s ====`, or bare under -q; after a
# minute `in 61.20s (0:01:01)`, before pytest 5.? `in 0.93 seconds`. Parts like `2 warnings` and
# `3 subtests passed` (pytest-subtests) and `no tests ran` are pytest's or its plugins' words.
_SUMMARY_TEXT = (
    r"(?:\d+ [a-z]+(?: [a-z]+)?|no tests ran)(?:, \d+ [a-z]+(?: [a-z]+)?)*"
    r" in \d+(?:\.\d+)?(?:s| seconds)(?: \([^()]*\))?"
)
_SUMMARY_LINE = re.compile(rf"^(?:=+ ({_SUMMARY_TEXT}) =+|({_SUMMARY_TEXT}))[ \t]*$", re.MULTILINE)
# The header each pytest session prints unless -q; under -q a session prints none.
_SESSION_START = re.compile(r"^=+ test session starts =+[ \t]*$", re.MULTILINE)
# Colours, when a run.sh asks for them (`--color=yes`): pytest paints its summary line.
_SGR = re.compile(r"\x1b\[[0-9;]*m")
#: Findings listed per code at most, so a pathological workspace cannot flood the reports.
MAX_PER_CODE = 20


@dataclass(frozen=True)
class Finding:
    """One piece of evidence: a code from CODES, where it was seen and what was seen."""

    code: str
    path: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "detail": self.detail}

    def __str__(self) -> str:
        text = self.code + (f" {self.path}" if self.path else "")
        return text + (f" ({self.detail})" if self.detail else "")


def describe(findings: Iterable[dict[str, str]], limit: int = 3) -> str:
    """A short line for messages: the first few findings and how many more."""
    items = [str(Finding(**f)) for f in findings]
    more = len(items) - limit
    return "; ".join(items[:limit]) + (f"; +{more} more" if more > 0 else "")


@dataclass(frozen=True)
class Member:
    """A workspace entry as an archive holds it: path relative to /workspace, kind, what it holds."""

    path: str
    kind: str  # file | dir | symlink | hardlink | other
    sha256: str | None = None
    link: str = ""
    head: bytes = b""
    #: How much of the reference it holds (likeness.Match.describe()) when that is most of it.
    resembles: str = ""


def _relative(name: str, root: str) -> str:
    """An archive member name as a path relative to the workspace ('' for the root itself)."""
    name = posixpath.normpath("/" + name.lstrip("/"))  # "./a", "a", "/a" alike; ".a" stays ".a"
    root = root.strip("/")
    if root and (name == "/" + root or name.startswith("/" + root + "/")):
        name = name[len(root) + 1 :]
    return name.lstrip("/")


def read_members(
    fileobj: IO[bytes], *, mode: Literal["r|", "r|gz"], root: str = "", reference: Reference | None = None
) -> Iterator[Member]:
    """The members of a tar stream, regular files hashed on the way (the stream is read once).

    With a ``reference``, a file large enough to hold much of it is also asked how much it
    does (likeness.py), as it is and decoded.
    """
    from pytest_programbench.agents.packing import forget_members

    with tarfile.open(fileobj=fileobj, mode=mode) as archive:
        for info in archive:
            forget_members(archive)  # a million-member workspace: not a million TarInfo objects
            path = _relative(info.name, root)
            if not path:
                continue
            if info.isreg():
                digest, head, resembles = None, b"", ""
                extracted = archive.extractfile(info)
                if extracted is not None and info.size <= HASH_LIMIT:
                    wants_head = posixpath.basename(path) in _INI_SECTIONS
                    if wants_head:
                        head = extracted.read(_HEAD)
                    read = _prefixed(head, extracted.read)
                    if reference is not None and info.size >= reference.min_file_size:
                        match = reference.examine(read)
                        digest = match.sha256
                        resembles = match.describe() if match.share >= SHARE_THRESHOLD else ""
                    else:
                        digest = _sha256_of(read)
                yield Member(path, "file", digest, head=head, resembles=resembles)
            elif info.isdir():
                yield Member(path, "dir")
            elif info.issym():
                yield Member(path, "symlink", link=info.linkname)
            elif info.islnk():
                yield Member(path, "hardlink", link=_relative(info.linkname, root))
            else:
                yield Member(path, "other")


def _prefixed(first: bytes, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """``read``, with ``first`` (bytes already read from it) given back before the rest."""
    pending = [first] if first else []

    def again(size: int) -> bytes:
        if pending:
            return pending.pop()
        return read(size)

    return again


def _sha256_of(read: Callable[[int], bytes]) -> str:
    hasher = hashlib.sha256()
    for block in iter(lambda: read(1 << 20), b""):
        hasher.update(block)
    return hasher.hexdigest()


def scan_members(members: Iterable[Member], clean_hashes: Iterable[str], *, where: str) -> list[Finding]:
    """Findings about workspace entries; ``where`` says which workspace (submission, compiled)."""
    clean = {h.lower() for h in clean_hashes}
    found: list[Finding] = []
    for m in members:
        parts = m.path.split("/")
        if m.kind != "dir":
            config = _loads_as_config(parts, m)
            if config:
                found.append(Finding("test_config", m.path, where))
            if _shadows_module(parts):
                found.append(Finding("shadowed_module", m.path, where))
            elif parts[0] == HIDDEN_TEST_DIR and len(parts) > 1 and not config:
                found.append(Finding("hidden_test_dir", m.path, where))
        if m.kind == "symlink" and _escapes(m.path, m.link):
            found.append(Finding("link_outside_workspace", m.path, f"-> {m.link}; {where}"))
        if m.sha256 is not None and m.sha256 in clean:
            found.append(Finding("reference_binary", m.path, f"sha256 {m.sha256}; {where}"))
        elif m.resembles:
            found.append(Finding("reference_binary", m.path, f"{m.resembles}; {where}"))
    return found


def _loads_as_config(parts: list[str], m: Member) -> bool:
    """Would pytest or Python start-up read this file during the hidden tests?"""
    name = parts[-1]
    # pytest looks for ini files and conftest.py from the test directory (eval/...) up to /.
    in_reach = len(parts) == 1 or parts[0] == HIDDEN_TEST_DIR
    ini = _INI_SECTIONS.get(name)
    if in_reach and (name == "conftest.py" or (ini is not None and (m.kind != "file" or ini.search(m.head)))):
        return True
    # Start-up hooks load from any directory that ends up on sys.path or in a site dir.
    package = name == "__init__.py" and len(parts) >= 2 and parts[-2] in _STARTUP_FILES
    return name.endswith(".pth") or name.split(".")[0] in _STARTUP_FILES or package


def _shadows_module(parts: list[str]) -> bool:
    """A module at the workspace root, first on sys.path when pytest runs from /workspace."""
    name = parts[-1]
    if len(parts) == 1:
        return name.endswith((".py", ".pyc", ".so")) and name.split(".")[0] in SHADOWABLE
    return len(parts) == 2 and name == "__init__.py" and parts[0] in SHADOWABLE


def _escapes(path: str, target: str) -> bool:
    if target.startswith("/"):
        return not (target == WORKSPACE or target.startswith(WORKSPACE + "/"))
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == ".." or resolved.startswith("../")


def scan_submission(
    archive: Path, reference: Reference | None = None, clean_hashes: Iterable[str] = ()
) -> list[Finding]:
    """Findings in the submission archive as the agent left it (read on the host).

    No hash check here: an agent's workspace starts with the given ``./executable`` and
    most leave it, and the evaluator deletes every file with a given binary's hash before
    compiling. What counts is what the build produces (``Audit.compiled``). What the
    evaluator does not delete is checked: a file holding most of the reference's content,
    padded, cut, compressed or encoded (``reference``); the given binary as it was
    (``clean_hashes``) is not, nor ``./executable``, which the evaluator deletes before the
    build (an agent's own rebuild of the program is often left there).
    """
    clean = {h.lower() for h in clean_hashes}
    with archive.open("rb") as f:
        members = (
            replace(m, resembles="") if m.sha256 in clean or m.path == "executable" else m
            for m in read_members(f, mode="r|gz", reference=reference)
        )
        return scan_members(members, (), where="submission")


def changes_outside_workspace(
    changes: Iterable[tuple[str, str]], toolchain: Toolchain = DEFAULT_TOOLCHAIN
) -> list[tuple[str, str]]:
    """The leaf changes (kind, path) of a container diff that no honest build makes.

    A diff lists a directory as changed when anything below it changed; only leaves are
    evidence. A changed directory with nothing changed below it (a file made and removed
    again) is left to the caller, which can ask the engine whether the path is a directory.
    What the toolchain's caches and lock files hold, and the temp dirs, are not listed.
    """
    entries = sorted(changes, key=lambda kp: kp[1])
    leaves = []
    for i, (kind, path) in enumerate(entries):
        below = i + 1 < len(entries) and entries[i + 1][1].startswith(path.rstrip("/") + "/")
        if below or toolchain.allows(path):
            continue
        leaves.append((kind, path))
    return leaves


def stray_processes(commands: Iterable[str]) -> list[str]:
    """Command lines in a container other than its init and the evaluator's ``sleep 2h``.

    By count, not by name alone: the evaluator starts one of each, so a second process
    calling itself ``sleep 2h`` (``exec -a`` names a process anything) is a stray.
    """
    strays, seen = [], set()
    for command in (c.strip() for c in commands):
        kind = "init" if command.startswith(_INIT_PREFIXES) else "keeper" if command == _KEEPER else ""
        if kind and kind not in seen:
            seen.add(kind)
        elif command:
            strays.append(command)
    return strays


def summary_counts(output: str) -> list[tuple[str, dict[str, int]]]:
    """Every pytest summary line in a test step's output, in order: (its text, its counts).

    Whole lines only, shaped as pytest prints its last line (colours stripped): a test's
    own output rarely holds one, a forger's appended line always does.
    """
    found = []
    for padded, bare in _SUMMARY_LINE.findall(_SGR.sub("", output)):
        text = padded or bare
        counts: dict[str, int] = {}
        for number, word in _SUMMARY_COUNT.findall(text):
            key = "errors" if word.startswith("error") else word
            counts[key] = counts.get(key, 0) + int(number)
        found.append((text, counts))
    return found


def pytest_sessions(output: str) -> int:
    """How many pytest sessions a test step shows having run: their headers, and at least one."""
    return max(1, len(_SESSION_START.findall(_SGR.sub("", output))))


def junit_mismatches(log_entries: Iterable[dict[str, Any]]) -> list[Finding]:
    """Branches whose test output disagrees with the results.xml the score came from.

    Reads the evaluator's own log: each branch's ``run_tests`` step (pytest's output) is
    followed by its ``results_read`` step (the XML, parsed with programbench's own
    parser). Every summary line in the step counts, not just the last: a program can
    append a line of its own after pytest's (``junit_mismatch`` then names pytest's,
    which the XML contradicts). A step holds one summary line per pytest session; more
    (``forged_test_output``) means something else wrote one. Hidden tests run pytest
    once per branch; a run.sh that runs it more often shows each session's header,
    unless ``-q``, so then each summary must match the XML or be one of the sessions'.
    """
    from programbench.eval.eval import parse_test_results

    found = []
    last_run: dict[str, Any] | None = None
    for entry in log_entries:
        step = entry.get("step")
        if step == "run_tests":
            last_run = entry
            continue
        if step != "results_read" or entry.get("returncode") != 0 or last_run is None:
            continue
        branch = str(entry.get("branch", ""))
        output = str(last_run.get("output", ""))
        last_run = None
        summaries = summary_counts(output)
        if not summaries:  # a run.sh that silences pytest: no claim either way
            continue
        try:
            parsed = parse_test_results(str(entry.get("output", "")), branch=branch).test_results
        except Exception:  # unparseable XML is the evaluator's business (results_read_failed)
            continue
        sessions = pytest_sessions(output)
        if len(summaries) > sessions:
            lines = "; ".join(f"{k}: {text}" for k, (text, _) in enumerate(summaries, 1))
            found.append(
                Finding(
                    "forged_test_output",
                    f"branch {branch}",
                    f"{len(summaries)} pytest summary lines for {sessions} pytest session(s): {lines}",
                )
            )
        xml_passed = sum(t.status == "passed" for t in parsed)
        xml_bad = sum(t.status in ("failure", "error") for t in parsed)
        contradicted = []
        for k, (text, counts) in enumerate(summaries, 1):
            said_passed = counts.get("passed", 0) + counts.get("xpassed", 0)
            said_bad = counts.get("failed", 0) + counts.get("errors", 0)
            if xml_passed > said_passed or xml_bad < said_bad:
                contradicted.append(f"line {k} of {len(summaries)} ({text})")
        # Several sessions write results.xml in turn: it need only agree with one of them.
        if contradicted and (sessions == 1 or len(contradicted) == len(summaries)):
            found.append(
                Finding(
                    "junit_mismatch",
                    f"branch {branch}",
                    f"pytest printed {', '.join(contradicted)}; "
                    f"results.xml holds {xml_passed} passed, {xml_bad} failed or errors",
                )
            )
    return found


@dataclass(frozen=True)
class TaskImage:
    """What the audit needs from the task image, read once per image per process."""

    reference: Reference | None  # the given binary, when the image's ./executable is it
    toolchain: Toolchain
    note: str = ""  # why there is no reference, if there is none


_task_images: dict[str, TaskImage] = {}
_task_images_lock = threading.Lock()
#: What was seen of each file content or process executable already looked at (any item of this
#: process): sha256 -> match, and an executable's identity -> (sha256, match).
_seen_content: dict[str, Match] = {}
_seen_exes: dict[tuple[int, int, int, int], tuple[str, Match | None]] = {}
#: How often the watch lists the processes of a container while compile.sh or the tests run.
WATCH_SECONDS = 0.01
#: Executables one watch keeps open at most (each stays readable, memfd too, until it is hashed).
WATCH_MAX_EXES = 256


def task_image(engine: Engine, image: str, clean_hashes: Iterable[str]) -> TaskImage:
    """The task image's reference binary and toolchain layout (``Env``, users' homes), cached by id."""
    with _task_images_lock:
        known = _task_images.get(image)
    if known is not None:
        return known
    config = engine.image_config(image)
    env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
    found = engine.image_files(image, [f"{WORKSPACE}/executable", "/etc/passwd"])
    homes = image_homes(found.get("/etc/passwd", b"").decode(errors="replace")) or ["/root"]
    toolchain = Toolchain.from_env({"HOME": "/root", **env}, homes)
    binary = found.get(f"{WORKSPACE}/executable")
    clean = {h.lower() for h in clean_hashes}
    if binary is None:
        result = TaskImage(None, toolchain, "the task image has no /workspace/executable")
    elif hashlib.sha256(binary).hexdigest() not in clean:
        result = TaskImage(
            None, toolchain, "the task image's /workspace/executable is not in eval_clean_hashes"
        )
    else:
        result = TaskImage(Reference(binary), toolchain)
    with _task_images_lock:
        _task_images[image] = result
    return result


class ProcessWatch:
    """The executables of a local container's processes, looked at every WATCH_SECONDS and
    whenever one of them execs (the kernel's process connector, when we may listen to it).

    Each new executable (by inode, size and times, so a program run a thousand times is
    opened once) is opened at once through ``/proc/<pid>/exe``, which works for a memfd or
    a deleted file too, and hashed when the watch stops (once per process of ours: the
    verdict is kept by that key). A process that ends before the look its exec triggered
    is not seen; without the connector, one that starts and ends between two looks.
    """

    def __init__(self, procs_file: str) -> None:
        self.procs_file = procs_file
        #: The container's cgroup directory name, as /proc/<pid>/cgroup of its processes shows it.
        self._cgroup = "/" + os.path.basename(os.path.dirname(procs_file))
        self.opened: list[tuple[tuple[int, int, int, int], int, str, int]] = []  # key, fd, name, pid
        self._known: set[tuple[int, int, int, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pb-process-watch", daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        events = exec_events()
        try:
            while not self._stop.is_set():
                self.look()
                if events is None:
                    self._stop.wait(WATCH_SECONDS)
                else:  # an exec in the container wakes us at once: most short programs are seen too
                    while not self._stop.is_set():
                        ready, _, _ = select.select([events], [], [], WATCH_SECONDS)
                        if not ready or any(self._ours(pid) for pid in _exec_pids(events)):
                            break
            self.look()
        finally:
            if events is not None:
                events.close()

    def _ours(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                return self._cgroup in f.read()
        except OSError:
            return False

    def look(self) -> None:
        try:
            with open(self.procs_file) as f:
                pids = f.read().split()
        except OSError:
            return
        for pid in pids:
            exe = f"/proc/{pid}/exe"
            try:
                info = os.stat(exe)
            except OSError:
                continue
            key = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            if key in self._known or len(self.opened) >= WATCH_MAX_EXES:
                continue
            self._known.add(key)
            with _seen_lock:
                known = key in _seen_exes  # looked at by an earlier watch: python3, bash ...
            try:
                fd = -1 if known else os.open(exe, os.O_RDONLY)
            except OSError:
                continue
            self.opened.append((key, fd, _exe_name(exe, fd), int(pid)))

    def results(self, reference: Reference | None) -> Iterator[tuple[str, int, str, Match | None]]:
        """(name in the container, host pid, sha256, likeness) of each executable seen; closes them."""
        for key, fd, name, pid in self.opened:
            try:
                with _seen_lock:
                    known = _seen_exes.get(key)
                if known is None and fd >= 0:
                    with os.fdopen(os.dup(fd), "rb") as f:
                        known = _look(f.read, key[1], reference)
                    with _seen_lock:
                        _seen_exes[key] = known
                if known is not None and name:
                    yield name, pid, known[0], known[1]
            finally:
                if fd >= 0:
                    os.close(fd)
        self.opened.clear()


_seen_lock = threading.Lock()


def _exe_name(exe: str, fd: int) -> str:
    """The executable's path as its process sees it, even once that process has exited.

    Then our own open descriptor still names it, as this host sees the path: a file in a
    container's overlay reads ``.../merged/<path>``, cut back to ``<path>``.
    """
    try:
        return os.readlink(exe)
    except OSError:
        pass
    try:
        name = os.readlink(f"/proc/self/fd/{fd}") if fd >= 0 else ""
    except OSError:
        name = ""
    return re.sub(r"^/.*?/merged(?=/)", "", name) or "(a process that has exited)"


# The kernel's process events connector (linux/cn_proc.h): every exec on the host, as it happens.
_NETLINK_CONNECTOR, _CN_IDX_PROC, _CN_VAL_PROC, _PROC_CN_MCAST_LISTEN, _PROC_EVENT_EXEC = 11, 1, 1, 1, 2


def exec_events() -> socket.socket | None:
    """A socket told of every process start on this host, or None (not root, not Linux, another netns).

    The watch still lists the container's processes every WATCH_SECONDS without it; with
    it, it also looks the moment a process of the container execs, so most programs that
    run for a millisecond are seen too.
    """
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_CONNECTOR)
    except (OSError, AttributeError):
        return None
    try:
        sock.bind((0, _CN_IDX_PROC))
        body = struct.pack("=IIIIHH", _CN_IDX_PROC, _CN_VAL_PROC, 0, 0, 4, 0) + struct.pack(
            "=I", _PROC_CN_MCAST_LISTEN
        )
        sock.send(struct.pack("=IHHII", 16 + len(body), 3, 0, 0, 0) + body)  # NLMSG_DONE carries it
        sock.setblocking(False)
    except OSError:
        sock.close()
        return None
    return sock


def _exec_pids(sock: socket.socket) -> list[int]:
    """The pids of the execs the connector queued (read until it is empty)."""
    pids = []
    for _ in range(1024):
        try:
            data = sock.recv(1 << 16)
        except OSError:  # nothing left (EAGAIN), or the queue overflowed (ENOBUFS)
            break
        # nlmsghdr (16 bytes), cn_msg (20), proc_event: what, cpu, timestamp (16), then the pid.
        if len(data) >= 60 and struct.unpack_from("=I", data, 36)[0] == _PROC_EVENT_EXEC:
            pids.append(struct.unpack_from("=i", data, 52)[0])
    return pids


def _look(read: Callable[[int], bytes], size: int, reference: Reference | None) -> tuple[str, Match | None]:
    """(sha256, likeness or None) of a stream of ``size`` bytes."""
    if reference is None or size < reference.min_file_size:
        return _sha256_of(read), None
    match = reference.examine(read)
    return match.sha256, match


def _look_at_file(host_path: str, reference: Reference | None) -> tuple[str, Match | None] | None:
    """(sha256, likeness) of a file on this host; None when it cannot be one of the reference's forms."""
    size = os.path.getsize(host_path)
    if size > HASH_LIMIT:
        return None
    if reference is not None and size < reference.min_file_size:
        return None  # too small to hold much of it, or to be it
    with open(host_path, "rb") as f:
        digest = files.sha256(Path(host_path)) if reference is not None else None
        if digest is not None:
            with _seen_lock:
                seen = _seen_content.get(digest)
            if seen is not None:
                return digest, seen
        found = _look(f.read, size, reference)
    if found[1] is not None:
        with _seen_lock:
            _seen_content[found[0]] = found[1]
    return found


class Audit:
    """The evidence gathered while the official evaluator scores one submission.

    The evaluator calls in (see scoring.py) from its own threads; every entry point is
    safe to call concurrently and never raises: a check that cannot run is recorded in
    ``errors`` (shown beside the findings, never counted against the submission), a check
    this engine does not allow in ``not_checked``.
    """

    def __init__(self, engine: Engine, clean_hashes: Iterable[str]) -> None:
        self.engine = engine
        self.clean_hashes = [h.lower() for h in clean_hashes]
        self.findings: list[Finding] = []
        self.errors: list[str] = []
        self.not_checked: list[str] = []
        self.reference: Reference | None = None
        self.toolchain = DEFAULT_TOOLCHAIN
        #: The sha256 of the executable the submission built, once known (compiled()).
        self.built: str | None = None
        # What the watch saw while compile.sh ran, judged once the built executable is known.
        self._pending: list[tuple[str, int, str, Match | None, str]] = []
        self._lock = threading.Lock()

    def _add(self, findings: Iterable[Finding]) -> None:
        with self._lock:
            for f in findings:
                # One finding per file: the submission and the compiled workspace often show the same.
                seen = any((x.code, x.path) == (f.code, f.path) for x in self.findings)
                if not seen and sum(x.code == f.code for x in self.findings) < MAX_PER_CODE:
                    self.findings.append(f)

    def _guard(self, what: str, error: BaseException) -> None:
        log.warning("programbench integrity check %s could not run: %s", what, error)
        with self._lock:
            self.errors.append(f"{what}: {type(error).__name__}: {error}")

    def _unseen(self, what: str) -> None:
        with self._lock:
            if what not in self.not_checked:
                self.not_checked.append(what)

    def task_image(self, image: str) -> None:
        """Before anything else: the reference's content and the toolchain layout, from the task image."""
        try:
            found = task_image(self.engine, image, self.clean_hashes)
        except Exception as exc:
            self._guard("reading the task image", exc)
            return
        self.reference, self.toolchain = found.reference, found.toolchain
        if found.note:
            self._unseen(f"the reference's content (only its sha256): {found.note}")

    def submission(self, archive: Path) -> None:
        try:
            self._add(scan_submission(archive, self.reference, self.clean_hashes))
        except Exception as exc:
            self._guard("submission scan", exc)

    def after_compile_step(self, container_id: str) -> None:
        """Right after compile.sh: what it changed outside /workspace, what it left running."""
        try:
            leaves = changes_outside_workspace(self.engine.changes(container_id), self.toolchain)
            kinds = {"A": "added", "C": "changed", "D": "deleted"}
            for kind, path in leaves:
                if kind == "C" and self.engine.is_dir(container_id, path):
                    continue
                if kind != "D" and self.toolchain.installed(path):
                    detail = (
                        f"{kinds.get(kind, kind)} by compile.sh; a program there is on the test run's PATH"
                    )
                    self._add([Finding("installed_binary", path, detail)])
                else:
                    self._add([Finding("outside_workspace", path, kinds.get(kind, kind))])
        except Exception as exc:
            self._guard("compile diff", exc)
        try:
            self._add(
                Finding("compile_left_process", "", cmd)
                for cmd in stray_processes(self.engine.processes(container_id))
            )
        except Exception as exc:
            self._guard("compile process list", exc)

    @contextlib.contextmanager
    def watching(self, container_id: str, during: str) -> Iterator[None]:
        """Watch the executables of the container's processes while the block runs (compile.sh, tests)."""
        watch = None
        try:
            local = self.engine.local_processes(container_id)
            if local is None:
                self._unseen("the executables of running processes (the engine is not local)")
            else:
                watch = ProcessWatch(local[0])
        except Exception as exc:
            self._guard(f"watching processes {during}", exc)
        if watch is None:
            yield
            return
        with watch:
            yield
        try:
            seen = [
                (name, pid, digest, match, during)
                for name, pid, digest, match in watch.results(self.reference)
            ]
        except Exception as exc:
            self._guard(f"hashing process executables {during}", exc)
            return
        with self._lock:
            self._pending += seen
        if self.built is not None:
            self._judge_processes()

    def _judge_processes(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        shown_digests: set[str] = set()
        for name, pid, digest, match, during in pending:
            if digest in shown_digests:  # the same program run again from another copy
                continue
            shown_digests.add(digest)
            how = f"the executable of a running process (host pid {pid}, /proc/{pid}/exe) {during}"
            self._judge(_workspace_path(name), digest, match, how)

    def _judge(self, path: str, digest: str, match: Match | None, how: str) -> None:
        """A file or executable seen somewhere: the reference by hash, or most of its content."""
        threshold = BUILT_SHARE_THRESHOLD if digest == self.built else SHARE_THRESHOLD
        if digest in self.clean_hashes:
            self._add([Finding("reference_binary", path, f"sha256 {digest}; {how}")])
        elif match is not None and match.share >= threshold:
            self._add([Finding("reference_binary", path, f"{match.describe()}; {how}")])

    def compiled(self, container_id: str, executable_hash: str | None) -> None:
        """After the build: the executable's hash and every file the build left in the container.

        On a local engine the files the build wrote anywhere are read from the container's
        upper directory (hashed, and asked how much of the reference they hold), and the
        workspace's archive gives its structure (configs, links); elsewhere the archives
        of the workspace and the temp dirs are read.
        """
        if executable_hash and executable_hash.lower() in self.clean_hashes:
            self._add([Finding("reference_binary", "executable", f"sha256 {executable_hash}; built")])
        self.built = (executable_hash or "").lower()
        self._judge_processes()
        roots = [WORKSPACE, *_TEMP_ROOTS]
        try:
            written = self.engine.written_files(container_id, ("/",))
        except Exception as exc:
            self._guard("listing the files the build wrote", exc)
            written = None
        if written is not None:
            roots = [WORKSPACE]
            # The evaluator's git seeding packs the workspace's files into .git/objects: copies of
            # what is checked anyway (a .git the submission brought is checked in the archive).
            seeded = f"{WORKSPACE}/.git/objects/"
            written = [(p, h) for p, h in written if not p.startswith(seeded)]
            self._look_at(written, "in the compile container, read from its upper directory")
            self._look_at_tmpfs(container_id, "while compile.sh ran")
        else:
            self._unseen(
                "files the build wrote outside /workspace and the temp dirs (the engine is not local)"
            )
        for root in roots:
            try:
                reference = self.reference if written is None else None  # else seen in the upper dir
                with self.engine.archive(container_id, root) as stream:
                    members = read_members(stream, mode="r|", root=root, reference=reference)
                    found = scan_members(members, self.clean_hashes, where="compiled")
                if root != WORKSPACE:  # only the reference matters outside the workspace
                    found = [
                        Finding(f.code, posixpath.join(root, f.path), f.detail)
                        for f in found
                        if f.code == "reference_binary"
                    ]
                self._add(found)
            except Exception as exc:
                self._guard(f"hashing {root}", exc)

    def _look_at(self, written: Iterable[tuple[str, str]], how: str) -> None:
        for path, host_path in written:
            try:
                seen = _look_at_file(host_path, self.reference)
            except OSError as exc:
                self._guard(f"hashing {path}", exc)
                continue
            if seen is None:
                continue
            self._judge(_workspace_path(path), *seen, how)

    def _look_at_tmpfs(self, container_id: str, during: str) -> None:
        try:
            local = self.engine.local_processes(container_id)
            if local is None:
                self._unseen("tmpfs mounts such as /dev/shm (the engine is not local)")
                return
            found = self.engine.tmpfs_files(container_id, local[1])
        except Exception as exc:
            self._guard("listing tmpfs files", exc)
            return
        self._look_at(found, f"on a tmpfs mount {during}, read through /proc/{local[1]}/root")

    def before_results_read(self, container_id: str, branch: str) -> None:
        """When a branch's tests are done: what still runs, what the test run left in the container."""
        try:
            self._add(
                Finding("process_outlived_tests", f"branch {branch}", cmd)
                for cmd in stray_processes(self.engine.processes(container_id))
            )
        except Exception as exc:
            self._guard("test process list", exc)
        try:
            written = self.engine.written_files(container_id, ("/",))
        except Exception as exc:
            self._guard("listing the files the tests wrote", exc)
            return
        if written is None:
            self._unseen("files the test runs left (the engine is not local)")
            return
        during = f"while branch {branch}'s tests ran"
        # The hidden tests themselves are no evidence; the program they run is checked as built.
        written = [(p, h) for p, h in written if not p.startswith(f"{WORKSPACE}/{HIDDEN_TEST_DIR}/")]
        self._look_at(written, f"written {during}, read from the container's upper directory")
        self._look_at_tmpfs(container_id, during)

    def evaluator_log(self, entries: Iterable[dict[str, Any]]) -> None:
        try:
            self._add(junit_mismatches(entries))
        except Exception as exc:
            self._guard("JUnit cross-check", exc)

    def dicts(self) -> list[dict[str, str]]:
        self._judge_processes()  # a build that failed never told us its executable
        with self._lock:
            return [f.to_dict() for f in self.findings]


def _workspace_path(path: str) -> str:
    """A container path as findings name it: relative inside /workspace; the stash is the executable."""
    if path == _STASH:
        return "executable"
    if path.startswith(WORKSPACE + "/"):
        return path[len(WORKSPACE) + 1 :]
    return path
