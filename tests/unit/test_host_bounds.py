"""What the harness keeps of an agent's output and trajectory: bounded, head and tail, the cut counted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_programbench.agents import sandbox
from pytest_programbench.agents.agent import BoundedLog
from pytest_programbench.agents.sandbox import AgentReportWarning, trajectory_json


def test_a_log_keeps_its_head_and_tail(tmp_path: Path) -> None:
    path = tmp_path / "agent.log"
    log = BoundedLog(path, head=1000, tail=500)
    data = os.urandom(3_000_000)
    for i in range(0, len(data), 4096):
        log.write(data[i : i + 4096])
    assert path.read_bytes() == data[:1000]  # the head is there while the program runs
    log.close()
    log.write(b"after the end")  # a straggler that held the pipe: dropped
    note = f"\n[... {len(data) - 1500} bytes of output cut by pytest-programbench ...]\n".encode()
    assert path.read_bytes() == data[:1000] + note + data[-500:]


def test_a_short_log_is_kept_whole(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "agent.log", head=1000, tail=500)
    log.write(b"a" * 1200)
    log.close()
    assert (tmp_path / "agent.log").read_bytes() == b"a" * 1200


def test_a_log_pumps_a_pipe_to_its_end(tmp_path: Path) -> None:
    read, write = os.pipe()
    log = BoundedLog(tmp_path / "agent.log", head=10, tail=10)
    os.write(write, b"0123456789" * 10)
    os.close(write)
    log.pump(read)  # and closes it
    log.close()
    with pytest.raises(OSError):
        os.fstat(read)
    cut = b"\n[... 80 bytes of output cut by pytest-programbench ...]\n"
    assert (tmp_path / "agent.log").read_bytes() == b"0123456789" + cut + b"0123456789"


def test_a_trajectory_is_saved_as_json_and_a_huge_one_as_its_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    small = {"messages": [{"role": "user", "content": "hi"}]}
    assert json.loads(trajectory_json(small)) == small
    monkeypatch.setattr(sandbox, "TRAJECTORY_MAX_CHARS", 1000)
    huge = {"messages": [{"content": f"step {i}"} for i in range(1000)]}
    with pytest.warns(AgentReportWarning, match="saved as its first and last 500"):
        saved = json.loads(trajectory_json(huge))
    compact = json.dumps(huge)
    assert saved["pb_trajectory_cut"]["cut"] == len(compact) - 1000
    assert (saved["head"], saved["tail"]) == (compact[:500], compact[-500:])


def test_a_trajectory_that_is_not_json_is_saved_as_its_repr() -> None:
    with pytest.warns(AgentReportWarning, match="not JSON-serialisable"):
        saved = json.loads(trajectory_json({("tuple", "key"): 1}))
    assert saved == "{('tuple', 'key'): 1}"


def test_the_audits_read_of_a_submission_does_not_keep_its_members(tmp_path: Path) -> None:
    import gzip
    import io
    import tarfile
    import tracemalloc

    from pytest_programbench.scoring.integrity import scan_submission

    def archive(members: int) -> Path:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:  # compressed whole: faster than a gzip stream
            for i in range(members):
                tar.addfile(tarfile.TarInfo(f"./f{i}"))
        path = tmp_path / f"submission-{members}.tar.gz"
        path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=1))
        return path

    scan_submission(archive(10))  # imports and first-use caches outside the measure
    big = archive(12_000)
    tracemalloc.start()
    try:
        scan_submission(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # kept, 12,000 members add 3 MiB to the ~2.6 MiB of buffers
