"""The integrity audit: four ways to game the score, each seen beside the official number.

Each attack is a real submission (or agent) on a clone of the self-test task, scored by the
real evaluator on the real engine. The official score stays what ``programbench eval``
gives (checked against its batch function); the findings say why it cannot be trusted, and
``--pb-integrity strict`` counts the instance 0. tests/unit/test_integrity_checks.py pins
down each check on its own, with no engine.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml, Properties, Property
from support import clone_selftest, programbench_eval

from pytest_programbench import selftest
from pytest_programbench.engine.containers import Engine
from pytest_programbench.scoring import integrity
from pytest_programbench.text import printable

CPUS = "1"
COMPILE = b"#!/bin/sh\nset -e\ngcc -O2 -o executable rpncalc.c\n"
EXIT_3 = b"#!/bin/sh\nexit 3\n"

# A login-shell hook (the evaluator runs every step with `bash -lc`): it writes a compile.sh when
# the workspace has none, and on the shell's exit strips every <failure> from results.xml.
PROFILE_HOOK = b"""\
if [ -d /workspace ]; then
  [ -f /workspace/compile.sh ] || { printf '#!/bin/sh\\nprintf "#!/bin/sh\\\\nexit 3\\\\n" > executable\\n\
chmod +x executable\\n' > /workspace/compile.sh; chmod +x /workspace/compile.sh; } 2>/dev/null
  trap 'python3 -c "import pathlib, re
p = pathlib.Path(\\"/workspace/eval/results.xml\\")
x = r\\"<failure.*?</failure>|<failure[^>]*/>\\"
if p.exists(): p.write_text(re.sub(x, \\"\\", p.read_text(), flags=re.S))
" 2>/dev/null' EXIT
fi
"""

# Every report's outcome becomes "passed", whatever the test did.
PASSING_CONFTEST = b"""\
import pytest

@pytest.hookimpl(hookwrapper=True)  # old style: the task image's pytest may predate wrapper=True
def pytest_runtest_makereport(item, call):
    outcome = yield
    outcome.get_result().outcome = "passed"
"""


# The program under test leaves a daemon behind on its first run in a test container. The daemon
# waits for pytest to exit, rewrites results.xml to all-passed and appends a summary line to
# match to the test step's output, which it opened through /proc. So that the step cannot end
# before it has written, it first appends a wait to eval/run.sh (bash reads a script as it goes).
FORGER = b"""\
import os, re, time
from pathlib import Path

def pids(word):
    found = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and word in (p / "cmdline").read_bytes():
                found.append(p.name)
        except OSError:
            pass
    return found

with open("/workspace/eval/run.sh", "a") as f:
    f.write("\\nfor i in $(seq 600); do [ -e /tmp/.pb-forged ] && break; sleep 0.1; done\\n")
out = os.open(f"/proc/{pids(b'eval/run.sh')[0]}/fd/1", os.O_WRONLY)
while pids(b"pytest"):
    time.sleep(0.05)
xml = Path("/workspace/eval/results.xml")
text = re.sub(r"<(failure|error)\\b.*?(/>|</\\1>)", "", xml.read_text(), flags=re.S)
xml.write_text(text)
os.write(out, f"{text.count('<testcase')} passed in 0.42s\\n".encode())
os.close(out)
open("/tmp/.pb-forged", "w").close()
os._exit(0)  # gone before run.sh sees the flag: nothing is left for the process list
"""
FORGING_PROGRAM = b"""\
#!/bin/sh
if mkdir /tmp/.pb-forger 2>/dev/null; then
  setsid python3 /workspace/forger.py </dev/null >/dev/null 2>&1 &
fi
exit 3
"""
# A workspace entry whose name would clear the terminal, retitle it and start a line of its own.
CONTROL_NAME = "evil\x1b[2J\x1b]0;pwned\x07\nprogrambench: 0 resolved\u202e"


def workspace_archive(dest: Path, files: dict[str, tuple[int, bytes]]) -> Path:
    """A submission laid out like `tar -czf submission.tar.gz -C workspace .`."""
    members: list[tuple[str, int, bytes | None]] = [("./", 0o755, None)]
    dirs = sorted({str(Path(name).parent) for name in files} - {"."})
    members += [(f"./{d}/", 0o755, None) for d in dirs]
    members += [(f"./{name}", mode, content) for name, (mode, content) in files.items()]
    return selftest.write_targz(dest / "submission.tar.gz", members, owner=(1000, "agent"))


def attack_submission(kind: str, dest: Path, reference: bytes) -> Path:
    if kind == "config_hook":  # 1: pytest configuration that passes every hidden test
        files = {
            "compile.sh": (0o755, b"#!/bin/sh\ncp fake.sh executable && chmod +x executable\n"),
            "fake.sh": (0o755, EXIT_3),
            "pytest.ini": (0o644, b"[pytest]\n"),
            "conftest.py": (0o644, PASSING_CONFTEST),
        }
    elif kind == "profile_hook":  # 2: a hook outside /workspace that rewrites results.xml
        files = {
            "compile.sh": (
                0o755,
                b"#!/bin/sh\nset -e\ncp hook.sh /etc/profile.d/zz-results.sh\n"
                b"cp fake.sh executable && chmod +x executable\n",
            ),
            "fake.sh": (0o755, EXIT_3),
            "hook.sh": (0o644, PROFILE_HOOK),
        }
    elif kind == "gzipped_reference":  # 3: the given binary, compressed past eval_clean_hashes
        files = {
            "compile.sh": (
                0o755,
                # and a copy left in /tmp, outside the workspace, where the test run could reach it
                b"#!/bin/sh\nset -e\ngunzip -c vendor/tool.gz > executable\nchmod +x executable\n"
                b"mkdir -p /tmp/stash && cp executable /tmp/stash/tool\n",
            ),
            "vendor/tool.gz": (0o644, gzip.compress(reference, mtime=0)),
        }
    elif kind == "forged_output":  # 4: results.xml rewritten after pytest, and a summary line to match
        files = {
            "compile.sh": (0o755, b"#!/bin/sh\nset -e\ncp fake.sh executable && chmod +x executable\n"),
            "fake.sh": (0o755, FORGING_PROGRAM),
            "forger.py": (0o644, FORGER),
        }
    elif kind == "control_names":  # 5: an honest program, and a name that attacks the terminal
        archive = selftest.write_submission("correct", dest)
        with tarfile.open(archive, "r:gz") as tar:
            members = [(m, tar.extractfile(m)) for m in tar]
            contents = [(m, f.read() if f is not None else None) for m, f in members]
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member, content in contents:
                tar.addfile(member, io.BytesIO(content) if content is not None else None)
            link = tarfile.TarInfo(f"./{CONTROL_NAME}")
            link.type, link.linkname, link.uid, link.gid = tarfile.SYMTYPE, "/etc/passwd", 1000, 1000
            tar.addfile(link)
        archive.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
        return archive
    else:
        raise ValueError(kind)
    return workspace_archive(dest, files)


ATTACKS = ["config_hook", "profile_hook", "gzipped_reference", "forged_output", "control_names"]
EXPECTED_FINDINGS = {
    "config_hook": {("test_config", "pytest.ini"), ("test_config", "conftest.py")},
    "profile_hook": {("outside_workspace", "/etc/profile.d/zz-results.sh"), ("junit_mismatch", "branch *")},
    "gzipped_reference": {
        ("reference_binary", "executable"),
        ("reference_binary", "/tmp/stash/tool"),
        ("reference_binary", "vendor/tool.gz"),  # read as what it holds since issue 20
    },
    "forged_output": {("forged_test_output", "branch *"), ("junit_mismatch", "branch *")},
    "control_names": {("link_outside_workspace", glob.escape(CONTROL_NAME))},
}


# -- the attacks on the real engine -----------------------------------------------------------


@pytest.fixture(scope="module")
def attacks(
    engine: Engine, selftest_image: str, reference_executable: bytes, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("attacks")
    names = [*ATTACKS, "correct"]
    tasks, blobs, ids = clone_selftest(engine, root, [f"attack_{n}" for n in names])
    runs = root / "runs"
    for name, iid in zip(names, ids, strict=True):
        if name == "correct":
            selftest.write_submission("correct", runs / iid)
        else:
            attack_submission(name, runs / iid, reference_executable)
    return {"tasks": tasks, "blobs": blobs, "runs": runs, "ids": dict(zip(names, ids, strict=True))}


def official_scores(attacks: dict[str, Any], out: Path) -> dict[str, tuple[float, int, int]]:
    """What `programbench eval` gives each submission, via its own batch function."""
    ids = attacks["ids"]
    found = programbench_eval(
        attacks["tasks"], attacks["blobs"], attacks["runs"], out, ids.values(), cpus=int(CPUS)
    )
    return {name: (found[iid].score, found[iid].n_resolved, found[iid].n_tests) for name, iid in ids.items()}


def replay(pytester: pytest.Pytester, attacks: dict[str, Any], out: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        f"--pb-tasks-dir={attacks['tasks']}",
        f"--pb-submissions={attacks['runs']}",
        f"--pb-blob-dir={attacks['blobs']}",
        f"--pb-output={out}",
        f"--pb-report={out / 'report.json'}",
        f"--junitxml={out / 'junit.xml'}",
        f"--pb-cpus={CPUS}",
        "--pb-pull=never",
        *args,
    )


def rows_of(out: Path) -> dict[str, dict[str, Any]]:
    return {r["instance_id"]: r for r in json.loads((out / "report.json").read_text())["instances"]}


def matches(found: set[tuple[str, str]], expected: set[tuple[str, str]]) -> bool:
    """Every expected (code, path pattern) is found, and nothing else."""
    import fnmatch

    return all(any(c == e and fnmatch.fnmatch(p, ep) for c, p in found) for e, ep in expected) and all(
        any(c == e and fnmatch.fnmatch(p, ep) for e, ep in expected) for c, p in found
    )


def test_gamed_submissions_keep_the_official_score_and_carry_findings(
    pytester: pytest.Pytester, attacks: dict[str, Any], tmp_path: Path
) -> None:
    ids = attacks["ids"]
    out = pytester.path / "out"
    result = replay(pytester, attacks, out, "-n", "2")
    rows = rows_of(out)

    # The grader of record is unchanged: every attack scores what programbench eval gives it (1.00).
    official = official_scores(attacks, tmp_path / "official")
    for name, iid in ids.items():
        assert (rows[iid]["score"], rows[iid]["n_resolved"], rows[iid]["n_tests"]) == official[name], name
        assert official[name] == (1.0, 18, 18), name
    assert result.parseoutcomes() == {"resolved": 6}

    for name in ATTACKS:
        row = rows[ids[name]]
        found = {(f["code"], f["path"]) for f in row["findings"]}
        assert matches(found, EXPECTED_FINDINGS[name]), (name, row["findings"])
        # The evidence is on disk beside eval.json, and in JUnit.
        saved = json.loads((out / ids[name] / f"{ids[name]}.integrity.json").read_text())
        assert saved["findings"] == row["findings"] and saved["image_id"].startswith("sha256:")
        assert row["image_id"] == saved["image_id"]
    assert rows[ids["correct"]]["findings"] == []
    gz = {f["path"]: f["detail"] for f in rows[ids["gzipped_reference"]]["findings"]}
    assert gz["executable"].startswith("sha256 " + selftest_clean_hash(attacks))
    assert gz["vendor/tool.gz"] == "100% of the reference's content once decoded (gzip); submission"

    cases = {c.name: c for suite in JUnitXml.fromfile(str(out / "junit.xml")) for c in suite}
    props = {
        name: {
            p.name: p.value for group in case.iterchildren(Properties) for p in group.iterchildren(Property)
        }
        for name, case in cases.items()
    }
    assert props[f"instance[{ids['config_hook']}]"]["pb_integrity"].startswith("test_config")
    assert props[f"instance[{ids['correct']}]"]["pb_integrity"] == ""

    result.stdout.fnmatch_lines(
        [
            "*= ProgramBench =*",
            "Integrity: 5 of 6 item(s) flagged, official scores kept; --pb-integrity strict counts them 0:",
            f"  {ids['config_hook']} (score 1.00):",
            "    test_config *",
        ]
    )

    # A name from the submission reaches the terminal escaped, on the line it belongs to; the
    # report keeps it as it is (JSON escapes it on its own).
    said = result.stdout.str() + result.stderr.str()
    assert not any(c in said for c in ("\x1b", "\x07", "\u202e")), said
    assert not any(line.startswith("programbench: 0 resolved") for line in said.splitlines())
    assert f"    link_outside_workspace {printable(CONTROL_NAME)} (-> /etc/passwd; submission)" in said
    assert rows[ids["control_names"]]["findings"][0]["path"] == CONTROL_NAME

    # Strict, resuming the same run directory: nothing is scored again, the findings come from the
    # markers, and each flagged instance counts 0 with its official score beside it.
    strict = replay(pytester, attacks, out, "-p", "no:xdist", "--pb-integrity=strict")
    assert strict.parseoutcomes() == {"resolved": 1, "zero": 5}
    rows = rows_of(out)
    for name in ATTACKS:
        row = rows[ids[name]]
        assert (row["score"], row["official_score"], row["outcome"], row["reused"]) == (
            0.0,
            1.0,
            "zero",
            True,
        )
        assert row["reason"].startswith("counted 0 under --pb-integrity strict (official score 1.00, 18/18")
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert (summary["mean_score"], summary["flagged"], summary["integrity"]) == (
        pytest.approx(1 / 6),
        5,
        "strict",
    )
    strict.stdout.fnmatch_lines(
        ["Integrity: 5 of 6 item(s) flagged, counted as 0 (--pb-integrity strict):", "*(official 1.00):"]
    )


def selftest_clean_hash(attacks: dict[str, Any]) -> str:
    import yaml

    task = yaml.safe_load((attacks["tasks"] / attacks["ids"]["correct"] / "task.yaml").read_text())
    return str(task["eval_clean_hashes"][0])


POISONER = """#!/bin/sh
# A command agent that poisons the engine: it plants a login hook in its own container and
# commits that over the task image's tag, then leaves a program that only exits 3.
set -eu
docker exec -i -u 0 "$PB_CONTAINER_ID" sh -c 'cat > /etc/profile.d/zz-results.sh' < "$HOOK_FILE"
docker commit "$PB_CONTAINER_ID" "$POISON_TAG" >/dev/null
docker exec -u "$PB_AGENT_USER" -w /workspace "$PB_CONTAINER_ID" sh -c \
    'printf "#!/bin/sh\\nexit 3\\n" > fake.sh && printf "#!/bin/sh\\ncp fake.sh executable\\n" > compile.sh \
     && chmod +x compile.sh fake.sh'
"""

# The first attempt runs the poisoner; the second is a no-op baseline on the same image.
AGENT_BY_ATTEMPT = """
def pytest_programbench_agent(config, instance):
    if instance.attempt == 2:
        return lambda instance, sandbox: None
"""


def test_a_poisoned_task_image_is_an_error_and_does_not_fool_a_later_baseline(
    pytester: pytest.Pytester,
    engine: Engine,
    selftest_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from programbench.constants import image_name_from_instance_id

    tasks, blobs, (iid,) = clone_selftest(engine, tmp_path, ["poisoned"])
    tag = f"{image_name_from_instance_id(iid)}:{selftest.IMAGE_TAG}"
    clean_id = engine.image_id(tag)
    (pytester.path / "poison.sh").write_text(POISONER)
    (pytester.path / "hook.sh").write_bytes(PROFILE_HOOK)
    monkeypatch.setenv("HOOK_FILE", str(pytester.path / "hook.sh"))
    monkeypatch.setenv("POISON_TAG", tag)
    pytester.makeconftest(AGENT_BY_ATTEMPT)
    out = pytester.path / "out"
    try:
        result = pytester.runpytest_subprocess(
            f"--pb-tasks-dir={tasks}",
            f"--pb-blob-dir={blobs}",
            f"--pb-output={out}",
            f"--pb-report={out / 'report.json'}",
            f"--pb-cpus={CPUS}",
            "--pb-pull=never",
            "--pb-agent=command",
            f"--pb-agent-cmd=sh {pytester.path / 'poison.sh'}",
            "--pb-attempts=2",
            "-p",
            "no:xdist",
        )
    finally:
        # The agent's commit carries the run's labels, so the session's sweep removes it (and
        # the tag with it); should it still be there, it would be left dangling once untagged.
        poisoned_id = engine.image_id(tag) if engine.image_exists(tag) else clean_id
        engine.tag(clean_id, tag)  # put the clone's tag back for whoever uses it next
        if poisoned_id != clean_id:
            engine.client.images.remove(poisoned_id, force=True)
    assert result.parseoutcomes() == {"errors": 2}
    rows = {r["attempt"]: r for r in json.loads((out / "report.json").read_text())["instances"]}
    assert {a: r["error_code"] for a, r in rows.items()} == {1: "image_changed", 2: "image_changed"}
    now = re.search(r"it is now (sha256:[0-9a-f]{64})", rows[1]["message"])
    assert now is not None and now.group(1) != clean_id, rows[1]["message"]
    for row in rows.values():
        assert clean_id in row["message"] and now.group(1) in row["message"], row["message"]
    assert "while the agent worked" in rows[1]["message"]
    assert "since an earlier item of this session used it" in rows[2]["message"]
    # Nothing was scored, so no eval.json can carry a number from the poisoned image; and the
    # poisoned image, committed from our labelled sandbox, went with the session's sweep.
    assert not list(out.rglob("*.eval.json"))
    assert not engine.image_exists(now.group(1))


def test_changes_read_from_the_overlay_agree_with_the_engines_diff(
    engine: Engine, selftest_image: str
) -> None:
    from pytest_programbench.engine.containers import LABEL_RUN

    script = (
        "mkdir -p /etc/profile.d && echo x > /etc/profile.d/h.sh; echo 1 >> /etc/bash.bashrc; "
        "rm /usr/bin/sha256sum; mkdir -p /root/.cache/x && echo 1 > /root/.cache/x/y; "
        "echo hi > /workspace/conftest.py; ln -s /etc/passwd /opt/link; mkdir /opt/empty"
    )
    with engine.container(selftest_image, labels={LABEL_RUN: "test-overlay-diff"}, init=True) as box:
        box.exec_run(["sh", "-c", script])
        fast = integrity.changes_outside_workspace(engine.changes(box.id))
        kinds = {0: "C", 1: "A", 2: "D"}
        api = [(kinds[c["Kind"]], c["Path"]) for c in engine.client.api.diff(box.id)]
        # The engine's diff also names directories; a changed or new directory with nothing
        # changed below it (the empty one here) changes nothing a program reads.
        files = [c for c in integrity.changes_outside_workspace(api) if not engine.is_dir(box.id, c[1])]
    assert (
        fast
        == files
        == [
            ("C", "/etc/bash.bashrc"),
            ("A", "/etc/profile.d/h.sh"),
            ("A", "/opt/link"),
            ("D", "/usr/bin/sha256sum"),
        ]
    )
