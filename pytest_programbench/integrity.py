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

import hashlib
import logging
import os
import posixpath
import re
import sys
import tarfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pytest_programbench import files

if TYPE_CHECKING:
    from pytest_programbench.containers import Engine

log = logging.getLogger("pytest_programbench")

#: Every finding code and what it means (the README's Integrity section repeats these).
CODES: dict[str, str] = {
    "test_config": "pytest or Python start-up configuration the hidden tests would load",
    "shadowed_module": "a Python module at the workspace root named like one the test run imports",
    "hidden_test_dir": "files under eval/, the directory the hidden tests are unpacked into",
    "link_outside_workspace": "a symbolic link pointing outside /workspace",
    "reference_binary": "a file whose sha256 is the given binary's (the task's eval_clean_hashes)",
    "outside_workspace": "the compile step changed a file outside /workspace and the temp and cache dirs",
    "compile_left_process": "compile.sh left a process running in the compile container",
    "process_outlived_tests": "a process was still running when the evaluator read results.xml",
    "junit_mismatch": "results.xml disagrees with pytest's own summary of the same test run",
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

# Outside /workspace, honest builds write only temp files and toolchain caches.
_ALLOWED_PREFIXES = (
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
    "/usr/local/cargo/registry",
    "/usr/local/cargo/git",
    "/usr/local/cargo/.package-cache",
    "/usr/local/cargo/.global-cache",
    "/go/pkg/mod",
    "/go/pkg/sumdb",
)
_HOME_CACHES = (
    ".cache",
    ".cargo/registry",
    ".cargo/git",
    ".cargo/.package-cache",
    ".cargo/.package-cache-mutate",
    ".cargo/.global-cache",
    "go/pkg/mod",
    "go/pkg/sumdb",
    ".config/go",
    ".m2/repository",
    ".gradle",
    ".stack",
    ".cabal/packages",
    ".cabal/logs",
    ".ghcup/cache",
    ".npm",
    ".ccache",
)
_HOME = re.compile(r"^(/root|/home/[^/]+)/(.+)$")
# The evaluator's `sleep 2h` under the engine's init: Docker's docker-init, Podman's catatonit.
_INIT_COMMANDS = ("sleep 2h", "/sbin/docker-init", "docker-init", "/run/podman-init")
_SUMMARY_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|rerun)")
_SUMMARY_LINE = re.compile(r"^[= ]*(\d+ \w+.*) in [\d.]+s", re.MULTILINE)
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


def _relative(name: str, root: str) -> str:
    """An archive member name as a path relative to the workspace ('' for the root itself)."""
    name = posixpath.normpath("/" + name.lstrip("/"))  # "./a", "a", "/a" alike; ".a" stays ".a"
    root = root.strip("/")
    if root and (name == "/" + root or name.startswith("/" + root + "/")):
        name = name[len(root) + 1 :]
    return name.lstrip("/")


def read_members(fileobj: IO[bytes], *, mode: Literal["r|", "r|gz"], root: str = "") -> Iterator[Member]:
    """The members of a tar stream, regular files hashed on the way (the stream is read once)."""
    with tarfile.open(fileobj=fileobj, mode=mode) as archive:
        for info in archive:
            path = _relative(info.name, root)
            if not path:
                continue
            if info.isreg():
                digest, head = None, b""
                extracted = archive.extractfile(info)
                if extracted is not None and info.size <= HASH_LIMIT:
                    hasher = hashlib.sha256()
                    wants_head = posixpath.basename(path) in _INI_SECTIONS
                    for block in iter(lambda f=extracted: f.read(1 << 20), b""):  # type: ignore[misc]
                        hasher.update(block)
                        if wants_head and len(head) < _HEAD:
                            head += block[: _HEAD - len(head)]
                    digest = hasher.hexdigest()
                yield Member(path, "file", digest, head=head)
            elif info.isdir():
                yield Member(path, "dir")
            elif info.issym():
                yield Member(path, "symlink", link=info.linkname)
            elif info.islnk():
                yield Member(path, "hardlink", link=_relative(info.linkname, root))
            else:
                yield Member(path, "other")


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


def scan_submission(archive: Path) -> list[Finding]:
    """Findings in the submission archive as the agent left it (read on the host).

    No hash check here: an agent's workspace starts with the given ``./executable`` and
    most leave it, and the evaluator deletes every file with a given binary's hash before
    compiling. What counts is what the build produces (``Audit.compiled``).
    """
    with archive.open("rb") as f:
        return scan_members(read_members(f, mode="r|gz"), (), where="submission")


def changes_outside_workspace(changes: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The leaf changes (kind, path) of a container diff that no honest build makes.

    A diff lists a directory as changed when anything below it changed; only leaves are
    evidence. A changed directory with nothing changed below it (a file made and removed
    again) is left to the caller, which can ask the engine whether the path is a directory.
    """
    entries = sorted(changes, key=lambda kp: kp[1])
    leaves = []
    for i, (kind, path) in enumerate(entries):
        below = i + 1 < len(entries) and entries[i + 1][1].startswith(path.rstrip("/") + "/")
        if below or _allowed(path):
            continue
        leaves.append((kind, path))
    return leaves


def _allowed(path: str) -> bool:
    if any(path == p or path.startswith(p + "/") for p in _ALLOWED_PREFIXES):
        return True
    home = _HOME.match(path)
    return home is not None and any(
        home.group(2) == c or home.group(2).startswith(c + "/") for c in _HOME_CACHES
    )


def stray_processes(commands: Iterable[str]) -> list[str]:
    """Command lines in a container other than its init and the evaluator's ``sleep 2h``."""
    return [c for c in commands if c.strip() and not c.strip().startswith(_INIT_COMMANDS)]


def summary_counts(output: str) -> dict[str, int] | None:
    """The counts of pytest's final summary line in a test run's output (None if it has none)."""
    lines = _SUMMARY_LINE.findall(output)
    if not lines:
        return None
    counts: dict[str, int] = {}
    for number, word in _SUMMARY_COUNT.findall(lines[-1]):
        key = "errors" if word.startswith("error") else word
        counts[key] = counts.get(key, 0) + int(number)
    return counts


def junit_mismatches(log_entries: Iterable[dict[str, Any]]) -> list[Finding]:
    """Branches whose results.xml claims more passes, or fewer failures, than pytest printed.

    Reads the evaluator's own log: each branch's ``run_tests`` step (pytest's output) is
    followed by its ``results_read`` step (the XML the score came from). The XML is parsed
    with programbench's own parser.
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
        counts = summary_counts(str(last_run.get("output", "")))
        last_run = None
        if counts is None:
            continue
        try:
            parsed = parse_test_results(str(entry.get("output", "")), branch=branch).test_results
        except Exception:  # unparseable XML is the evaluator's business (results_read_failed)
            continue
        xml_passed = sum(t.status == "passed" for t in parsed)
        xml_bad = sum(t.status in ("failure", "error") for t in parsed)
        said_passed = counts.get("passed", 0) + counts.get("xpassed", 0)
        said_bad = counts.get("failed", 0) + counts.get("errors", 0)
        if xml_passed > said_passed or xml_bad < said_bad:
            found.append(
                Finding(
                    "junit_mismatch",
                    f"branch {branch}",
                    f"pytest printed {said_passed} passed, {said_bad} failed or errors; "
                    f"results.xml holds {xml_passed} passed, {xml_bad} failed or errors",
                )
            )
    return found


class Audit:
    """The evidence gathered while the official evaluator scores one submission.

    The evaluator calls in (see scoring.py) from its own threads; every entry point is
    safe to call concurrently and never raises: a check that cannot run is recorded in
    ``errors`` (shown beside the findings, never counted against the submission).
    """

    def __init__(self, engine: Engine, clean_hashes: Iterable[str]) -> None:
        self.engine = engine
        self.clean_hashes = [h.lower() for h in clean_hashes]
        self.findings: list[Finding] = []
        self.errors: list[str] = []
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

    def submission(self, archive: Path) -> None:
        try:
            self._add(scan_submission(archive))
        except Exception as exc:
            self._guard("submission scan", exc)

    def after_compile_step(self, container_id: str) -> None:
        """Right after compile.sh: what it changed outside /workspace, what it left running."""
        try:
            leaves = changes_outside_workspace(self.engine.changes(container_id))
            kinds = {"A": "added", "C": "changed", "D": "deleted"}
            self._add(
                Finding("outside_workspace", path, kinds.get(kind, kind))
                for kind, path in leaves
                if not (kind == "C" and self.engine.is_dir(container_id, path))
            )
        except Exception as exc:
            self._guard("compile diff", exc)
        try:
            self._add(
                Finding("compile_left_process", "", cmd)
                for cmd in stray_processes(self.engine.processes(container_id))
            )
        except Exception as exc:
            self._guard("compile process list", exc)

    def compiled(self, container_id: str, executable_hash: str | None) -> None:
        """After the build: the executable's hash and every file the build left in the workspace.

        Outside the workspace only hashes matter, and only of files the build wrote: on a
        local engine those are read from the container's upper directory, which spares two
        archive reads (each mounts the container's filesystem and holds the container).
        """
        if executable_hash and executable_hash.lower() in self.clean_hashes:
            self._add([Finding("reference_binary", "executable", f"sha256 {executable_hash}; built")])
        roots = [WORKSPACE, *_TEMP_ROOTS]
        try:
            written = self.engine.written_files(container_id, _TEMP_ROOTS)
        except Exception as exc:
            self._guard("listing the temp dirs", exc)
            written = None
        if written is not None:
            roots = [WORKSPACE]
            for path, host_path in written:
                try:  # files above HASH_LIMIT are not hashed, as in read_members
                    size = os.path.getsize(host_path)
                    digest = files.sha256(Path(host_path)) if size <= HASH_LIMIT else None
                except OSError as exc:
                    self._guard(f"hashing {path}", exc)
                    continue
                if digest in self.clean_hashes:
                    self._add([Finding("reference_binary", path, f"sha256 {digest}; compiled")])
        for root in roots:
            try:
                with self.engine.archive(container_id, root) as stream:
                    members = read_members(stream, mode="r|", root=root)
                    found = scan_members(members, self.clean_hashes, where="compiled")
                if root != WORKSPACE:  # only hashes matter outside the workspace
                    found = [
                        Finding(f.code, posixpath.join(root, f.path), f.detail)
                        for f in found
                        if f.code == "reference_binary"
                    ]
                self._add(found)
            except Exception as exc:
                self._guard(f"hashing {root}", exc)

    def before_results_read(self, container_id: str, branch: str) -> None:
        try:
            self._add(
                Finding("process_outlived_tests", f"branch {branch}", cmd)
                for cmd in stray_processes(self.engine.processes(container_id))
            )
        except Exception as exc:
            self._guard("test process list", exc)

    def evaluator_log(self, entries: Iterable[dict[str, Any]]) -> None:
        try:
            self._add(junit_mismatches(entries))
        except Exception as exc:
            self._guard("JUnit cross-check", exc)

    def dicts(self) -> list[dict[str, str]]:
        with self._lock:
            return [f.to_dict() for f in self.findings]
