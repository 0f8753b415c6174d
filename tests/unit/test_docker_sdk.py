"""engine.client.docker_sdk: docker-py without paramiko for local engines, with it for ssh:// ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# A fresh interpreter: whether paramiko gets imported depends on what was imported before.
PROBE = """
import json, sys
from pytest_programbench.engine.client import docker_sdk
seen = {}
sdk = docker_sdk("unix:///var/run/docker.sock")
seen["paramiko_after_local"] = "paramiko" in sys.modules
sdk = docker_sdk("ssh://nobody@localhost")
client = sdk.APIClient(base_url="ssh://nobody@localhost", use_ssh_client=True, version="1.41")
seen["ssh_adapter"] = type(client._custom_adapter).__name__
seen["paramiko_after_ssh"] = "paramiko" in sys.modules
print(json.dumps(seen))
"""


def test_a_local_engine_does_not_load_paramiko_and_an_ssh_engine_still_gets_its_transport() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {
        "paramiko_after_local": False,
        "ssh_adapter": "SSHHTTPAdapter",
        "paramiko_after_ssh": True,
    }


def test_closing_an_ssh_stream_whose_far_end_is_gone_neither_raises_nor_leaves_the_ssh_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docker-py's own SSHSocket, with an `ssh` that ends at once, as dial-stdio does when the
    # exec is over: its close() writes to the dead pipe.
    from docker.transport.sshconn import SSHSocket

    from pytest_programbench.engine.execs import _close_stream

    fake = tmp_path / "ssh"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    sock = SSHSocket("root@127.0.0.1:22")
    sock.connect()
    sock.proc.wait(30)
    with pytest.raises(BrokenPipeError):
        sock.proc.stdin.write(b"\n\n")
        sock.proc.stdin.flush()
    _close_stream(sock)
    assert sock.proc.returncode == 0
    assert sock.proc.stdin.closed and sock.proc.stdout.closed
