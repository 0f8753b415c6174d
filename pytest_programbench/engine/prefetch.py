"""Provision ahead: pull the next item's task image while the current item runs.

pytest hands each item's run protocol its ``nextitem``; we note it on the item, and once
the item's own image is in place, a background thread pulls the next item's image on the
engine that item will use, within the disk budget and under the same per-image lock the
item itself takes: the next item then finds its image present, or waits for the pull
already under way. One pull at a time per process. A prefetch that fails says nothing:
the next item pulls again and reports the error as its own.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

log = logging.getLogger("pytest_programbench")
#: On an item: the item pytest runs after it in this process (None: the last one).
NEXT_KEY = pytest.StashKey["pytest.Item | None"]()


def next_holder(worker: str) -> str:
    """The ledger's name for a prefetch's hold on an image: the worker's item takes it over."""
    return f"next:{worker}"


class NextItem:
    """Notes each item's successor, which only the run protocol knows."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        item.stash[NEXT_KEY] = nextitem


class Prefetch:
    """This process's background pulls: at most one under way, held as ``holder`` in the ledger.

    It is handed what it needs (fleet.Fleet.prefetch makes it) and imports nothing of the
    fleet, so the two modules do not depend on each other.
    """

    def __init__(self, budget: int | None, policy: str, shared_dir: Path, holder: str) -> None:
        self.budget = budget
        self.policy = policy
        self.shared_dir = shared_dir
        self.holder = holder
        self._thread: threading.Thread | None = None

    def start(self, url: str, ref: str) -> None:
        self.wait()  # one at a time; the last one was for the item now running, so it is done
        self._thread = threading.Thread(target=self._pull, args=(url, ref), name="pb-prefetch", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _pull(self, url: str, ref: str) -> None:
        from pytest_programbench.engine.containers import Engine
        from pytest_programbench.engine.imagebudget import Ledger, provision
        from pytest_programbench.engine.images import ensure_image

        try:
            with Engine(url) as engine:  # a connection of its own: the item's is busy
                ledger = Ledger(engine, self.budget, self.shared_dir)

                def ensure(before_pull: object) -> str:
                    return ensure_image(
                        engine,
                        ref,
                        policy=self.policy,
                        lock_dir=self.shared_dir,
                        before_pull=before_pull if callable(before_pull) else None,
                    )

                booked = provision(ledger, ref, self.holder, ensure)
                if booked.pulled or booked.evicted:
                    ledger.leave_for(ref, booked)
        except Exception as exc:  # the item itself pulls again and reports what goes wrong
            log.info("prefetching %s failed: %s", ref, exc)
