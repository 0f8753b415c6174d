"""Progress: tell the user what a long step is doing while it runs.

Lines go to the real stderr with pytest's capture suspended: under the default fd
capture anything written during an item's fixtures is swallowed, and xdist workers
share the controller's stderr, so this is the one place a user sees under ``-n 16``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable

import pytest

log = logging.getLogger("pytest_programbench")


def announcer(config: pytest.Config, *, every: float = 2.0) -> Callable[[str], None]:
    """A ``progress(line)`` callback; lines read ``<subject>: <what>``, throttled per subject."""
    capture = config.pluginmanager.getplugin("capturemanager")
    last: dict[str, float] = {}

    def announce(line: str) -> None:
        subject = line.split(": ", 1)[0]
        now = time.monotonic()
        final = line.endswith(("complete", "Downloaded newer image", "Image is up to date"))
        if not final and now - last.get(subject, 0.0) < every:
            return
        last[subject] = now
        log.info(line)
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            print(f"programbench: {line}", file=sys.stderr, flush=True)

    return announce
