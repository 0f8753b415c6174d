"""The integrity audit on real Rust, Go and C builds of real compiled references.

Each family is one replay session (``-n 2``) over one task image per layout, cloned under
one instance id per submission (tests/realistic.py): honest builds of the reference's own
source (cargo release and debug in both CARGO_HOME layouts, ``go build`` with the default
caches, ``make``) must score 1.0 with no finding; each cheat scores what ``programbench
eval``'s own batch function gives it (1.00) and carries the findings that name it, with
where and how they were seen. And ``--pb-reference exec-only`` keeps an agent from reading
the reference while it can still run it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import realistic
from support import created_tag, programbench_eval

from pytest_programbench import selftest
from pytest_programbench.engine.containers import Engine

CPUS = "1"

FAMILIES: dict[str, list[tuple[str, str]]] = {
    "rust": [
        ("rust-home", "release"),
        ("rust-home", "debug"),
        ("rust-usrlocal", "release"),
        ("rust-usrlocal", "debug"),
        ("rust-home", "cache_stash"),
        ("rust-usrlocal", "gzip_shm"),
        ("rust-usrlocal", "memfd"),
        ("rust-usrlocal", "cache_stash"),
        ("rust-usrlocal", "padded"),
        ("rust-usrlocal", "install"),
    ],
    "go": [("go", k) for k in ("build", "gzip_tmp", "memfd", "cache_stash", "padded", "install")],
    "c": [("c", k) for k in ("make", "gzip_shm", "memfd", "padded", "install")],
}
STASHED = {
    "rust-home": "/root/.cargo/registry/cache/index.crates.io-0/tally",
    "rust-usrlocal": "/usr/local/cargo/registry/cache/index.crates.io-0/tally",
    "go": "/root/.cache/go-build/5e/csvstat",
}
INSTALLED = {
    "rust-usrlocal": "/usr/local/cargo/bin/tally",
    "go": "/root/go/bin/csvstat",
    "c": "/usr/local/bin/crcsum",
}
PROCESS = "the executable of a running process (host pid *, /proc/*/exe) while branch *'s tests ran"


def expected(fixture: str, kind: str, clean: str) -> dict[tuple[str, str], str]:
    """(code, path pattern) -> detail pattern of every finding a submission must carry."""
    submitted = "100% of the reference's content{}; submission"
    if kind == "gzip_shm":  # kept in /dev/shm (noexec), run from a transient copy in /tmp
        return {
            ("reference_binary", "vendor/tool.gz"): submitted.format(" once decoded (gzip)"),
            ("reference_binary", "/dev/shm/.tool-0/tool"): (
                f"sha256 {clean}; on a tmpfs mount while branch *'s tests ran, read through /proc/*/root"
            ),
        }
    if kind == "gzip_tmp":  # seen running, or in the test container's upper dir, whichever first
        return {
            ("reference_binary", "vendor/tool.gz"): submitted.format(" once decoded (gzip)"),
            ("reference_binary", "/tmp/.tool-0/tool"): f"sha256 {clean}; *while branch *'s tests ran*",
        }
    if kind == "memfd":  # nothing on any disk: only the running process shows it
        return {("reference_binary", "/memfd:tool (deleted)"): f"sha256 {clean}; {PROCESS}"}
    if kind == "cache_stash":
        return {
            ("reference_binary", "vendor/tool.b64"): submitted.format(" once decoded (base64)"),
            ("reference_binary", STASHED[fixture]): (
                f"sha256 {clean}; in the compile container, read from its upper directory"
            ),
        }
    if kind == "padded":
        return {
            ("reference_binary", "vendor/tool.bin"): submitted.format(""),
            ("reference_binary", "executable"): (
                "100% of the reference's content; in the compile container, read from its upper directory"
            ),
        }
    if kind == "install":
        return {("installed_binary", INSTALLED[fixture]): "added by compile.sh; *PATH"}
    return {}  # honest


def optional(kind: str) -> set[tuple[str, str]]:
    """Findings a submission may carry besides the expected ones: the same cheat seen once more."""
    if kind == "gzip_shm":  # a run's transient copy in /tmp, when the watch catches one running
        return {("reference_binary", "/tmp/.run.*")}
    return set()


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """Every realistic fixture's image (built by images/build-test-images.sh; cached by content)."""
    return {name: realistic.build_image(fixture) for name, fixture in realistic.FIXTURES.items()}


def prepare(family: str, root: Path, images: dict[str, str]) -> dict[str, Any]:
    """Tasks, blobs and submissions of a family: one instance id per (fixture, kind)."""
    cases: dict[str, tuple[str, str]] = {}
    clean: dict[str, str] = {}
    by_fixture: dict[str, list[str]] = {}
    for name, kind in FAMILIES[family]:
        by_fixture.setdefault(name, []).append(kind)
    for name, kinds in by_fixture.items():
        fixture = realistic.FIXTURES[name]
        ref = realistic.reference(fixture, images[name])
        _, _, ids = realistic.clone(fixture, root, kinds, image=images[name])
        for kind, iid in ids.items():
            realistic.write_submission(fixture, kind, root / "runs" / iid, ref)
            cases[iid] = (name, kind)
            clean[iid] = hashlib.sha256(ref).hexdigest()
    return {"root": root, "tasks": root / "tasks", "blobs": root / "blobs", "runs": root / "runs",
            "cases": cases, "clean": clean}  # fmt: skip


def official(prepared: dict[str, Any], iids: list[str], out: Path) -> dict[str, tuple[float, int, int]]:
    """What `programbench eval -w 2` gives each submission, via its own batch function."""
    found = programbench_eval(
        prepared["tasks"], prepared["blobs"], prepared["runs"], out, iids, cpus=int(CPUS)
    )
    return {iid: (s.score, s.n_resolved, s.n_tests) for iid, s in found.items()}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_honest_builds_are_clean_and_each_cheat_is_seen_at_its_official_score(
    family: str, pytester: pytest.Pytester, images: dict[str, str], tmp_path: Path
) -> None:
    prepared = prepare(family, tmp_path / "task", images)
    out = pytester.path / "out"
    result = pytester.runpytest_subprocess(
        f"--pb-tasks-dir={prepared['tasks']}",
        f"--pb-submissions={prepared['runs']}",
        f"--pb-blob-dir={prepared['blobs']}",
        f"--pb-output={out}",
        f"--pb-report={out / 'report.json'}",
        f"--pb-cpus={CPUS}",
        "--pb-pull=never",
        "-n",
        "2",
    )
    rows = {r["instance_id"]: r for r in json.loads((out / "report.json").read_text())["instances"]}
    assert set(rows) == set(prepared["cases"]), result.stdout.str()[-3000:]
    cheats = [iid for iid, (_, kind) in prepared["cases"].items() if kind in realistic.CHEATS]
    parity = official(prepared, cheats, tmp_path / "official")
    problems = []
    for iid, (fixture, kind) in prepared["cases"].items():
        row = rows[iid]
        found = {(f["code"], f["path"]): f["detail"] for f in row["findings"]}
        if (row["score"], row["error_code"]) != (1.0, None):
            problems.append(f"{fixture} {kind}: score {row['score']} ({row['error_code']})")
        if iid in parity and parity[iid] != (row["score"], row["n_resolved"], row["n_tests"]):
            problems.append(f"{fixture} {kind}: {parity[iid]} officially, {row['score']} here")
        wanted = expected(fixture, kind, prepared["clean"][iid])
        for (code, pattern), detail in wanted.items():
            hits = [d for (c, p), d in found.items() if c == code and fnmatch.fnmatch(p, pattern)]
            if not any(fnmatch.fnmatch(d, detail) for d in hits):
                problems.append(f"{fixture} {kind}: no {code} {pattern} ({detail}); found {row['findings']}")
        allowed = set(wanted) | optional(kind)
        extra = [f for f in found if not any(f[0] == c and fnmatch.fnmatch(f[1], p) for c, p in allowed)]
        if extra:
            problems.append(f"{fixture} {kind}: unexpected findings {extra}: {row['findings']}")
        saved = json.loads((out / iid / f"{iid}.integrity.json").read_text())
        if saved["audit_errors"] or saved.get("not_checked", ["(no not_checked)"]):  # a local engine: all run
            problems.append(f"{fixture} {kind}: {saved['audit_errors']} {saved.get('not_checked')}")
    assert problems == []
    n = len(prepared["cases"])
    assert result.parseoutcomes() == {"resolved": n}
    result.stdout.fnmatch_lines([f"Integrity: {len(cheats)} of {n} item(s) flagged, official scores kept*"])


# -- prevention: the agent can run the reference, not read it ----------------------------------

PROBE_AGENT = """
import json, os

PROBES = {
    "cat": "cat ./executable > /dev/null",
    "cp": "cp ./executable /tmp/copy",
    "base64": "base64 ./executable > /dev/null",
    "python open": "python3 -c \\"open('./executable', 'rb').read(1)\\"",
    "dd": "dd if=./executable of=/dev/null count=1",
    "help": "./executable --help > /dev/null",
    "owner": "stat -c '%U %a' ./executable",
}


def pytest_programbench_agent(config, instance):
    def agent(instance, sandbox):
        said = {}
        for name, command in PROBES.items():
            done = sandbox.exec(command, timeout=60)
            said[name] = [done.returncode, done.output.strip()[-200:]]
        target = os.path.join(os.environ["PROBE_DIR"], instance.instance_id + ".json")
        with open(target, "w") as f:
            json.dump({"user": sandbox.user, "probes": said}, f)

    return agent
"""

SCRIPT_IMAGE = """FROM {image}
RUN printf '#!/bin/sh\\necho "usage: tool"\\n' > /workspace/executable && chmod 0755 /workspace/executable
"""


def test_exec_only_reference_runs_but_cannot_be_read(
    pytester: pytest.Pytester,
    engine: Engine,
    images: dict[str, str],
    selftest_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from programbench.constants import image_name_from_instance_id

    fixture = realistic.FIXTURES["rust-usrlocal"]
    tasks, blobs, ids = realistic.clone(fixture, tmp_path, ["exec_only"], image=images["rust-usrlocal"])
    # The same task, its image's ./executable a shell script: that one must stay readable to run.
    script_iid = realistic.instance_id(fixture, "script_reference")
    realistic.write_task(fixture, tasks, blobs, [script_iid], image=images["rust-usrlocal"])
    (tmp_path / "script").mkdir()
    (tmp_path / "script" / "Dockerfile").write_text(SCRIPT_IMAGE.format(image=selftest_image))
    script_tag = created_tag(f"{image_name_from_instance_id(script_iid)}:{selftest.IMAGE_TAG}")
    engine.build(str(tmp_path / "script"), script_tag)  # over the tag write_task made
    probes = tmp_path / "probes"
    probes.mkdir()
    monkeypatch.setenv("PROBE_DIR", str(probes))
    pytester.makeconftest(PROBE_AGENT)
    out = pytester.path / "out"
    pytester.runpytest_subprocess(
        f"--pb-tasks-dir={tasks}",
        f"--pb-blob-dir={blobs}",
        f"--pb-output={out}",
        f"--pb-report={out / 'report.json'}",
        f"--pb-cpus={CPUS}",
        "--pb-pull=never",
        "--pb-reference=exec-only",
        "-p",
        "no:xdist",
    )
    report = json.loads((out / "report.json").read_text())
    assert report["options"]["reference"] == "exec-only"  # the run says what the agent could do
    rows = {r["instance_id"]: r for r in report["instances"]}
    assert rows[ids["exec_only"]]["agent_reference"] == "exec-only"
    assert rows[script_iid]["agent_reference"] == "readable (a script; exec-only needs an ELF binary)"

    elf = json.loads((probes / f"{ids['exec_only']}.json").read_text())
    assert elf["user"] == "agent"
    said = {name: code for name, (code, _) in elf["probes"].items()}
    assert {k: said[k] != 0 for k in ("cat", "cp", "base64", "python open", "dd")} == dict.fromkeys(
        ("cat", "cp", "base64", "python open", "dd"), True
    ), elf
    assert said["help"] == 0, elf
    assert elf["probes"]["owner"][1] == "root 111"
    script = json.loads((probes / f"{script_iid}.json").read_text())
    assert {name: code for name, (code, _) in script["probes"].items()}["cat"] == 0
