"""containers.docker_sdk: docker-py without paramiko for local engines, with it for ssh:// ones."""

from __future__ import annotations

import json
import subprocess
import sys

# A fresh interpreter: whether paramiko gets imported depends on what was imported before.
PROBE = """
import json, sys
from pytest_programbench.containers import docker_sdk
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
