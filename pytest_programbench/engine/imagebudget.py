"""Provision within a disk budget: task images this session pulled, evicted least recently used first.

``--pb-image-budget SIZE`` bounds, per engine, the bytes of the task images this session
pulled. Before a pull, images are evicted until the new one fits; the new one is assumed
as large as the largest task image seen so far (a registry says a size only after the
pull), and after the pull the real size is booked and the budget enforced again. Never
evicted: an image any container on the engine was made from (ours or anyone's), an image
an item of this session holds or a worker fetched for its next item, and anything this
session did not pull (every other image on the engine is not ours to remove).

The ledger is a JSON file per engine in the directory all xdist workers share, changed
under a file lock, so workers on one engine see one budget.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_programbench import files
from pytest_programbench.engine.containers import Engine


@dataclass
class Booked:
    """Bytes one item (or the prefetch working for it) pulled and evicted."""

    pulled: int = 0
    evicted: int = 0


class Ledger:
    """The budget of one engine: the images this session pulled, their sizes, holders and last use."""

    def __init__(self, engine: Engine, budget: int | None, shared_dir: Path) -> None:
        self.engine = engine
        self.budget = budget
        key = hashlib.sha256(engine.host.encode()).hexdigest()[:16]
        self.path = shared_dir / f"images-{key}.json"

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        from filelock import FileLock

        with FileLock(str(self.path) + ".lock"):
            state = json.loads(self.path.read_text()) if self.path.is_file() else {}
            state.setdefault("host", self.engine.host)
            state.setdefault("images", {})
            state.setdefault("pulled_bytes", 0)
            state.setdefault("evicted_bytes", 0)
            state.setdefault("peak_bytes", 0)
            yield state
            files.write_text(self.path, json.dumps(state, indent=2))

    def hold(self, ref: str, holder: str) -> None:
        """``holder`` (an item, or ``next:<worker>``) needs ``ref``: it is not evicted until released."""
        with self._state() as state:
            holds = state.setdefault("holds", {})
            holds[ref] = sorted({*holds.get(ref, []), holder})
            if ref in state["images"]:
                state["images"][ref]["used"] = time.time()

    def release(self, holders: set[str], ref: str | None = None) -> int:
        """Drop ``holders``' holds (on ``ref``, or all: budget 0 then evicts what is free); bytes evicted."""
        with self._state() as state:
            holds = state.setdefault("holds", {})
            for name in list(holds):
                if ref is None or name == ref:
                    holds[name] = [h for h in holds[name] if h not in holders]
            return self._evict(state, need=0, keep="") if self.budget == 0 and ref is None else 0

    def leave_for(self, ref: str, booked: Booked) -> None:
        """A prefetch's costs, for the item that takes ``ref`` over to claim."""
        with self._state() as state:
            mine = state.setdefault("unclaimed", {}).setdefault(ref, {"pulled": 0, "evicted": 0})
            mine["pulled"] += booked.pulled
            mine["evicted"] += booked.evicted

    def claim(self, ref: str) -> Booked:
        with self._state() as state:
            mine = state.setdefault("unclaimed", {}).pop(ref, {"pulled": 0, "evicted": 0})
        return Booked(mine["pulled"], mine["evicted"])

    def make_room(self, ref: str) -> int:
        """Evict until an image as large as the largest seen fits beside ``ref``'s holders; bytes evicted."""
        if self.budget is None:
            return 0
        with self._state() as state:
            sizes = [e["size"] for e in state["images"].values()]
            return self._evict(state, need=max(sizes, default=0), keep=ref)

    def booked_pull(self, ref: str) -> Booked:
        """``ref`` was just pulled: book its size and enforce the budget again (it may exceed the guess)."""
        size = self.engine.image_size(ref)
        booked = Booked(pulled=size)
        with self._state() as state:
            state["images"][ref] = {"size": size, "used": time.time()}
            state["pulled_bytes"] += size
            if self.budget is not None:
                booked.evicted = self._evict(state, need=0, keep=ref)
            state["peak_bytes"] = max(state["peak_bytes"], sum(e["size"] for e in state["images"].values()))
        return booked

    def _evict(self, state: dict[str, Any], *, need: int, keep: str) -> int:
        """Remove least recently used free images until ``need`` more bytes fit the budget."""
        images: dict[str, Any] = state["images"]
        budget = self.budget or 0
        total = sum(e["size"] for e in images.values())
        if total + need <= budget:
            return 0
        in_use = self.engine.images_in_use()
        holds = state.get("holds", {})
        evicted = 0
        for ref in sorted(images, key=lambda r: images[r]["used"]):
            if total + need <= budget:
                break
            entry = images[ref]
            if ref == keep or holds.get(ref):
                continue
            if self._image_id(ref) in in_use or not self.engine.remove_image(ref):
                continue  # a container was made from it: never ours to take away
            del images[ref]
            total -= entry["size"]
            evicted += entry["size"]
        state["evicted_bytes"] += evicted
        return evicted

    def _image_id(self, ref: str) -> str:
        from pytest_programbench.errors import ImageMissing

        try:
            return self.engine.image_id(ref)
        except ImageMissing:
            return ""


def totals(shared_dir: Path) -> dict[str, dict[str, int]]:
    """Per engine: bytes pulled, evicted, and the most task-image bytes booked at once."""
    out = {}
    for path in sorted(shared_dir.glob("images-*.json")):
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(path.read_text())
            out[state["host"]] = {k: int(state[k]) for k in ("pulled_bytes", "evicted_bytes", "peak_bytes")}
    return out


def provision(ledger: Ledger, ref: str, holder: str, ensure: Callable[[Callable[[], object]], str]) -> Booked:
    """Hold ``ref`` for ``holder`` and make it present with ``ensure(before_pull)``; what that cost."""
    ledger.hold(ref, holder)
    booked = Booked()

    def before_pull() -> None:
        booked.evicted += ledger.make_room(ref)

    if ensure(before_pull) == "pulled":
        after = ledger.booked_pull(ref)
        booked.pulled, booked.evicted = after.pulled, booked.evicted + after.evicted
    return booked
