"""Resume: recognise work a previous session finished in the same run directory.

Two markers, each written atomically and only after what it vouches for is complete:

- ``<id>/agent.json`` after the agent ran and ``submission.tar.gz`` was packed: a rerun
  scores that archive instead of paying for the agent again.
- ``<id>/programbench.json`` after ``<id>.eval.json`` was written: a rerun reuses the
  verdict without starting a container.

Both record the sha256 of the submission they saw, so a changed archive (or, in
replay, a changed source archive) is redone. A session killed half-way leaves at most
``*.partial`` files and no marker for the unfinished step, so nothing half-written is
ever taken as done. ``--pb-force`` ignores all markers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from pytest_programbench.model import AgentRun, Instance, Outcome
from pytest_programbench.submissions import ARCHIVE_NAME

AGENT_MARKER = "agent.json"
DONE_MARKER = "programbench.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def mark_agent_done(instance_dir: Path, run: AgentRun) -> None:
    _write(
        instance_dir / AGENT_MARKER,
        {"agent": asdict(run), "submission_sha256": sha256(instance_dir / ARCHIVE_NAME)},
    )


def finished_agent(instance_dir: Path) -> AgentRun | None:
    """The agent run whose packed submission is still in place, if any."""
    data = _read(instance_dir / AGENT_MARKER)
    archive = instance_dir / ARCHIVE_NAME
    if data is None or not archive.is_file() or data.get("submission_sha256") != sha256(archive):
        return None
    try:
        return AgentRun(**data["agent"])
    except (KeyError, TypeError):
        return None


def mark_scored(instance_dir: Path, outcome: Outcome, source: Path | None) -> None:
    _write(
        instance_dir / DONE_MARKER,
        {
            "outcome": outcome.to_dict(),
            "submission_sha256": sha256(instance_dir / ARCHIVE_NAME),
            "source_sha256": sha256(source) if source is not None else None,
        },
    )


def finished_outcome(instance: Instance, instance_dir: Path, source: Path | None) -> Outcome | None:
    """The verdict of a previous session, if its submission (and replay source) are unchanged."""
    from pytest_programbench.scoring import eval_json_path, outcome_from_eval_json

    data = _read(instance_dir / DONE_MARKER)
    archive = instance_dir / ARCHIVE_NAME
    eval_json = eval_json_path(instance_dir, instance.instance_id)
    if data is None or not archive.is_file() or not eval_json.is_file():
        return None
    if data.get("submission_sha256") != sha256(archive):
        return None
    # Replay: the archive to score may have changed since it was copied here.
    moved = source is not None and source.resolve() != archive.resolve()
    if moved and (source is None or not source.is_file() or data.get("source_sha256") != sha256(source)):
        return None
    try:
        previous = data["outcome"]
        # Scored again from eval.json, the way `programbench info` scores it; the rest is as recorded.
        outcome = outcome_from_eval_json(
            instance, eval_json, eval_seconds=float(previous.get("eval_seconds", 0))
        )
    except Exception:  # an unreadable eval.json is simply not finished work
        return None
    # What eval.json does not hold: the agent's run, the integrity findings, the image scored.
    agent_fields = {f.name for f in fields(Outcome) if f.name.startswith("agent")} | {"findings", "image_id"}
    return replace(outcome, reused=True, **{k: v for k, v in previous.items() if k in agent_fields})
