"""A second Docker engine the tests may kill and restart, beside the one everything else uses.

As in ../shared/machine-notes.md: its own socket, data and exec roots, and a bridge of its
own (never ``--bridge none``, which deletes docker0 from under the first engine).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from support import running

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


#: The user a rootless Podman service runs as (images/setup-test-machine.sh creates it).
PODMAN_USER = os.environ.get("PB_PODMAN_USER", "pbpodman")
PODMAN_ROOT = Path("/var/lib/pb-test-podman")  # the rootful service's own store, apart from the machine's


class PodmanEngine:
    """A Podman API service the tests start and stop: rootful, or rootless as PODMAN_USER.

    Each has a storage of its own (``CONTAINERS_STORAGE_CONF``), so the machine's own Podman
    images and containers are never touched, and overlay storage (Podman 4.3 picks vfs for a
    rootless user on its first run here, which copies every layer for every container).
    """

    def __init__(self, rootless: bool) -> None:
        import pwd

        self.rootless = rootless
        if rootless:
            try:
                account = pwd.getpwnam(PODMAN_USER)
            except KeyError:
                raise RuntimeError(
                    f"no user {PODMAN_USER} for rootless Podman; run images/setup-test-machine.sh"
                ) from None
            self.uid, self.gid, self.home = account.pw_uid, account.pw_gid, Path(account.pw_dir)
            self.runtime = Path(f"/run/user/{self.uid}")
            self.storage = self.home / ".local/share/pb-test-containers"
            self.config = self.home / ".config/pb-test-podman"
        else:
            self.uid = self.gid = 0
            self.home = Path(os.environ.get("HOME", "/root"))
            self.runtime = Path("/run/pb-test-podman")
            self.storage = PODMAN_ROOT / "storage"
            self.config = PODMAN_ROOT
        self.socket = self.runtime / "pb-test-podman.sock"
        self.host = f"unix://{self.socket}"
        self.log = Path(f"/tmp/pb-test-podman-{'rootless' if rootless else 'rootful'}.log")
        self._service: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ["PATH"],
            "CONTAINERS_STORAGE_CONF": str(self.config / "storage.conf"),
            "CONTAINERS_CONF": str(self.config / "containers.conf"),
        }
        if self.rootless:
            env.update(HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime))
        return env

    def _own(self, *paths: Path) -> None:
        """Make each path a directory the service's user owns, with any parents made for it (in its
        home: Podman makes its own directories beside them)."""
        for path in paths:
            missing = [p for p in [path, *path.parents] if not p.exists()]
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            for made in missing:
                os.chown(made, self.uid, self.gid)
            os.chown(path, self.uid, self.gid)

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("a") as log:
            return subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.host],
                env=self._env(),
                user=self.uid,
                group=self.gid,
                extra_groups=[],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, timeout: float = 120) -> None:
        self._stop_others()
        self._own(self.runtime, self.storage, self.config, self.runtime / "pb-test-containers")
        (self.config / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.storage}"\n'
            f'runroot = "{self.runtime / "pb-test-containers"}"\n'
        )
        (self.config / "containers.conf").write_text("")
        if not self.rootless:
            # Rootful Podman asks each container for RLIMIT_NOFILE/NPROC far above its own; without
            # CAP_SYS_RESOURCE (these VMs) every start fails ("error setting rlimit type 7"). So the
            # containers ask for what the service itself has, read from a first start of it.
            probe = self._spawn()
            try:
                self._wait(probe, timeout)
                limits = Path(f"/proc/{probe.pid}/limits").read_text()
            finally:
                probe.terminate()
                probe.wait(timeout=30)
            nofile = _hard_limit(limits, "Max open files")
            nproc = _hard_limit(limits, "Max processes")
            (self.config / "containers.conf").write_text(
                f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            )
        self._service = self._spawn()
        self._wait(self._service, timeout)

    def _wait(self, service: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline or service.poll() is not None:
                raise RuntimeError(
                    f"podman system service did not answer; its log:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.2)

    def answers(self) -> bool:
        done = subprocess.run(["docker", "-H", self.host, "version"], capture_output=True)
        return self.socket.exists() and done.returncode == 0

    def load(self, image: str) -> None:
        """Copy ``image`` from the main engine into this Podman's store (docker save | podman load)."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, env=_main_env())
        subprocess.run(
            ["podman", "--url", self.host, "load", "-q"], stdin=save.stdout, check=True, capture_output=True
        )
        if save.wait() != 0:
            raise RuntimeError(f"docker save {image} failed")

    def stop(self) -> None:
        if self._service is not None and self._service.poll() is None:
            self._service.terminate()
            self._service.wait(timeout=60)
        self._service = None
        self._stop_others()

    def _stop_others(self) -> None:
        """End every other service on this socket: one a killed run left behind keeps answering
        there (a rootless one outlived its session, seen here for hours), and a new one would
        then run the tests on the old one's configuration."""
        command = f"podman\0system\0service\0--time=0\0{self.host}\0".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and (entry / "cmdline").read_bytes() == command:
                    pids.append(int(entry.name))
            except OSError:
                continue
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(map(running, pids)):
                time.sleep(0.2)

    def wipe(self) -> None:
        """Remove every container and image of this service (its store is its own: all of them are ours)."""
        for args in (["rm", "--all", "--force"], ["rmi", "--all", "--force"]):
            subprocess.run(["podman", "--url", self.host, *args], capture_output=True, timeout=300)


def _hard_limit(limits: str, name: str) -> str:
    """The hard limit on the line ``name`` of a /proc/<pid>/limits text."""
    for line in limits.splitlines():
        if line.startswith(name):
            return line[len(name) :].split()[1]
    raise RuntimeError(f"no {name!r} in /proc limits:\n{limits}")
