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
#: Held by whoever uses the second engine (a test module, a benchmark): each starts, kills and
#: stops it, so two users at once would pull it from under each other.
LOCK = "/tmp/pb-test-engine-b.lock"


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


class SshEngine:
    """The default engine reached over ssh://, through an sshd of our own on localhost with key auth.

    The SDK and the docker CLI both run the system's ``ssh``; a wrapper first on PATH hands it
    this test's key and known-hosts file, as a user's ~/.ssh/config would.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"ssh://root@127.0.0.1:{self.port}"
        self.bin = root / "bin"
        self._daemon: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        key, host_key = self.root / "id_ed25519", self.root / "host_ed25519"
        for path in (key, host_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        (self.root / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
        config = self.root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPidFile {self.root / 'sshd.pid'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\nUsePAM no\n"
        )
        self.bin.mkdir()
        wrapper = self.bin / "ssh"
        wrapper.write_text(
            f"#!/bin/sh\nexec /usr/bin/ssh -i {key} -o StrictHostKeyChecking=no "
            f'-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$@"\n'
        )
        wrapper.chmod(0o755)
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        self._daemon = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "sshd.log").open("w"),
        )
        deadline = time.monotonic() + timeout
        while subprocess.run(
            ["docker", "-H", self.url, "version"], env=self.env(), capture_output=True
        ).returncode:
            if time.monotonic() > deadline or self._daemon.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"no engine over {self.url}; sshd said:\n{(self.root / 'sshd.log').read_text()}"
                )
            time.sleep(0.5)

    def env(self) -> dict[str, str]:
        """The environment of a session that reaches the engine over ssh."""
        return {**_main_env(), "PATH": f"{self.bin}:{os.environ['PATH']}"}

    def stop(self) -> None:
        if self._daemon is not None and self._daemon.poll() is None:
            self._daemon.terminate()
            self._daemon.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
