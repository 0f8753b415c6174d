"""The integrity audit's checks on their own: workspace entries, diffs, processes, JUnit, toolchains.

No engine: each check gets what the engine would hand it (archive members, a diff, a
process list, an image's Env and /etc/passwd, a /proc file) and must say exactly what it
says about it. tests/test_integrity.py and tests/test_realistic.py run the same checks
on real containers.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

from pytest_programbench import selftest
from pytest_programbench.engine.observe import _upper_files, cgroup_procs_files, writable_tmpfs
from pytest_programbench.scoring import integrity
from pytest_programbench.scoring.integrity import Finding, Member, Toolchain
from pytest_programbench.scoring.likeness import Reference


def workspace_archive(dest: Path, files: dict[str, tuple[int, bytes]]) -> Path:
    """A submission laid out like `tar -czf submission.tar.gz -C workspace .`."""
    members: list[tuple[str, int, bytes | None]] = [("./", 0o755, None)]
    dirs = sorted({str(Path(name).parent) for name in files} - {"."})
    members += [(f"./{d}/", 0o755, None) for d in dirs]
    members += [(f"./{name}", mode, content) for name, (mode, content) in files.items()]
    return selftest.write_targz(dest / "submission.tar.gz", members, owner=(1000, "agent"))


def codes(found: list[Finding]) -> set[tuple[str, str]]:
    return {(f.code, f.path) for f in found}


def test_workspace_entries_the_hidden_tests_would_load() -> None:
    members = [
        Member("conftest.py", "file"),
        Member("eval/tests/conftest.py", "file"),
        Member("src/tests/conftest.py", "file"),  # not on pytest's path from eval/tests
        Member("pytest.ini", "file"),
        Member(".pytest.ini", "file"),
        Member("tox.ini", "file", head=b"[tox]\nenvlist = py\n"),
        Member("eval/tox.ini", "file", head=b"[pytest]\naddopts = -p x\n"),
        Member("setup.cfg", "file", head=b"[metadata]\n\n[tool:pytest]\n"),
        Member("pyproject.toml", "file", head=b"[project]\nname = 'x'\n"),
        Member("sub/pyproject.toml", "file", head=b"[tool.pytest.ini_options]\n"),
        Member("lib/python3/site-packages/evil.pth", "file"),
        Member("deep/sitecustomize.py", "file"),
        Member("usercustomize/__init__.py", "file"),
        Member("subprocess.py", "file"),
        Member("pytest/__init__.py", "file"),
        Member("test.py", "file"),  # a stdlib name nothing in a test run imports
        Member("src/os.py", "file"),  # not on sys.path
        Member("eval/expected.txt", "file"),
        Member("eval", "dir"),
        Member("out", "symlink", link="/usr/bin/true"),
        Member("inner", "symlink", link="src/main.c"),
        Member("up", "symlink", link="../../etc/passwd"),
        Member("bin/tool", "file", sha256="ab" * 32),
        Member("bin/other", "file", sha256="cd" * 32),
    ]
    assert codes(integrity.scan_members(members, ["AB" * 32], where="submission")) == {
        ("test_config", "conftest.py"),
        ("test_config", "eval/tests/conftest.py"),
        ("test_config", "pytest.ini"),
        ("test_config", ".pytest.ini"),
        ("test_config", "eval/tox.ini"),
        ("test_config", "setup.cfg"),
        ("test_config", "lib/python3/site-packages/evil.pth"),
        ("test_config", "deep/sitecustomize.py"),
        ("test_config", "usercustomize/__init__.py"),
        ("shadowed_module", "subprocess.py"),
        ("shadowed_module", "pytest/__init__.py"),
        ("hidden_test_dir", "eval/expected.txt"),
        ("link_outside_workspace", "out"),
        ("link_outside_workspace", "up"),
        ("reference_binary", "bin/tool"),
    }


def test_archive_members_are_read_with_hashes_and_workspace_relative_names(tmp_path: Path) -> None:
    archive = workspace_archive(tmp_path, {"a.txt": (0o644, b"hello"), ".pytest.ini": (0o644, b"[pytest]")})
    with archive.open("rb") as f:
        members = {m.path: m for m in integrity.read_members(f, mode="r|gz")}
    assert set(members) == {"a.txt", ".pytest.ini"}
    assert members["a.txt"].sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert members[".pytest.ini"].head == b"[pytest]"
    # The engine's archive of /workspace names members workspace/...; they read the same.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("workspace/a.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    raw.seek(0)
    assert [m.path for m in integrity.read_members(raw, mode="r|", root="/workspace")] == ["a.txt"]


def test_only_leaf_changes_outside_workspace_temp_and_caches_count() -> None:
    diff = [
        ("C", "/etc"),
        ("C", "/etc/profile.d"),
        ("A", "/etc/profile.d/zz.sh"),
        ("C", "/etc/resolv.conf"),  # the evaluator's DNS blackhole
        ("A", "/etc/resolv.conf.programbench-build-bak"),
        ("A", "/workspace/target/release/x"),
        ("C", "/tmp"),
        ("A", "/tmp/cc1.s"),
        ("C", "/root"),
        ("A", "/root/.cache/go-build/00/aa"),
        ("A", "/root/.cargo/registry/index/x"),
        ("A", "/root/.cargo/bin/evil"),
        ("A", "/home/agent/.gradle/caches/x"),
        ("A", "/home/agent/.bashrc"),
        ("D", "/usr/bin/sha256sum"),
        ("C", "/usr/lib/python3.11/subprocess.py"),
        ("A", "/usr/sbin/docker-init"),  # the engine's --init
    ]
    assert integrity.changes_outside_workspace(diff) == [
        ("A", "/etc/profile.d/zz.sh"),
        ("A", "/home/agent/.bashrc"),
        ("A", "/root/.cargo/bin/evil"),
        ("D", "/usr/bin/sha256sum"),
        ("C", "/usr/lib/python3.11/subprocess.py"),
    ]


def test_processes_other_than_the_evaluators_init_are_stray() -> None:
    assert integrity.stray_processes(
        ["/sbin/docker-init -- sleep 2h", "sleep 2h", "python3 /tmp/rewrite.py", ""]
    ) == ["python3 /tmp/rewrite.py"]


def junit(*statuses: str) -> str:
    cases = "".join(
        f'<testcase classname="eval.tests.t" name="t{i}">'
        + {"passed": "", "failure": '<failure message="x">boom</failure>', "skipped": "<skipped/>"}[s]
        + "</testcase>"
        for i, s in enumerate(statuses)
    )
    return f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>'


def log_for(output: str, xml: str, branch: str = "b1") -> list[dict[str, Any]]:
    return [
        {"step": "run_tests", "output": output, "returncode": 1},
        {"step": "results_read", "output": xml, "returncode": 0, "branch": branch},
    ]


def test_results_xml_is_checked_against_pytests_own_summary() -> None:
    honest = log_for(
        "....F.\n=== 1 failed, 5 passed, 2 rerun in 1.02s ===\n", junit(*["passed"] * 5, "failure")
    )
    assert integrity.junit_mismatches(honest) == []
    quiet = log_for("1 failed, 1 passed, 1 skipped in 0.50s\n", junit("passed", "failure", "skipped"))
    assert integrity.junit_mismatches(quiet) == []
    rewritten = log_for("9 failed, 9 passed in 0.12s\n", junit(*["passed"] * 18), branch="4d9e")
    assert [(f.code, f.path) for f in integrity.junit_mismatches(rewritten)] == [
        ("junit_mismatch", "branch 4d9e")
    ]
    # No summary line to compare with (a run.sh that silences pytest): no claim either way.
    assert integrity.junit_mismatches(log_for("", junit("passed"))) == []
    assert integrity.summary_counts("x\n== 3 passed, 1 error in 2.00s ==\n") == [
        ("3 passed, 1 error in 2.00s", {"passed": 3, "errors": 1})
    ]


# -- what honest builds may write, derived from the task image ---------------------------------

# Both Rust layouts, as real images set them up (tests/realistic.py builds one of each).
USRLOCAL = {
    "CARGO_HOME": "/usr/local/cargo",
    "RUSTUP_HOME": "/usr/local/rustup",
    "PATH": "/usr/local/cargo/bin:/usr/bin",
}
PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nagent:x:1000:1000::/home/agent:/bin/bash\n"
)


def test_homes_are_roots_and_the_regular_users() -> None:
    assert integrity.image_homes(PASSWD) == ["/root", "/home/agent"]
    assert integrity.image_homes("broken line\n") == []


def test_cargo_home_from_the_image_env_is_a_cache_where_the_default_is_not() -> None:
    usrlocal = Toolchain.from_env({"HOME": "/root", **USRLOCAL}, integrity.image_homes(PASSWD))
    # What an honest `cargo build` writes there (cargo 1.85): the lock files and the cache record.
    written = (
        "/usr/local/cargo/.package-cache",
        "/usr/local/cargo/.package-cache-mutate",
        "/usr/local/cargo/.global-cache",
        "/usr/local/cargo/registry/index/x",
        "/usr/local/rustup/tmp/y",
    )
    for path in written:
        assert usrlocal.allows(path), path
    assert not usrlocal.allows("/root/.cargo/registry/x")  # CARGO_HOME is set: ~/.cargo is no cache
    assert not usrlocal.allows("/usr/local/cargo/config.toml")
    assert usrlocal.installed("/usr/local/cargo/bin/tally")
    assert usrlocal.allows("/usr/local/cargo/.crates.toml")  # cargo install's record, beside the program

    default = Toolchain.from_env({"HOME": "/root"}, integrity.image_homes(PASSWD))
    assert default.allows("/root/.cargo/.package-cache-mutate")
    assert default.allows("/home/agent/.cargo/registry/cache/x")
    assert not default.allows("/usr/local/cargo/.package-cache-mutate")
    assert default.installed("/root/.cargo/bin/tally")


def test_go_caches_follow_gopath_gocache_and_xdg() -> None:
    default = Toolchain.from_env({"HOME": "/root"}, ["/root"])
    for path in ("/root/go/pkg/mod/x", "/root/.cache/go-build/ab/cd-d", "/root/.config/go/telemetry/local/x"):
        assert default.allows(path), path
    assert default.installed("/root/go/bin/csvstat")
    assert not default.allows("/root/go/src/x.go")
    moved = Toolchain.from_env(
        {
            "HOME": "/root",
            "GOPATH": "/go:/other",
            "GOCACHE": "/cache/go",
            "XDG_CACHE_HOME": "/xdg",
            "GOBIN": "/gobin",
        },
        ["/root"],
    )
    for path in ("/go/pkg/mod/a", "/other/pkg/sumdb/b", "/cache/go/00/x", "/xdg/pip/y"):
        assert moved.allows(path), path
    assert not moved.allows("/root/.cache/x")  # XDG_CACHE_HOME moved the cache home
    assert moved.installed("/gobin/tool") and moved.installed("/go/bin/tool")
    assert Toolchain.from_env({"TMPDIR": "/scratch"}).allows("/scratch/cc1.s")


def test_make_install_lands_in_a_system_bin_dir() -> None:
    toolchain = Toolchain.from_env({"HOME": "/root"}, ["/root"])
    assert toolchain.installed("/usr/local/bin/crcsum") and not toolchain.allows("/usr/local/bin/crcsum")
    assert toolchain.installed("/root/.local/bin/tool")
    assert not toolchain.installed("/usr/local/lib/libx.so")


def test_the_diff_of_an_honest_cargo_build_in_usr_local_is_clean() -> None:
    diff = [
        ("C", "/usr"), ("C", "/usr/local"), ("C", "/usr/local/cargo"),
        ("A", "/usr/local/cargo/.global-cache"), ("A", "/usr/local/cargo/.package-cache"),
        ("A", "/usr/local/cargo/.package-cache-mutate"),
    ]  # fmt: skip
    usrlocal = Toolchain.from_env({"HOME": "/root", **USRLOCAL}, ["/root"])
    assert integrity.changes_outside_workspace(diff, usrlocal) == []
    # The allow-list this replaced flagged it (issue 20): the old guess lacked the mutate lock.
    assert integrity.changes_outside_workspace(diff, Toolchain.from_env({"HOME": "/root"}, ["/root"])) == [
        ("A", "/usr/local/cargo/.global-cache"),
        ("A", "/usr/local/cargo/.package-cache"),
        ("A", "/usr/local/cargo/.package-cache-mutate"),
    ]


# -- where a local engine's containers are seen from the host ----------------------------------


def test_the_procs_file_of_a_container_from_its_cgroup_lines() -> None:
    v1 = ["12:cpu,cpuacct:/docker/abc", "8:pids:/docker/abc", "1:name=systemd:/docker/abc", "0::/"]
    assert cgroup_procs_files(v1) == [
        "/sys/fs/cgroup/cgroup.procs",
        "/sys/fs/cgroup/pids/docker/abc/cgroup.procs",
        "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cgroup.procs",
    ]
    assert cgroup_procs_files(["0::/system.slice/docker-abc.scope"]) == [
        "/sys/fs/cgroup/system.slice/docker-abc.scope/cgroup.procs"
    ]


def test_writable_tmpfs_mounts_from_mountinfo() -> None:
    mountinfo = (
        "600 599 0:80 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/a\n"
        "601 600 0:82 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
        "602 600 0:83 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755\n"
        "605 602 0:79 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k\n"
        "606 600 0:86 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755\n"
        "607 600 0:87 / /run/my\\040dir rw - tmpfs tmpfs rw\n"
    )
    assert writable_tmpfs(mountinfo) == ["/dev", "/dev/shm", "/run/my dir"]


def test_every_file_a_container_wrote_from_its_upper_dir(tmp_path: Path) -> None:
    for rel in ("usr/local/cargo/bin/tally", "workspace/target/x", "tmp/a"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = {path for path, _ in _upper_files(str(tmp_path), ("/",))}
    assert found == {"/usr/local/cargo/bin/tally", "/workspace/target/x", "/tmp/a"}


# -- the submission's own files, by content ------------------------------------------------------


def test_the_submission_is_checked_for_the_references_content_but_not_the_given_copy(tmp_path: Path) -> None:
    import hashlib
    import os
    import shutil

    binary = Path(os.path.realpath(str(shutil.which("bash")))).read_bytes()
    archive = workspace_archive(
        tmp_path,
        {
            "executable": (0o755, binary),  # the given binary, left where the agent found it
            "vendor/tool.gz": (0o644, gzip.compress(binary + b"tail", mtime=0)),
            "src/main.c": (0o644, b"int main(void) { return 0; }\n" * 4000),
        },
    )
    found = integrity.scan_submission(archive, Reference(binary), [hashlib.sha256(binary).hexdigest()])
    assert [(f.code, f.path) for f in found] == [("reference_binary", "vendor/tool.gz")]
    assert found[0].detail.startswith("100% of the reference's content once decoded (gzip); submission")


def test_exec_events_are_read_from_the_process_connector_packets() -> None:
    import socket
    import struct

    def packet(what: int, pid: int) -> bytes:
        event = struct.pack("=IIQii", what, 0, 123, pid, pid)
        cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(event), 0)
        return struct.pack("=IHHII", 16 + len(cn) + len(event), 3, 0, 0, 0) + cn + event

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with ours, theirs:
        theirs.setblocking(False)
        for what, pid in ((2, 4242), (1, 7), (2, 99)):  # exec, fork, exec
            ours.send(packet(what, pid))
        assert integrity._exec_pids(theirs) == [4242, 99]
        assert integrity._exec_pids(theirs) == []  # drained
