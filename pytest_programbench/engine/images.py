"""Images: make sure a task image is on the engine before anything uses it.

Under ``-n 16`` every worker may want the same image at once; a file lock shared by
the workers makes one of them pull while the others wait, and ``--pb-pull`` says
whether pulling is allowed at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from pytest_programbench import files
from pytest_programbench.engine.containers import Engine
from pytest_programbench.errors import ImageBuildFailed, ImageChanged, ImageMissing

IMAGE_IDS = "image-ids.json"


def ensure_image(
    engine: Engine,
    ref: str,
    *,
    policy: str,
    lock_dir: Path,
    progress: Callable[[str], None] | None = None,
    before_pull: Callable[[], object] | None = None,
) -> str:
    """Return ``"present"`` or ``"pulled"``; raise ImageMissing/ImagePullFailed otherwise.

    ``before_pull`` runs (under the pull lock) only when a pull is about to start: the disk
    budget makes room there.
    """
    from filelock import FileLock

    if policy == "never":
        engine.require_image(
            ref, f"--pb-pull never forbids pulling; run `docker pull {ref}` or use --pb-pull missing"
        )
        return "present"
    lock_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{engine.host}|{ref}".encode()).hexdigest()[:16]
    with FileLock(str(lock_dir / f"pull-{key}.lock")):
        done_marker = lock_dir / f"pull-{key}.done"
        if engine.image_exists(ref) and (policy == "missing" or done_marker.exists()):
            return "present"
        if before_pull is not None:
            before_pull()
        engine.pull(ref, progress)
        if policy == "always":
            done_marker.touch()  # pulled once this session; other workers reuse it
        return "pulled"


#: Used as the self-test image's base when present (built offline by images/base);
#: otherwise the Dockerfile's own default, debian:bookworm-slim, is pulled.
OFFLINE_BASE = "pytest-programbench/base:bookworm"


def ensure_selftest_image(
    engine: Engine, ref: str, *, lock_dir: Path, progress: Callable[[str], None] | None = None
) -> str:
    """Build the bundled self-test image if the engine lacks it; ``"present"`` or ``"built"``."""
    from filelock import FileLock

    from pytest_programbench import selftest

    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / "selftest-build.lock")):
        if engine.image_exists(ref):
            return "present"
        args = {"BASE": OFFLINE_BASE} if engine.image_exists(OFFLINE_BASE) else {}
        if progress is not None:
            base = args.get("BASE", "debian:bookworm-slim")
            progress(f"{ref}: building from {selftest.image_context()} (base {base})")
        try:
            engine.build(str(selftest.image_context()), ref, args)
        except ImageBuildFailed as exc:
            if args:  # it was the offline base already: the remedy below would not help
                raise
            raise ImageBuildFailed(
                ref,
                exc.detail,
                f"Without a registry, build the offline base {OFFLINE_BASE} first (`bash "
                f"{selftest.base_build_script()}`, needs mmdebstrap; see the README), then rerun",
            ) from None
        return "built"


def pin_image(engine: Engine, ref: str, *, lock_dir: Path) -> str:
    """The id ``ref`` names now, recorded for the session (all workers); the first id seen wins.

    An item whose tag names another id than an earlier item saw is an error: between the
    two, something re-tagged the image (an agent with the engine's socket can).
    """
    from filelock import FileLock

    image_id = engine.image_id(ref)
    record = lock_dir / IMAGE_IDS
    key = f"{engine.host}|{ref}"
    with FileLock(str(record) + ".lock"):
        ids = json.loads(record.read_text()) if record.is_file() else {}
        first = ids.setdefault(key, image_id)
        if first != image_id:
            raise ImageChanged(ref, first, image_id, "since an earlier item of this session used it")
        files.write_text(record, json.dumps(ids, indent=2))
    return image_id


def check_pinned(engine: Engine, ref: str, pinned: str, *, when: str) -> None:
    """Raise ImageChanged unless ``ref`` still names ``pinned``."""
    try:
        now = engine.image_id(ref)
    except ImageMissing:
        now = "no image (the tag was removed)"
    if now != pinned:
        raise ImageChanged(ref, pinned, now, when)
