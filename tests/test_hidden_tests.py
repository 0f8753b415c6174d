"""Hidden-test archives: local blob dirs, and real huggingface_hub downloads from a FakeHub.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when
`huggingface_hub.constants` is imported, so changing them inside this pytest process
would not reach a library another test already imported. Every Hub test therefore sets
the environment with monkeypatch and runs `fetch_hidden_tests` in a fresh Python
subprocess that inherits it; the subprocesses are also what the concurrency tests need
(xdist workers are processes).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakehub import FakeHub

from pytest_programbench.errors import HiddenTestsBroken, HiddenTestsMissing
from pytest_programbench.scoring.hidden_tests import fetch_hidden_tests

REPO_ROOT = Path(__file__).resolve().parents[1]
HF_REPO = "testorg/pb-tests"  # not the default: proves PROGRAMBENCH_HF_REPO is honoured
IID = "acme__tool.abc1234"
OTHER_IID = "acme__other.def5678"

# Runs fetch_hidden_tests in a fresh interpreter and prints one JSON line describing
# the outcome. PB_START_AT lines up several processes on one instant; PB_SET_ENV sets
# variables after the module is imported (call-time reading).
RUNNER = r"""
import json, os, sys, time
from pathlib import Path
import pytest_programbench.scoring.hidden_tests as ht
for key, value in json.loads(os.environ.get("PB_SET_ENV", "{}")).items():
    os.environ[key] = value
start_at = float(os.environ.get("PB_START_AT", "0"))
if start_at:
    # Import before the barrier (as a warm xdist worker has), so the race is over the Hub.
    import huggingface_hub, huggingface_hub.hf_api, huggingface_hub._snapshot_download
while time.time() < start_at:
    time.sleep(0.005)
args = json.loads(sys.argv[1])
out = {"start": time.time()}
try:
    if args.get("raw"):
        from huggingface_hub import snapshot_download
        out["path"] = snapshot_download(args["repo"], repo_type="dataset", allow_patterns=args["patterns"])
    else:
        out["path"] = str(ht.fetch_hidden_tests(args["iid"], args["branches"]))
except Exception as exc:
    out.update(error=type(exc).__name__, message=str(exc), mro=[c.__name__ for c in type(exc).__mro__],
               instance_id=getattr(exc, "instance_id", None), branch=getattr(exc, "branch", None))
out["end"] = time.time()
print(json.dumps(out))
"""


def _archive(seed: str, size: int) -> bytes:
    # A real gzip tar (every archive is read to its end before use), of distinct,
    # incompressible-looking bytes per archive so a mix-up cannot compare equal.
    data = (seed.encode() * (size // len(seed) + 1))[:size] + os.urandom(64)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("eval/data.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    """A dataset laid out like ProgramBench-Tests: two instances, several branches."""
    root = tmp_path / "dataset"
    for iid, branches in {IID: ["br1", "br2", "br3"], OTHER_IID: ["br1"]}.items():
        tests = root / iid / "tests"
        tests.mkdir(parents=True)
        for i, branch in enumerate(branches):
            (tests / f"{branch}.tar.gz").write_bytes(_archive(f"{iid}/{branch}", 20_000 + i * 1000))
    (root / "README.md").write_text("ProgramBench hidden tests (fake)\n")
    return root


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean Hugging Face environment with a private HF_HOME; returns HF_HOME."""
    for key in list(os.environ):
        if key.startswith(("HF_", "HUGGING", "PROGRAMBENCH_")) or key == "TRANSFORMERS_OFFLINE":
            monkeypatch.delenv(key)
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("PROGRAMBENCH_HF_REPO", HF_REPO)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    return hf_home


@pytest.fixture
def hub(repo_dir: Path, hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub(repo_dir, repo_id=HF_REPO, page_size=3) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield fake


def _spawn(args: dict[str, Any], extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ, **(extra_env or {}))
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    lines = stdout.strip().splitlines()
    assert lines, stderr
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def fetch(branches: list[str], iid: str = IID, **env: str) -> dict[str, Any]:
    return _result(_spawn({"iid": iid, "branches": branches}, env))


def _ok(result: dict[str, Any]) -> Path:
    assert "error" not in result, result
    return Path(result["path"])


def _cache_repo_dir(hf_home: Path) -> Path:
    return hf_home / "hub" / f"datasets--{HF_REPO.replace('/', '--')}"


# -- local blob dir -------------------------------------------------------------------


def test_blob_dir_returns_instance_dir(repo_dir: Path) -> None:
    got = fetch_hidden_tests(IID, ["br1", "br3"], blob_dir=repo_dir)
    assert got == repo_dir / IID
    assert (got / "tests" / "br3.tar.gz").read_bytes() == (
        repo_dir / IID / "tests" / "br3.tar.gz"
    ).read_bytes()


def test_blob_dir_names_first_missing_branch(repo_dir: Path) -> None:
    with pytest.raises(HiddenTestsMissing) as info:
        fetch_hidden_tests(IID, ["br1", "gone", "also-gone"], blob_dir=repo_dir)
    assert (info.value.instance_id, info.value.branch) == (IID, "gone")
    assert f"{IID} branch gone" in str(info.value)
    assert str(repo_dir) in str(info.value)


def test_blob_dir_without_the_instance(repo_dir: Path) -> None:
    with pytest.raises(HiddenTestsMissing) as info:
        fetch_hidden_tests("acme__absent.0000000", ["br1"], blob_dir=repo_dir)
    assert info.value.instance_id == "acme__absent.0000000"
    assert info.value.branch == "br1"


def test_blob_dir_rejects_directory_in_place_of_archive(repo_dir: Path) -> None:
    (repo_dir / IID / "tests" / "weird.tar.gz").mkdir()
    with pytest.raises(HiddenTestsMissing):
        fetch_hidden_tests(IID, ["weird"], blob_dir=repo_dir)


def test_blob_dir_names_a_broken_archive(repo_dir: Path) -> None:
    archive = repo_dir / IID / "tests" / "br2.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-8])  # a download cut short: no gzip trailer
    with pytest.raises(HiddenTestsBroken) as info:
        fetch_hidden_tests(IID, ["br1", "br2"], blob_dir=repo_dir)
    assert (info.value.code, info.value.branch) == ("hidden_tests_broken", "br2")
    assert f"hidden-test archive {archive} ({IID} branch br2) is broken: the gzip data ends at byte" in str(
        info.value
    )


@pytest.mark.parametrize("iid", ["", "..", "a/b", "../acme__tool.abc1234"])
def test_rejects_ids_that_are_not_one_path_component(repo_dir: Path, iid: str) -> None:
    with pytest.raises(ValueError, match="not an instance id"):
        fetch_hidden_tests(iid, ["br1"], blob_dir=repo_dir)


def test_rejects_empty_branch_list(repo_dir: Path) -> None:
    with pytest.raises(ValueError, match="at least one branch"):
        fetch_hidden_tests(IID, [], blob_dir=repo_dir)


def test_import_does_not_load_huggingface_hub_or_docker(hf_env: Path) -> None:
    code = (
        "import sys, pytest_programbench.scoring.hidden_tests\n"
        "print(sorted(m for m in ('huggingface_hub', 'docker', 'httpx', 'filelock') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# -- Hugging Face, through the real huggingface_hub against a FakeHub --------------------


def test_hub_download_lands_in_hf_cache(hub: FakeHub, hf_env: Path, repo_dir: Path) -> None:
    got = _ok(fetch(["br1", "br3"]))
    assert got == _cache_repo_dir(hf_env) / "snapshots" / hub.sha / IID
    for branch in ("br1", "br3"):
        assert (got / "tests" / f"{branch}.tar.gz").read_bytes() == (
            repo_dir / IID / "tests" / f"{branch}.tar.gz"
        ).read_bytes()
    # Only the requested archives: not br2, not the other instance, not the README.
    assert hub.file_gets() == {f"{IID}/tests/br1.tar.gz": 1, f"{IID}/tests/br3.tar.gz": 1}
    assert not (got / "tests" / "br2.tar.gz").exists()
    # page_size=3 made the client follow the Link pagination to see every file.
    assert hub.count("GET", f"/api/datasets/{HF_REPO}/tree/") > 1


def test_a_broken_archive_in_the_cache_is_named_with_what_to_delete(
    hf_env: Path, repo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = repo_dir / IID / "tests" / "br3.tar.gz"
    archive.write_bytes(archive.read_bytes() + b"junk")  # the dataset's copy itself is bad
    with FakeHub(repo_dir, repo_id=HF_REPO, page_size=3) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        result = fetch(["br1", "br3"])
    assert (result.get("error"), result.get("branch")) == ("HiddenTestsBroken", "br3"), result
    link = _cache_repo_dir(hf_env) / "snapshots" / hub.sha / IID / "tests" / "br3.tar.gz"
    # The remedy names two real paths: the snapshot's link and the blob it points to.
    assert f"Delete the cached copy ({link.resolve()}) and its link ({link})" in result["message"]
    assert link.is_symlink() and link.resolve().is_file()


def test_second_call_is_served_from_cache(hub: FakeHub) -> None:
    first = _ok(fetch(["br1", "br2"]))
    hub.clear_requests()
    second = _ok(fetch(["br1", "br2"]))
    assert second == first
    assert hub.file_gets() == {}
    assert hub.count("HEAD") == 0
    # What is left is the one call that asks which commit "main" is now.
    assert hub.requests == [("GET", f"/api/datasets/{HF_REPO}/revision/main")]


def test_new_branch_of_cached_instance_downloads_only_that_branch(hub: FakeHub) -> None:
    _ok(fetch(["br1"]))
    hub.clear_requests()
    got = _ok(fetch(["br1", "br2"]))
    assert (got / "tests" / "br2.tar.gz").is_file()
    assert hub.file_gets() == {f"{IID}/tests/br2.tar.gz": 1}


def test_offline_after_online_call_works_with_hub_stopped(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    online = _ok(fetch(["br1", "br2"]))
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = _ok(fetch(["br1", "br2"]))
    assert offline == online
    assert (offline / "tests" / "br2.tar.gz").is_file()


def test_offline_cached_instance_but_uncached_branch(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    _ok(fetch(["br1"]))
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The cached tree listing knows br2 exists: an incomplete cache, not a missing branch.
    result = fetch(["br1", "br2"])
    assert result["error"] == "HiddenTestsUnavailable"
    assert (result["instance_id"], result["branch"]) == (IID, "br2")
    assert "not in the cache" in result["message"]
    assert "HF_HUB_OFFLINE" in result["message"]
    # A branch the Hub never had is still reported as missing, even offline.
    result = fetch(["br1", "no-such-branch"])
    assert result["error"] == "HiddenTestsMissing"
    assert (result["instance_id"], result["branch"]) == (IID, "no-such-branch")


def test_offline_with_empty_cache_is_a_clear_error(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = fetch(["br1"])
    assert result["error"] == "HiddenTestsUnavailable"
    assert "HiddenTestsMissing" in result["mro"]
    assert result["instance_id"] == IID
    assert HF_REPO in result["message"]
    assert "HF_HUB_OFFLINE" in result["message"]
    assert "--pb-blob-dir" in result["message"]
    assert hub.requests == []  # offline means offline


def test_unreachable_hub_with_empty_cache_is_a_clear_error(hub: FakeHub) -> None:
    hub.stop()  # HF_ENDPOINT still points at its port, which now refuses connections
    result = fetch(["br1"])
    assert result["error"] == "HiddenTestsUnavailable"
    assert "unreachable" in result["message"]
    assert "--pb-blob-dir" in result["message"]


def test_missing_branch_on_hub_names_instance_and_branch(hub: FakeHub) -> None:
    result = fetch(["br1", "no-such-branch", "br2"])
    assert result["error"] == "HiddenTestsMissing"
    assert (result["instance_id"], result["branch"]) == (IID, "no-such-branch")
    assert f"{IID} branch no-such-branch" in result["message"]
    assert HF_REPO in result["message"]


def test_missing_instance_on_hub(hub: FakeHub) -> None:
    result = fetch(["br1"], iid="acme__absent.0000000")
    assert result["error"] == "HiddenTestsMissing"
    assert (result["instance_id"], result["branch"]) == ("acme__absent.0000000", "br1")
    assert hub.file_gets() == {}


def test_unknown_revision_is_a_clear_error(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROGRAMBENCH_HF_REVISION", "v999")
    result = fetch(["br1"])
    assert result["error"] == "HiddenTestsUnavailable"
    assert "PROGRAMBENCH_HF_REVISION" in result["message"]
    assert hub.requests == [("GET", f"/api/datasets/{HF_REPO}/revision/v999")]


def test_repo_and_revision_are_read_at_call_time(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    # Set after the module is imported, in the process itself, as a conftest would.
    monkeypatch.setenv("PROGRAMBENCH_HF_REPO", "someone/else")
    got = _ok(
        fetch(
            ["br1"],
            PB_SET_ENV=json.dumps({"PROGRAMBENCH_HF_REPO": HF_REPO, "PROGRAMBENCH_HF_REVISION": hub.sha}),
        )
    )
    assert (got / "tests" / "br1.tar.gz").is_file()
    # A commit sha needs no revision lookup; the tree was listed at that sha.
    assert not any("/revision/" in path for _, path in hub.requests)
    assert all(HF_REPO in path for _, path in hub.requests)


def test_token_is_sent_from_hf_token(repo_dir: Path, hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub(repo_dir, repo_id=HF_REPO, token="hf_secret") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", "hf_secret")
        got = _ok(fetch(["br1"]))
        assert (got / "tests" / "br1.tar.gz").is_file()
        assert hub.file_gets() == {f"{IID}/tests/br1.tar.gz": 1}


@pytest.mark.parametrize("token", [None, "hf_wrong"])
def test_token_missing_or_wrong_is_a_clear_error(
    repo_dir: Path, hf_env: Path, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    with FakeHub(repo_dir, repo_id=HF_REPO, token="hf_secret") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        if token:
            monkeypatch.setenv("HF_TOKEN", token)
        result = fetch(["br1"])
        assert result["error"] == "HiddenTestsUnavailable"
        assert "HF_TOKEN" in result["message"]
        assert result["instance_id"] == IID
        assert hub.file_gets() == {}


# -- several processes at once (pytest-xdist workers) ----------------------------------


def _race(n: int, args: dict[str, Any]) -> list[dict[str, Any]]:
    # Imports take ~0.5 s; lining the processes up on one instant makes them overlap.
    start_at = str(time.time() + 2.0)
    procs = [_spawn(args, {"PB_START_AT": start_at}) for _ in range(n)]
    return [_result(p) for p in procs]


def _overlapped(results: list[dict[str, Any]]) -> bool:
    return bool(max(r["start"] for r in results) < min(r["end"] for r in results))


def test_concurrent_processes_download_each_file_once(
    repo_dir: Path, hf_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slow bodies keep the first download in flight while the others arrive.
    with FakeHub(repo_dir, repo_id=HF_REPO, get_delay=0.5) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        results = _race(3, {"iid": IID, "branches": ["br1", "br2", "br3"]})
        paths = {_ok(r) for r in results}
        assert len(paths) == 1
        assert _overlapped(results), results
        wanted = {f"{IID}/tests/{b}.tar.gz" for b in ("br1", "br2", "br3")}
        assert hub.file_gets() == dict.fromkeys(wanted, 1)
        # Our per-instance lock: the waiting processes found the tree listing and the
        # files cached, so they neither listed the tree again nor sent HEADs.
        assert hub.count("GET", f"/api/datasets/{HF_REPO}/tree/") == 1
        assert hub.count("HEAD") == 3
        assert hub.count("GET", f"/api/datasets/{HF_REPO}/revision/") == 3
        (path,) = paths
        for branch in ("br1", "br2", "br3"):
            assert (path / "tests" / f"{branch}.tar.gz").read_bytes() == (
                repo_dir / IID / "tests" / f"{branch}.tar.gz"
            ).read_bytes()


def test_huggingface_hub_alone_downloads_each_file_once(
    repo_dir: Path, hf_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library guarantee we rely on, without our lock: the per-blob lock in
    `_hf_hub_download_to_cache_dir` plus the exists-check in `_download_to_tmp_and_move`."""
    # No file body leaves the hub before all three have asked for the repo's info, so each of
    # them is in the download phase while the first download is still in flight.
    with FakeHub(repo_dir, repo_id=HF_REPO, get_delay=0.5, hold_files_for=3) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        results = _race(3, {"raw": True, "repo": HF_REPO, "patterns": [f"{IID}/**"]})
        assert {r.get("error") for r in results} == {None}, results
        assert hub.held, hub.requests
        assert _overlapped(results), results
        wanted = {f"{IID}/tests/{b}.tar.gz" for b in ("br1", "br2", "br3")}
        assert hub.file_gets() == dict.fromkeys(wanted, 1)
        # The race was real: more than one process asked for the metadata before any
        # download finished, and only the file lock kept them from fetching twice.
        assert hub.count("HEAD") > 3
