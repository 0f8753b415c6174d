"""What marks a container or image as ours: the labels, the owner, the kept-on-purpose name.

Pure: a sweep (engine/sweep.py) filters on these, and item steps label what they start.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

LABEL_PREFIX = "io.pytest-programbench"
LABEL_RUN = f"{LABEL_PREFIX}.run"
LABEL_WORKER = f"{LABEL_PREFIX}.worker"
LABEL_INSTANCE = f"{LABEL_PREFIX}.instance"
LABEL_ROLE = f"{LABEL_PREFIX}.role"
LABEL_OWNER = f"{LABEL_PREFIX}.owner"  # <hostname>:<pid> of the session that started it
# Names the name of a container kept on purpose (its workspace is the only copy): sweeps spare it.
KEPT_PREFIX = "pb-kept-"


def session_owner() -> str:
    """This process as a container owner: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def item_labels(run_id: str, worker: str, instance_id: str, role: str) -> dict[str, str]:
    """The labels of a container an item's step starts, this session its owner (what a sweep finds)."""
    return {
        LABEL_RUN: run_id,
        LABEL_WORKER: worker,
        LABEL_INSTANCE: instance_id,
        LABEL_ROLE: role,
        LABEL_OWNER: session_owner(),
    }


def why_alive(owner: str) -> str:
    """Why a thing labelled with ``owner`` may still be in use ('' when its session is provably gone)."""
    host, _, pid = owner.rpartition(":")
    if not owner or not pid.isdigit():
        return "owner unknown (no owner label)"
    if host != socket.gethostname():
        return f"session {owner} on another host"
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return ""
    except PermissionError:
        pass
    return f"running session {owner}"


def label_filters(labels: Mapping[str, str | None]) -> dict[str, list[str]]:
    """The engine's filter for things carrying every label (a None value: the label with any value)."""
    return {"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]}
