"""A second Docker engine the tests may kill and restart, beside the one everything else uses.

As in ../shared/machine-notes.md: its own socket, data and exec roots, and a bridge of its
own (never ``--bridge none``, which deletes docker0 from under the first engine).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

SOCKET = "/run/pb-test-engine-b.sock"
HOST = f"unix://{SOCKET}"
BRIDGE = "pbtestbr1"
PIDFILE = Path("/run/pb-test-engine-b.pid")
LOG = Path("/tmp/pb-test-engine-b.log")


class SecondEngine:
    """Start, kill (SIGKILL: a crash) and restart a dockerd at ``HOST``."""

    def __init__(self) -> None:
        self.host = HOST

    def start(self, timeout: float = 240) -> None:
        """Start the engine and wait until it answers; a dockerd that gives up early is started again.

        Under load its containerd can miss dockerd's own start-up deadline, and dockerd exits.
        """
        if self.answers():
            return
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], capture_output=True)
        subprocess.run(["ip", "addr", "add", "10.98.0.1/24", "dev", BRIDGE], capture_output=True)
        subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
        deadline = time.monotonic() + timeout
        daemon = self._spawn()
        while not self.answers():
            if time.monotonic() > deadline:
                daemon.kill()
                raise RuntimeError(f"the second dockerd did not come up; its log:\n{LOG.read_text()[-3000:]}")
            if daemon.poll() is not None:
                daemon = self._spawn()
            time.sleep(0.5)

    def _spawn(self) -> subprocess.Popen[bytes]:
        with LOG.open("a") as log:
            return subprocess.Popen(
                [
                    "dockerd",
                    "-H",
                    HOST,
                    "--data-root",
                    "/var/lib/pb-test-engine-b",
                    "--exec-root",
                    "/run/pb-test-engine-b",
                    "--pidfile",
                    str(PIDFILE),
                    "--bridge",
                    BRIDGE,
                    "--iptables=false",
                    "--ip-masq=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def answers(self) -> bool:
        return subprocess.run(["docker", "-H", HOST, "info"], capture_output=True).returncode == 0

    def kill(self) -> None:
        """SIGKILL the engine, as a crash or an OOM kill would; its containers die with it."""
        os.kill(int(PIDFILE.read_text()), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.answers() and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        if PIDFILE.exists() and self.answers():
            pid = int(PIDFILE.read_text())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while self.answers() and time.monotonic() < deadline:
                time.sleep(0.2)

    def load(self, image: str) -> None:
        """Copy ``image`` from the main engine (no registry needed)."""
        have = subprocess.run(["docker", "-H", HOST, "image", "inspect", image], capture_output=True)
        if have.returncode == 0:
            return
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, env=_main_env())
        subprocess.run(
            ["docker", "-H", HOST, "load", "-q"], stdin=save.stdout, check=True, capture_output=True
        )
        if save.wait() != 0:
            raise RuntimeError(f"docker save {image} failed")


def _main_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
