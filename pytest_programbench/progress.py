"""Progress: tell the user what a long step is doing while it runs."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("pytest_programbench")
_last: dict[str, float] = {}


def announce(line: str, *, every: float = 2.0) -> None:
    """Log a progress line, at most one per ``every`` seconds for the same subject."""
    subject = line.split(":", 1)[0]
    now = time.monotonic()
    if now - _last.get(subject, 0.0) < every and not line.endswith(("complete", "Downloaded newer image")):
        return
    _last[subject] = now
    log.info(line)
    print(f"programbench: {line}", file=sys.__stderr__, flush=True)
