"""Progress: tell the user what a long step is doing while it runs.

Lines go to the real stderr with pytest's capture suspended: under the default fd
capture anything written during an item's fixtures is swallowed, and xdist workers
share the controller's stderr, so this is the one place a user sees under ``-n 16``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

log = logging.getLogger("pytest_programbench")


def announcer(config: pytest.Config, *, every: float = 2.0) -> Callable[..., None]:
    """A ``progress(line)`` callback; lines read ``<subject>: <what>``, throttled per subject."""
    capture = config.pluginmanager.getplugin("capturemanager")
    # xdist workers have no terminal of their own; their stderr is the controller's.
    terminal = None if hasattr(config, "workerinput") else config.pluginmanager.getplugin("terminalreporter")
    last: dict[str, float] = {}

    def announce(line: str, force: bool = False) -> None:
        subject = line.split(": ", 1)[0]
        now = time.monotonic()
        final = force or line.endswith(("complete", "Downloaded newer image", "Image is up to date"))
        if not final and now - last.get(subject, 0.0) < every:
            return
        last[subject] = now
        log.info(line)
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            if terminal is not None:
                # In-process: start on a fresh line instead of after the item's progress letters.
                terminal.ensure_newline()
                terminal.write_line(f"programbench: {line}")
                terminal.flush()
            else:
                print(f"programbench: {line}", file=sys.stderr, flush=True)

    return announce


STATUS_LOG = "progress.log"


class ItemProgress:
    """What one item is doing, as phases: a line in ``<run>/progress.log`` each, and on stderr.

    The log is the status file a user follows with ``tail -f`` under ``-n 16``: every
    worker appends whole lines to it (O_APPEND, one write per line, so lines never
    interleave), each with the time, worker, item and seconds since the item started.
    """

    def __init__(self, config: pytest.Config, label: str, run_dir: Path, worker: str) -> None:
        self.label = label
        self.worker = worker
        self.path = run_dir / STATUS_LOG
        self.started = time.monotonic()
        self._announce = announcer(config, every=10.0)

    def __call__(self, phase: str, *, milestone: bool = False) -> None:
        """Record ``phase``; stderr shows at most one line per 10 s per item, milestones always."""
        elapsed = time.monotonic() - self.started
        line = f"{time.strftime('%H:%M:%S')} {self.worker:<6} {self.label} +{elapsed:.0f}s {phase}\n"
        with contextlib.suppress(OSError):  # progress must never break a run
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        self._announce(f"{self.label}: {phase} (+{elapsed:.0f}s)", milestone)
