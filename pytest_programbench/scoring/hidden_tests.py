"""Locate, or download once per machine, an instance's hidden-test archives.

The official evaluator (``programbench.eval.eval.Evaluator(blob_dir=D)``) reads
``D/tests/<branch>.tar.gz``. :func:`fetch_hidden_tests` returns such a ``D``, either from a
local directory (``--pb-blob-dir``) or from the Hugging Face dataset through
``huggingface_hub``'s own cache, and guarantees every requested archive is there.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from pytest_programbench.errors import HiddenTestsMissing, HiddenTestsUnavailable

DEFAULT_HF_REPO = "programbench/ProgramBench-Tests"
DEFAULT_HF_REVISION = "main"

# Seconds a worker waits for another worker that downloads the same instance before it
# gives up on our lock and lets huggingface_hub's per-file locks sort it out.
_LOCK_TIMEOUT = 30 * 60


def hf_source() -> tuple[str, str]:
    """(dataset repo, revision), read from the environment now.

    ``programbench.constants`` reads the same variables at import time, so setting them
    later (in a conftest, say) would be ignored there; here it is not.
    """
    repo = os.environ.get("PROGRAMBENCH_HF_REPO") or DEFAULT_HF_REPO
    revision = os.environ.get("PROGRAMBENCH_HF_REVISION") or DEFAULT_HF_REVISION
    return repo, revision


def fetch_hidden_tests(instance_id: str, branches: Sequence[str], *, blob_dir: Path | None = None) -> Path:
    """Return ``D`` such that ``D/tests/<branch>.tar.gz`` exists for every branch in ``branches``.

    With ``blob_dir`` (the ``PROGRAMBENCH_BLOB_DIR`` layout ``<blob_dir>/<instance>/tests/``)
    nothing is downloaded. Otherwise only those archives are fetched from the dataset
    ``PROGRAMBENCH_HF_REPO`` at ``PROGRAMBENCH_HF_REVISION`` into the normal Hugging Face
    cache; ``HF_TOKEN``, ``HF_HOME``/``HF_HUB_CACHE``, ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``
    work as they do for any huggingface_hub download.

    Raises HiddenTestsMissing naming the first absent branch, HiddenTestsUnavailable
    when the Hub cannot be asked and nothing usable is cached, and HiddenTestsBroken
    naming a branch whose archive the task image's tar would refuse (each is read to its
    end, as submissions are).
    """
    _check_instance_id(instance_id)
    if not branches:
        raise ValueError(f"fetch_hidden_tests({instance_id!r}) needs at least one branch")
    if blob_dir is not None:
        root = Path(blob_dir).expanduser() / instance_id
        _require_archives(root, instance_id, branches, where=str(blob_dir))
        _check_archives(root, instance_id, branches, cached=False)
        return root
    root = _fetch_from_hub(instance_id, branches)
    _check_archives(root, instance_id, branches, cached=True)
    return root


def _check_archives(root: Path, instance_id: str, branches: Sequence[str], *, cached: bool) -> None:
    from pytest_programbench.errors import HiddenTestsBroken
    from pytest_programbench.scoring.submissions import ArchiveFault, scan_archive

    for branch in branches:
        path = root / "tests" / f"{branch}.tar.gz"
        try:
            scan_archive(path)
        except (ArchiveFault, OSError) as fault:
            fix = ""
            if cached:  # a snapshot entry is a link into the cache's blobs/: both must go
                fix = (
                    f"Delete the cached copy ({path.resolve()}) and its link ({path}) so the next run "
                    "downloads it again, or point --pb-blob-dir at a good copy"
                )
            raise HiddenTestsBroken(instance_id, branch, str(path), str(fault), fix) from None


def _check_instance_id(instance_id: str) -> None:
    # The id becomes a path component locally and a pattern prefix on the Hub; a slash or
    # ".." would silently point both somewhere else.
    if not instance_id or instance_id in (".", "..") or "/" in instance_id or "\\" in instance_id:
        raise ValueError(f"not an instance id: {instance_id!r}")


def _require_archives(root: Path, instance_id: str, branches: Sequence[str], *, where: str) -> None:
    for branch in branches:
        if not (root / "tests" / f"{branch}.tar.gz").is_file():
            raise HiddenTestsMissing(instance_id, branch, where)


def _fnmatch_escape(text: str) -> str:
    # huggingface_hub filters with fnmatchcase; brackets make any metacharacter literal.
    return re.sub(r"([*?\[])", r"[\1]", text)


def _fetch_from_hub(instance_id: str, branches: Sequence[str]) -> Path:
    # Imported here: an inactive plugin must not pay for huggingface_hub (nor httpx) at startup.
    from huggingface_hub import constants, snapshot_download

    repo, revision = hf_source()
    where = f"Hugging Face dataset {repo}@{revision}"
    if constants.ENDPOINT != "https://huggingface.co":
        where += f" at {constants.ENDPOINT}"
    # Only the archives the evaluator will read, not the instance's other branches.
    patterns = [f"{_fnmatch_escape(instance_id)}/tests/{_fnmatch_escape(b)}.tar.gz" for b in branches]
    try:
        with _instance_lock(repo, instance_id):
            snapshot = snapshot_download(
                repo, repo_type="dataset", revision=revision, allow_patterns=patterns
            )
    except Exception as exc:
        error = _unavailable(exc, instance_id, branches, where=where, revision=revision)
        if error is None:
            raise
        raise error from exc
    root = Path(snapshot) / instance_id
    # snapshot_download does not fail for patterns that match nothing, so an absent branch
    # (or, offline, one never downloaded) only shows here.
    _require_archives(root, instance_id, branches, where=where)
    return root


@contextlib.contextmanager
def _instance_lock(repo: str, instance_id: str) -> Iterator[None]:
    """Hold a per-instance lock in the Hugging Face cache while downloading, when one can be had.

    huggingface_hub already locks each blob download (a per-etag WeakFileLock in
    file_download._hf_hub_download_to_cache_dir), so this lock is not what makes a file
    download once; it makes a second worker wait for the first and then find everything
    cached, instead of repeating the tree listing and one HEAD per archive. One lock per
    instance keeps different instances downloading in parallel.
    """
    import filelock
    from huggingface_hub import constants

    lock_path = (
        Path(constants.HF_HUB_CACHE)
        / ".locks"
        / "pytest-programbench"
        / f"{repo.replace('/', '--')}--{instance_id}.lock"
    )
    lock: filelock.BaseFileLock | None
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(lock_path, timeout=_LOCK_TIMEOUT)
        lock.acquire()
    except (filelock.Timeout, OSError):
        # A read-only cache (a shared, pre-filled one) writes nothing anyway, and a stuck
        # peer must not block us: the per-file locks still hold.
        lock = None
    try:
        yield
    finally:
        if lock is not None and lock.is_locked:
            lock.release()


def _unavailable(
    exc: BaseException, instance_id: str, branches: Sequence[str], *, where: str, revision: str
) -> HiddenTestsUnavailable | None:
    """What a failed Hub download means for the user, and what to do; None: not a Hub failure."""
    import httpx
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline_fix = (
        "Run once with network access (HF_HUB_OFFLINE unset) to fill the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}), or point --pb-blob-dir at a local copy laid out as "
        "<dir>/<instance>/tests/<branch>.tar.gz"
    )
    if isinstance(exc, RevisionNotFoundError):
        return HiddenTestsUnavailable(
            instance_id,
            where,
            f"revision {revision!r} does not exist ({_first_line(exc)})",
            "Set PROGRAMBENCH_HF_REVISION to an existing branch, tag or commit of the dataset",
        )
    if isinstance(exc, RepositoryNotFoundError | GatedRepoError):
        # The Hub answers 401 "repository not found" for a private repo without a token.
        return HiddenTestsUnavailable(
            instance_id,
            where,
            f"access refused or no such dataset ({_first_line(exc)})",
            "Set HF_TOKEN (or run `hf auth login`) with read access to the dataset, check "
            "PROGRAMBENCH_HF_REPO, or use --pb-blob-dir with a local copy",
        )
    if isinstance(exc, LocalEntryNotFoundError):
        # Offline (HF_HUB_OFFLINE, or no connection) and the cache cannot answer.
        snapshot_path = getattr(exc, "snapshot_path", None)
        if snapshot_path is not None:
            # IncompleteSnapshotError (recent huggingface_hub): the cached tree listing says
            # a requested archive exists on the Hub but it was never downloaded, because an
            # earlier run asked for fewer branches.
            cached = Path(snapshot_path) / instance_id
            branch = next((b for b in branches if not (cached / "tests" / f"{b}.tar.gz").is_file()), "")
            return HiddenTestsUnavailable(
                instance_id,
                where,
                f"branch {branch} is on the Hub but not in the cache, and the Hub is "
                "unreachable or offline mode is on",
                offline_fix,
                branch=branch,
            )
        return HiddenTestsUnavailable(
            instance_id,
            where,
            f"the Hub is unreachable or offline mode is on, and the cache has no copy ({_first_line(exc)})",
            offline_fix,
        )
    if isinstance(exc, HfHubHTTPError | httpx.HTTPError):
        # Any other HTTP failure, e.g. 401 on a file, a 5xx, a connection dropped mid-file.
        status = getattr(getattr(exc, "response", None), "status_code", None)
        fix = (
            "Set HF_TOKEN (or run `hf auth login`) with read access to the dataset"
            if status in (401, 403)
            else "Retry later, or use --pb-blob-dir with a local copy"
        )
        return HiddenTestsUnavailable(instance_id, where, f"download failed ({_first_line(exc)})", fix)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
