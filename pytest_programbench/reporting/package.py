"""Package: a finished run as a leaderboard submission, with what the official tool cannot know.

``programbench submit package RUN`` turns an evaluated run directory into a submission
in place (``submission.yaml``, ``_stats/score.json``, each eval.json split in two) and
leaves the system metadata and the trajectories as TODO. ``--pb-package DIR`` copies the
run's submissions, eval.json files and trajectories into DIR (laid out as the registry
expects: ``<id>/submission.tar.gz``, ``<id>/<id>.eval.json``, ``<id>/<id>.traj.json``),
runs that official packager there, and adds what this session knows:

- ``submission.yaml``: ``system.agent``, ``system.model`` and ``system.provider`` when
  known (written before the official packager runs, which carries them into its template;
  a value someone edited by hand is never replaced);
- ``_pytest_programbench/run.json``: versions, the agent and its config (secrets
  redacted), the engines, the settings that change results (``--pb-cpus`` and the CPUs
  each scoring container got, the limits, ``--pb-reference`` when the plugin has it), and
  per instance what the harness recorded (agent steps, cost, wall time, image id);
- ``_stats/cost.json``, ``calls.json``, ``tokens.json``, ``steps.json``, ``wall_time.json``:
  flat ``{instance id: value}`` maps, computed by ``_scripts/agent_stats.py`` (shipped in
  the package, as the registry asks) from the trajectories and run.json;
- ``README.md``: the system overview and the command that reproduces the run.

Then ``programbench submit verify`` (tier 0) checks the result. The run directory itself
is left as it is: it stays resumable, and the official tool still packages it unchanged
(our markers, integrity files, lock and progress log sit where it does not look).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_programbench import files

RECORD_DIR = "_pytest_programbench"
RECORD_NAME = "run.json"
SCRIPT = "_scripts/agent_stats.py"
TODO = "TODO"
#: The settings that can change a score or an agent's chances, recorded with the submission.
RESULT_SETTINGS = (
    "agent",
    "model",
    "cpus",
    "memory",
    "scoring_memory",
    "disk",
    "network",
    "agent_timeout",
    "max_submission",
    "branch_workers",
    "branch_retries",
    "image_tag",
    "attempts",
    "integrity",
    "threshold",
    "pull",
    "reference",  # --pb-reference (issue 20), when this plugin has it
)
_SECRET = re.compile(r"(key|token|secret|password|credential)", re.IGNORECASE)

# Run as a script in the package directory (and by us, exactly so): the stats the registry shows
# beside the score, recomputed from the files shipped with the submission.
STATS_SCRIPT = '''"""Per-instance agent stats of this submission, recomputed from its own files.

Written by pytest-programbench. For each <id>/<id>.traj.json in mini-swe-agent's format
(trajectory_format "mini-swe-agent-*") cost and calls come from info.model_stats and tokens
from the usage of each model response; otherwise, and for steps and wall time, from what the
harness recorded of the agent run in _pytest_programbench/run.json (what the agent reported).
Writes _stats/<name>.json = {instance_id: value} for each stat known for some instance.

    python _scripts/agent_stats.py [SUBMISSION_DIR]
"""
import json
import sys
from pathlib import Path


def tokens_of(messages):
    total, seen = 0, False
    for message in messages:
        response = (message.get("extra") or {}).get("response")
        usage = response.get("usage") if isinstance(response, dict) else None
        if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
            total += usage["total_tokens"]
            seen = True
    return total if seen else None


def stats(root):
    record = json.loads((root / "_pytest_programbench" / "run.json").read_text())
    out = {"cost": {}, "calls": {}, "tokens": {}, "steps": {}, "wall_time": {}}
    for iid, run in sorted(record.get("instances", {}).items()):
        traj_path = root / iid / f"{iid}.traj.json"
        traj = json.loads(traj_path.read_text()) if traj_path.is_file() else None
        mini = isinstance(traj, dict) and str(traj.get("trajectory_format", "")).startswith("mini-swe-agent")
        if mini:
            model_stats = (traj.get("info") or {}).get("model_stats") or {}
            if isinstance(model_stats.get("instance_cost"), (int, float)):
                out["cost"][iid] = model_stats["instance_cost"]
            if isinstance(model_stats.get("api_calls"), int):
                out["calls"][iid] = model_stats["api_calls"]
            tokens = tokens_of(traj.get("messages") or [])
            if tokens is not None:
                out["tokens"][iid] = tokens
        if iid not in out["cost"] and run.get("agent_cost") is not None:
            out["cost"][iid] = run["agent_cost"]
        if run.get("agent_steps") is not None:
            out["steps"][iid] = run["agent_steps"]
        if run.get("agent_seconds") is not None:
            out["wall_time"][iid] = round(run["agent_seconds"], 3)
    return {name: values for name, values in out.items() if values}


def main(root):
    (root / "_stats").mkdir(exist_ok=True)
    found = stats(root)
    for name, values in found.items():
        (root / "_stats" / f"{name}.json").write_text(json.dumps(values, indent=2, sort_keys=True))
    print(" ".join(f"{name}: {len(values)}" for name, values in found.items()) or "no agent stats")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve())
'''


@dataclass
class Packaged:
    """What packaging did, for the terminal summary."""

    dest: Path
    packaged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not tasks the leaderboard knows
    missing: list[str] = field(default_factory=list)  # selected, but no scored submission to package
    todo: list[str] = field(default_factory=list)  # submission.yaml fields still TODO
    verified: str = ""  # "PASS n/n" or "FAIL ..." from programbench's tier-0 verify
    ok: bool = True
    error: str = ""

    def lines(self) -> list[str]:
        if self.error:
            return [f"--pb-package {self.dest}: not packaged: {self.error}"]
        out = [f"--pb-package: {len(self.packaged)} instance(s) packaged for the leaderboard in {self.dest}"]
        if self.skipped:
            out.append(
                f"  skipped by programbench submit package (not benchmark tasks): {', '.join(self.skipped)}"
            )
        if self.missing:
            out.append(f"  no scored submission to package: {', '.join(self.missing)}")
        out.append(f"  programbench submit verify (tier 0): {self.verified}")
        if self.todo:
            out.append(f"  still TODO in submission.yaml (fill them in by hand): {', '.join(self.todo)}")
        return out


def package(
    run_dir: Path,
    dest: Path,
    rows: Iterable[Mapping[str, Any]],
    meta: Mapping[str, Any],
    *,
    agent_config: Any = None,
    engines: list[dict[str, Any]] | None = None,
    command: list[str] | None = None,
) -> Packaged:
    """Package the scored instances of ``run_dir`` into ``dest`` (see the module docstring)."""
    from programbench.package import package_run
    from programbench.verify import verify_tier0

    from pytest_programbench.model import CATEGORIES

    result = Packaged(dest)
    rows = [dict(r) for r in rows]
    scored = [r for r in rows if r.get("outcome") in CATEGORIES and r.get("attempt", 1) == 1]
    dest.mkdir(parents=True, exist_ok=True)
    for row in scored:
        iid = str(row["instance_id"])
        source = run_dir / iid
        if not (source / f"{iid}.eval.json").is_file() or not (source / "submission.tar.gz").is_file():
            result.missing.append(iid)
            continue
        _copy_instance(source, dest / iid, iid)
    result.missing += sorted(str(r["instance_id"]) for r in rows if r.get("outcome") not in CATEGORIES)
    _prefill_manifest(dest / "submission.yaml", meta, agent_config, rows)
    try:
        official = package_run(dest)
    except ValueError as exc:  # "No packageable instances": none of them is a benchmark task
        result.ok, result.error = (
            False,
            f"{exc} (programbench submit package knows only the benchmark's own tasks)",
        )
        return result
    result.packaged, result.skipped = list(official.packaged), list(official.skipped)
    for iid in result.skipped:  # copied above, but no part of a leaderboard submission
        shutil.rmtree(dest / iid, ignore_errors=True)
    known = set(official.packaged)
    record = run_record(meta, [r for r in scored if r["instance_id"] in known], agent_config, engines)
    (dest / RECORD_DIR).mkdir(exist_ok=True)
    files.write_text(dest / RECORD_DIR / RECORD_NAME, json.dumps(record, indent=2, default=str) + "\n")
    script = dest / SCRIPT
    script.parent.mkdir(exist_ok=True)
    script.write_text(STATS_SCRIPT)
    stats = subprocess.run(
        [sys.executable, str(script), str(dest)], capture_output=True, text=True, check=False
    )
    if stats.returncode != 0:
        result.ok, result.error = False, f"{SCRIPT} failed: {stats.stderr.strip()[-500:]}"
        return result
    _fill_readme(dest / "README.md", record, command)
    result.todo = _todo_fields(dest / "submission.yaml")
    checked = verify_tier0(dest)
    fails = [c.name for c in checked.checks if not c.ok]
    passed = len(checked.checks) - len(fails)
    result.verified = (
        f"PASS, {passed}/{len(checked.checks)} checks" if checked.ok else f"FAIL: {', '.join(fails)}"
    )
    result.ok = checked.ok
    return result


def _copy_instance(source: Path, target: Path, iid: str) -> None:
    """The registry's layout for one instance. eval.json is copied (the official packager rewrites it
    in place); the archive is hard-linked where the filesystem allows (it is never rewritten)."""
    target.mkdir(parents=True, exist_ok=True)
    for stale in (f"{iid}.eval.log.json", "submission.tar.gz"):  # from an earlier packaging
        (target / stale).unlink(missing_ok=True)
    shutil.copyfile(source / f"{iid}.eval.json", target / f"{iid}.eval.json")
    try:
        os.link(source / "submission.tar.gz", target / "submission.tar.gz")
    except OSError:
        shutil.copyfile(source / "submission.tar.gz", target / "submission.tar.gz")
    trajectory = source / f"{iid}.traj.json"
    if trajectory.is_file():
        shutil.copyfile(trajectory, target / f"{iid}.traj.json")


def known_system(
    meta: Mapping[str, Any], agent_config: Any, rows: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """``submission.yaml``'s ``system`` fields this session knows: the agent, its model and provider."""
    options = meta.get("options") or {}
    versions = meta.get("versions") or {}
    system: dict[str, Any] = {}
    agent = str(options.get("agent") or "")
    if not agent:  # chosen by a conftest hook or fixture: the names its runs reported
        names = sorted({str(r["agent"]) for r in rows if r.get("agent")})
        agent = names[0] if len(names) == 1 else ""
    if agent == "mini-swe-agent":
        system["agent"] = f"mini-swe-agent {versions.get('mini-swe-agent', '')}".strip()
        system["is_os_scaffold"] = True
    elif agent:
        system["agent"] = agent
    model = str(options.get("model") or "")
    if not model and isinstance(agent_config, dict):
        model = str((agent_config.get("model") or {}).get("model_name") or "")
    if model:
        system["model"] = model
        if "/" in model:
            system["provider"] = model.split("/", 1)[0]
    return system


def _prefill_manifest(
    path: Path, meta: Mapping[str, Any], agent_config: Any, rows: Iterable[Mapping[str, Any]]
) -> None:
    """Put the known ``system`` fields where the official packager carries them from: into fields that
    are absent or still TODO (what someone filled in by hand stays)."""
    existing: dict[str, Any] = {}
    if path.is_file():
        loaded = yaml.safe_load(path.read_text())
        existing = loaded if isinstance(loaded, dict) else {}
    system = existing.setdefault("system", {})
    if not isinstance(system, dict):
        return
    for key, value in known_system(meta, agent_config, rows).items():
        if system.get(key) in (None, TODO) or (key == "is_os_scaffold" and system.get(key) is None):
            system[key] = value
    files.write_text(path, yaml.safe_dump(existing, sort_keys=False))


def _todo_fields(path: Path) -> list[str]:
    data = yaml.safe_load(path.read_text()) or {}
    out = []
    for section in ("submitter", "system"):
        for key, value in (data.get(section) or {}).items():
            if value == TODO:
                out.append(f"{section}.{key}")
    return out


def redacted(value: Any) -> Any:
    """A config with every value under a key that names a secret replaced (it is published)."""
    if isinstance(value, dict):
        return {k: "<redacted>" if _SECRET.search(str(k)) else redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def run_record(
    meta: Mapping[str, Any],
    rows: Iterable[Mapping[str, Any]],
    agent_config: Any,
    engines: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """``_pytest_programbench/run.json``: how this run was made, and per instance what the harness saw."""
    options = meta.get("options") or {}
    per_instance = {}
    for r in sorted(rows, key=lambda r: str(r["instance_id"])):
        per_instance[str(r["instance_id"])] = {
            k: r.get(k)
            for k in (
                "score",
                "n_resolved",
                "n_tests",
                "error_code",
                "agent",
                "agent_steps",
                "agent_cost",
                "agent_seconds",
                "agent_timed_out",
                "agent_exit_status",
                "eval_seconds",
                "image_id",
                "engine",
                "integrity",
            )
        }
    return {
        "schema": "pytest-programbench run record",
        "version": 1,
        "run_id": meta.get("run_id"),
        "packaged": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {**(meta.get("versions") or {}), "python": sys.version.split()[0]},
        "agent": {
            "name": options.get("agent") or None,
            "command": options.get("agent_cmd") or None,
            "model": options.get("model") or None,
            "config": redacted(agent_config),
        },
        "settings": {k: options[k] for k in RESULT_SETTINGS if k in options},
        "engines": engines or [],
        "instances": per_instance,
    }


_OVERVIEW = "<!-- One or two paragraphs: what is your system and how does it work end to end? Cover"
_REPRODUCE = "<!-- The exact commands to reproduce this submission, ideally runnable as-is. -->"


def _fill_readme(path: Path, record: Mapping[str, Any], command: list[str] | None) -> None:
    """Add what the harness knows under the README's own prompts, once (the prompts stay for the author)."""
    if not path.is_file():
        return
    text = path.read_text()
    marker = "<!-- pytest-programbench -->"
    if marker in text:
        return
    agent = record["agent"]
    versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items())
    settings = ", ".join(f"{k}={v}" for k, v in record["settings"].items() if v not in (None, "", 0, False))
    overview = (
        f"\n{marker}\nRun with pytest-programbench ({versions}). "
        f"Agent: {agent['name'] or 'chosen in conftest.py'}"
        + (f", model {agent['model']}" if agent.get("model") else "")
        + f". Settings that change results: {settings or 'the defaults'}. The full record, with the agent's "
        f"configuration, is `{RECORD_DIR}/{RECORD_NAME}`; the stats in `_stats/` come from `{SCRIPT}`.\n"
    )
    reproduce = f"\n{marker}\n```bash\n{' '.join(command or ['pytest', '...'])}\n```\n"
    end_overview = text.find("-->", text.find(_OVERVIEW)) if _OVERVIEW in text else -1
    if end_overview >= 0:
        text = text[: end_overview + 3] + overview + text[end_overview + 3 :]
    if _REPRODUCE in text:
        text = text.replace(_REPRODUCE, _REPRODUCE + reproduce, 1)
    path.write_text(text)
