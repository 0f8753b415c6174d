"""A real image registry on 127.0.0.1 for pull tests: Debian's ``docker-registry`` (Distribution 2.x).

`Registry` starts ``docker-registry serve <config>`` on a free port with its storage in a
temporary directory, and stops it on exit. Every request it answered is in its access log
(combined log format), so tests can count pulls: every pull of ``<name>:<tag>`` asks for
``/v2/<name>/manifests/<tag>`` exactly once (a HEAD; a GET by digest follows only when the
engine does not know that digest yet, so GETs alone undercount). ``mark()`` starts a new count.

The engine talks to ``127.0.0.1:<port>`` over plain HTTP with no daemon configuration,
because Docker treats 127.0.0.0/8 registries as insecure registries by default.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from support import created_tag

from pytest_programbench.engine.containers import Engine

INSTALL_HINT = "install Debian's registry with `apt-get install docker-registry` (what .ci/run does)"

_ACCESS = re.compile(
    r'^\S+ - \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) '
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Registry:
    """``with Registry(tmp_dir) as reg:`` a running registry at ``reg.host``."""

    root: Path
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)
    _mark: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"

    # -- lifecycle -------------------------------------------------------------

    def start(self, attempts: int = 3) -> None:
        binary = shutil.which("docker-registry") or shutil.which("registry")
        if binary is None:
            raise RuntimeError(f"no docker-registry binary on PATH; {INSTALL_HINT}")
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):  # a free port can be taken between asking and binding
            self.port = _free_port()
            config = self.root / "config.yml"
            config.write_text(
                "version: 0.1\n"
                "log:\n  level: info\n  accesslog:\n    disabled: false\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'storage'}\n"
                "  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.host}\n"
            )
            self._log = self.log_path.open("ab")
            self._process = subprocess.Popen(
                [binary, "serve", str(config)], stdout=self._log, stderr=subprocess.STDOUT
            )
            if self._wait_until_up():
                return
            self.stop()
        raise RuntimeError(f"docker-registry did not come up; its log:\n{self.log_path.read_text()[-3000:]}")

    def _wait_until_up(self, timeout: float = 20.0) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- content ---------------------------------------------------------------

    def push(self, engine: Engine, source: str, ref: str) -> None:
        """Tag local image ``source`` as ``ref`` (a name under ``host``) and push it here."""
        repository, _, tag = ref.rpartition(":")
        assert repository.startswith(self.host + "/"), ref
        engine.client.images.get(source).tag(repository, tag)
        created_tag(ref)
        for event in engine.client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise RuntimeError(f"pushing {ref} failed: {event['error']}")

    # -- what it answered ------------------------------------------------------

    def mark(self) -> None:
        """Count requests from here on only."""
        self._mark = self.log_path.stat().st_size

    def requests(self) -> list[Request]:
        """Requests answered since the last ``mark()``, oldest first."""
        with self.log_path.open("rb") as log:
            log.seek(self._mark)
            text = log.read().decode(errors="replace")
        found = []
        for line in text.splitlines():
            match = _ACCESS.match(line)
            if match:
                found.append(Request(match["method"], match["path"], int(match["status"])))
        return found

    def pulls(self, ref: str) -> int:
        """How often ``ref`` (``<host>/<name>:<tag>``) was pulled since ``mark()``."""
        repository, _, tag = ref.removeprefix(self.host + "/").rpartition(":")
        path = f"/v2/{repository}/manifests/{tag}"
        return sum(r.method in ("HEAD", "GET") and r.path == path for r in self.requests())
