"""Host memory and writes that must not grow with what a submission or an agent throws at the harness.

Each check runs one session of a kind twice (``-p no:xdist``: the harness is one process),
the hostile side A and an honest side B that differ in one thing, under ``/usr/bin/time -v``
(its "Maximum resident set size": the largest of the session's processes, as the kernel
counts them), and gives its own verdict: PASS when A/B is at most the target.

- ``archive``: replaying a submission of ``--entries`` members (default 1,000,000 empty
  files; it ships ``.git/`` so the evaluator's ``git add -A`` is skipped on both sides)
  against one of 1,000. Target 1.25. The official tool's peak on the big archive
  (``eval_batch._evaluate_instance``, what ``programbench eval`` runs) is printed beside:
  the issue measured 662 MB for the harness against its 38 MB.
- ``build``: replaying a correct submission whose ``compile.sh`` prints ``--build-mb`` MB
  (default 500) against the same printing nothing. Target 1.5. The official tool's peak on
  the loud one is printed beside (it keeps all of it: 2.4 GB measured).
- ``trajectory``: an agent session whose Python agent reports a ``--trajectory-mb`` MB
  trajectory (default 300) against a 1 kB one. The agent runs in a forked child that holds
  what it built, which ``time -v`` counts, so the figure compared is the harness process's
  own peak (VmHWM, read by a conftest hook at the session's end); time -v's is printed too.
  Target 2.0: the harness holds the capped 16 MiB trajectory about three times over.
- ``log``: a ``command`` agent printing ``--log-mb`` MB (default 2000) against one printing a
  line: peak ratio, target 1.5; and agent.log's size against its bound (16 MiB and the
  note), target 1.0.

    python benchmarks/bench_bounds.py --only build,log           # a minute or two
    python benchmarks/bench_bounds.py                            # all four (the archive: ~10 min)
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from _support import cleanup, engine_session  # the script's own folder is on sys.path

from pytest_programbench import selftest

#: The trajectory's figure has a fixed part: a capped trajectory (16 MiB of JSON) is held as it is
#: received, kept and written, about three copies, whatever the agent reported.
TARGETS = {"archive": 1.25, "build": 1.5, "trajectory": 2.0, "log": 1.5, "log_size": 1.0}
QUIET_SH = b"#!/bin/sh\nset -e\ngcc -O2 -o executable rpncalc.c\n"

OFFICIAL = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from programbench.eval import eval_batch
    from programbench.utils import blob_store
    from programbench.utils.load_data import _load_single_instance
    root, iid = Path(sys.argv[1]), sys.argv[2]
    blob_store.BLOB_LOCAL_DIR = str(root / "blobs")
    summary = eval_batch._evaluate_instance(
        instance_id=iid, instance=_load_single_instance(root / "tasks" / iid, include_tests=True),
        source_dir=root / "subs", target_dir=root / "official", force=True, docker_cpus=1,
    )
    print(summary.score, summary.error_code)
    """
)

CONFTEST = textwrap.dedent(
    """
    from pathlib import Path
    from pytest_programbench import selftest
    from pytest_programbench.agents.agent import CommandAgent
    from pytest_programbench.keys import RUN_DIR_KEY

    SIZES = {sizes!r}

    def pytest_programbench_agent(config, instance):
        kind, size = SIZES[instance.instance_id]
        if kind == "log":
            command = f"head -c {{size}} /dev/zero | tr '\\\\0' y; echo done"
            return CommandAgent(command, config.stash[RUN_DIR_KEY] / instance.rel_dir).run

        def agent(instance, sandbox):
            sandbox.write_file("rpncalc.c", selftest.reference_source())
            compile_sh = "#!/bin/sh\\nset -e\\ngcc -O2 -o executable rpncalc.c\\n"
            sandbox.write_file("compile.sh", compile_sh, mode=0o755)
            sandbox.report(trajectory={{"messages": ["x" * 1000] * (size // 1000)}})
        return agent

    def pytest_sessionfinish(session):
        status = Path("/proc/self/status").read_text().splitlines()
        [peak] = [line.split()[1] for line in status if line.startswith("VmHWM:")]
        Path(__file__).with_name("vmhwm-kb").write_text(peak)
    """
)


def time_v(cmd: list[str], cwd: Path) -> tuple[int, int, str]:
    """(exit code, maximum resident set size in kB, stdout) of ``cmd`` under /usr/bin/time -v."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True)
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if found is None:
        raise SystemExit(f"/usr/bin/time -v printed no peak for {cmd}: {proc.stderr[-2000:]}")
    return proc.returncode, int(found.group(1)), proc.stdout


def session(root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        f"--pb-tasks-dir={root / 'tasks'}",
        f"--pb-blob-dir={root / 'blobs'}",
        f"--pb-report={root / 'report.json'}",
        "--pb-cpus=1",
        "--pb-pull=never",
        "--pb-force",
        *extra,
    ]


def rows(root: Path) -> dict[str, dict[str, Any]]:
    return {r["instance_id"]: r for r in json.loads((root / "report.json").read_text())["instances"]}


def write_members(dest: Path, members: list[tuple[str, int, bytes | None]], files: int = 0) -> None:
    """A gzip tar of ``members`` (name, mode, content; None: a directory), then ``files`` empty files."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (
        dest.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w|", format=tarfile.GNU_FORMAT) as tar,
    ):
        for name, mode, content in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.type = tarfile.DIRTYPE if content is None else tarfile.REGTYPE
            info.size = len(content or b"")
            tar.addfile(info, None if content is None else io.BytesIO(content))
        for k in range(files):
            if k % 1000 == 0:
                info = tarfile.TarInfo(f"./d{k // 1000:05d}")
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            tar.addfile(tarfile.TarInfo(f"./d{k // 1000:05d}/f{k:07d}"))
            if k % 10_000 == 0:
                tar.members.clear()  # type: ignore[attr-defined]  # the writer's own list, as packing does


def solution(compile_sh: bytes) -> list[tuple[str, int, bytes | None]]:
    source = selftest.reference_source().encode()
    return [("./", 0o755, None), ("./compile.sh", 0o755, compile_sh), ("./rpncalc.c", 0o644, source)]


def check_archive(engine: Any, root: Path, entries: int) -> dict[str, Any]:
    ids = {side: f"pbselftest__bench-bounds-{side}.5e1f7a0" for side in ("big", "small")}
    selftest.clone(engine, root / "tasks", root / "blobs", list(ids.values()))
    try:
        for side, n in (("big", entries), ("small", 1000)):
            top = [("./", 0o755, None), ("./.git", 0o755, None)]
            write_members(root / "subs" / ids[side] / "submission.tar.gz", top, n)
        peaks, codes = {}, {}
        for side in ("big", "small"):
            _, peaks[side], said = time_v(
                session(root, f"--pb-submissions={root / 'subs'}", f"--pb-output={root / 'out'}", "-k", side),
                root,
            )
            row = rows(root)[ids[side]]
            if row["outcome"] != "zero":  # no compile.sh: a 0 with the evaluator's error code, not an error
                raise SystemExit(f"archive {side}: unexpected row {row}\n{said[-3000:]}")
            codes[side] = row["error_code"]
        _, official, said = time_v([sys.executable, "-c", OFFICIAL, str(root), ids["big"]], root)
    finally:
        cleanup(engine, list(ids.values()))
    return {
        "a_kb": peaks["big"],
        "b_kb": peaks["small"],
        "official_big_kb": official,
        "official_says": said.strip().splitlines()[-1] if said.strip() else "",
        "error_codes": codes,
        "entries": entries,
    }


def check_build(engine: Any, root: Path, megabytes: int) -> dict[str, Any]:
    ids = {side: f"pbselftest__bench-bounds-{side}.5e1f7a0" for side in ("loud", "quiet")}
    selftest.clone(engine, root / "tasks", root / "blobs", list(ids.values()))
    noise = f"head -c {megabytes * 10**6} /dev/zero | tr '\\0' x\n".encode()
    loud = QUIET_SH.replace(b"set -e\n", b"set -e\n" + noise)
    try:
        write_members(root / "subs" / ids["loud"] / "submission.tar.gz", solution(loud))
        write_members(root / "subs" / ids["quiet"] / "submission.tar.gz", solution(QUIET_SH))
        peaks = {}
        for side in ("loud", "quiet"):
            _, peaks[side], said = time_v(
                session(root, f"--pb-submissions={root / 'subs'}", f"--pb-output={root / 'out'}", "-k", side),
                root,
            )
            if rows(root)[ids[side]]["outcome"] != "resolved":
                raise SystemExit(f"build {side}: not resolved\n{said[-3000:]}")
        _, official, _ = time_v([sys.executable, "-c", OFFICIAL, str(root), ids["loud"]], root)
        eval_json = root / "out" / ids["loud"] / f"{ids['loud']}.eval.json"
        official_json = root / "official" / ids["loud"] / f"{ids['loud']}.eval.json"
    finally:
        cleanup(engine, list(ids.values()))
    return {
        "a_kb": peaks["loud"],
        "b_kb": peaks["quiet"],
        "official_loud_kb": official,
        "eval_json_bytes": eval_json.stat().st_size,
        "official_eval_json_bytes": official_json.stat().st_size,
        "megabytes": megabytes,
    }


def check_agents(engine: Any, root: Path, kind: str, megabytes: int) -> dict[str, Any]:
    ids = {side: f"pbselftest__bench-bounds-{kind}-{side}.5e1f7a0" for side in ("hostile", "honest")}
    selftest.clone(engine, root / "tasks", root / "blobs", list(ids.values()))
    sizes = {ids["hostile"]: (kind, megabytes * 10**6), ids["honest"]: (kind, 1000)}
    (root / "conftest.py").write_text(CONFTEST.format(sizes=sizes))
    try:
        peaks, own = {}, {}
        for side in ("hostile", "honest"):
            _, peaks[side], said = time_v(
                session(root, f"--pb-output={root / 'out'}", "--pb-force-agent", "-k", side),
                root,
            )
            own[side] = int((root / "vmhwm-kb").read_text())
            if rows(root)[ids[side]]["outcome"] == "error":
                raise SystemExit(f"{kind} {side}: an error\n{said[-3000:]}")
        result: dict[str, Any] = {
            "megabytes": megabytes,
            "time_v_hostile_kb": peaks["hostile"],
            "time_v_honest_kb": peaks["honest"],
        }
        if kind == "trajectory":
            result.update(a_kb=own["hostile"], b_kb=own["honest"])
            saved = root / "out" / ids["hostile"] / f"{ids['hostile']}.traj.json"
            result["traj_json_bytes"] = saved.stat().st_size
        else:
            result.update(a_kb=peaks["hostile"], b_kb=peaks["honest"])
            result["agent_log_bytes"] = (root / "out" / ids["hostile"] / "agent.log").stat().st_size
    finally:
        cleanup(engine, list(ids.values()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--build-mb", type=int, default=500)
    parser.add_argument("--trajectory-mb", type=int, default=300)
    parser.add_argument("--log-mb", type=int, default=2000)
    parser.add_argument(
        "--only", default="archive,build,trajectory,log", help="comma list of the checks to run"
    )
    args = parser.parse_args()
    from pytest_programbench.agents.agent import AGENT_LOG_HEAD_BYTES, AGENT_LOG_TAIL_BYTES

    report: dict[str, Any] = {"benchmark": "bench_bounds", "targets": TARGETS, "checks": {}}
    with engine_session() as engine:
        for check in [c.strip() for c in args.only.split(",") if c.strip()]:
            with tempfile.TemporaryDirectory(prefix=f"bench-bounds-{check}-") as tmp:
                root = Path(tmp)
                if check == "archive":
                    found = check_archive(engine, root, args.entries)
                elif check == "build":
                    found = check_build(engine, root, args.build_mb)
                elif check in ("trajectory", "log"):
                    size = args.trajectory_mb if check == "trajectory" else args.log_mb
                    found = check_agents(engine, root, check, size)
                else:
                    raise SystemExit(f"unknown check {check!r}")
            found["ratio"] = found["a_kb"] / found["b_kb"]
            report["checks"][check] = found
            if check == "log":
                bound = AGENT_LOG_HEAD_BYTES + AGENT_LOG_TAIL_BYTES + 100
                report["checks"]["log_size"] = {
                    "ratio": found["agent_log_bytes"] / bound,
                    "bound_bytes": bound,
                }
    print(json.dumps(report, indent=2))
    failed = False
    for name, found in report["checks"].items():
        verdict = "PASS" if found["ratio"] <= TARGETS[name] else "FAIL"
        failed |= verdict == "FAIL"
        print(f"{verdict} bench_bounds {name}: ratio {found['ratio']:.3f} (target <= {TARGETS[name]:g})")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
