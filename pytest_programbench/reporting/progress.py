"""Progress: tell the user what a long step is doing while it runs.

Lines go to the real stderr with pytest's capture suspended: under the default fd
capture anything written during an item's fixtures is swallowed, and xdist workers
share the controller's stderr, so this is the one place a user sees under ``-n 16``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_programbench.text import printable

if TYPE_CHECKING:
    from pytest_programbench.reporting.results import Tally

log = logging.getLogger("pytest_programbench")


def announcer(config: pytest.Config, *, every: float = 2.0, verbosity: int = 0) -> Callable[..., None]:
    """A ``progress(line)`` callback; lines read ``<subject>: <what>``, throttled per subject.

    Shown on the terminal only in-process and at ``verbosity`` or above: an xdist worker's
    stderr is the controller's terminal, where its lines would land in the middle of
    pytest's status letters. Everything is logged either way.
    """
    capture = config.pluginmanager.getplugin("capturemanager")
    shown = not hasattr(config, "workerinput") and config.get_verbosity() >= verbosity
    terminal = config.pluginmanager.getplugin("terminalreporter") if shown else None
    last: dict[str, float] = {}

    def announce(line: str, force: bool = False) -> None:
        subject = line.split(": ", 1)[0]
        now = time.monotonic()
        final = force or line.endswith(("complete", "Downloaded newer image", "Image is up to date"))
        if not final and now - last.get(subject, 0.0) < every:
            return
        last[subject] = now
        log.info(line)
        if terminal is None:
            return
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            # Start on a fresh line instead of after the item's progress letters.
            terminal.ensure_newline()
            terminal.write_line(printable(f"programbench: {line}"))
            terminal.flush()

    return announce


STATUS_LOG = "progress.log"


class ItemProgress:
    """What one item is doing, as phases: a line in ``<run>/progress.log`` each (on the terminal with -v).

    The log is the status file a user follows with ``tail -f`` under ``-n 16``: every
    worker appends whole lines to it (O_APPEND, one write per line, so lines never
    interleave), each with the time, worker, item and seconds since the item started.
    """

    def __init__(self, config: pytest.Config, label: str, run_dir: Path, worker: str) -> None:
        self.label = label
        self.worker = worker
        self.path = run_dir / STATUS_LOG
        self.started = time.monotonic()
        self._announce = announcer(config, every=10.0, verbosity=1)

    def __call__(self, phase: str, *, milestone: bool = False) -> None:
        """Record ``phase``; the terminal (-v) shows at most one line per 10 s per item, milestones always."""
        elapsed = time.monotonic() - self.started
        phase = printable(phase)  # one line each, also for `tail -f progress.log` on a terminal
        line = f"{time.strftime('%H:%M:%S')} {self.worker:<6} {self.label} +{elapsed:.0f}s {phase}\n"
        with contextlib.suppress(OSError):  # progress must never break a run
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        self._announce(f"{self.label}: {phase} (+{elapsed:.0f}s)", milestone)


class Overall:
    """The controller's progress line: done/running/left, resolved so far, ETA and agent cost.

    Printed on a line of its own when an item finishes (never inside pytest's status
    letters), not under ``-q``. Counts the session's ProgramBench items only (other tests
    kept with ``--pb-keep-other-tests`` are not in it), from the reports the controller
    sees, so it works the same under xdist; how many there are, the tally knows.
    """

    def __init__(self, config: pytest.Config, tally: Tally) -> None:
        self.config = config
        self.tally = tally
        self.started: dict[str, float] = {}
        self.finished: list[float] = []  # seconds each finished item took
        self.resolved = 0
        self.cost = 0.0
        self.peak = 1  # the most items seen running at once: the session's parallelism

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        if nodeid in self.tally.instances:
            self.started.setdefault(nodeid, time.monotonic())
            self.peak = max(self.peak, len(self.started))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from pytest_programbench.reporting.results import REPORT_ATTR

        data = getattr(report, REPORT_ATTR, None)
        if isinstance(data, dict) and report.when == "call":  # the verdict rides on the call report
            self.resolved += data.get("outcome") == "resolved"
            self.cost += data.get("agent_cost") or 0.0
        if report.when != "teardown" or report.nodeid not in self.started:
            return
        self.finished.append(time.monotonic() - self.started.pop(report.nodeid))
        terminal = self.config.pluginmanager.getplugin("terminalreporter")
        if terminal is not None:
            # xdist writes its status letters without telling the reporter a line is open.
            if terminal._tw.width_of_current_line:  # private: the one way to know the cursor column
                terminal._tw.line()
            terminal.write_line(f"programbench: {self.line()}")

    def line(self) -> str:
        done, running, total = len(self.finished), len(self.started), len(self.tally.expected)
        left = max(total - done - running, 0)
        parts = [f"{done}/{total} done, {running} running, {left} left", f"{self.resolved} resolved"]
        if self.cost:
            parts.append(f"agent cost ${self.cost:.2f}")
        if left + running and self.finished:
            average = sum(self.finished) / len(self.finished)
            parts.append(f"ETA {_clock(average * (left + running) / self.peak)}")
        return " | ".join(parts)


def _clock(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{max(minutes, 1)}m"
