"""A local stand-in for the Hugging Face Hub, for tests that run the real download code.

`FakeHub` serves a local folder as one dataset repository over HTTP on 127.0.0.1, with
just the endpoints `huggingface_hub` (checked against 1.33) uses for
`snapshot_download` / `hf_hub_download`:

- ``GET  /api/datasets/<repo>/revision/<rev>``          repo info, carries the commit ``sha``
- ``GET  /api/datasets/<repo>/tree/<rev>[/<path>]``     file listing (``recursive``, ``cursor``
                                                        pagination through ``Link: rel="next"``)
- ``POST /api/datasets/<repo>/paths-info/<rev>``        metadata of given paths (not used by
                                                        snapshot_download, served for completeness)
- ``HEAD|GET /datasets/<repo>/resolve/<rev>/<path>``    the file, with ``ETag``, ``Content-Length``,
                                                        ``X-Repo-Commit`` (and ``Range`` on GET)

Errors carry the ``X-Error-Code`` headers the Hub sends, because that is how the client
tells "entry not found" from "repo not found" from "revision not found". Point the client
at it with ``HF_ENDPOINT=hub.endpoint``. Everything the server answered is in
``hub.requests`` so tests can count downloads.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a non-LFS file's oid/ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class _File:
    data: bytes
    oid: str


@dataclass
class FakeHub:
    """Serve ``root`` as dataset ``repo_id`` at branch ``revision``.

    ``token``: when set, every request must carry ``Authorization: Bearer <token>``; no
    header gets the Hub's private-repo answer (401, RepoNotFound), a wrong one gets
    401 "Invalid credentials". ``get_delay``: seconds to sleep before sending a file body
    (widens race windows in concurrency tests). ``hold_files_for``: when set, no file body is
    sent until that many repo-info requests (one per ``snapshot_download``) have arrived, or 60 s
    have passed; `held` then says whether they came: it lines concurrent clients up on the
    download phase without depending on how fast each one started. ``page_size``: tree
    entries per page.
    Files are read once, when the hub starts; the commit sha is derived from the content.
    """

    root: Path
    repo_id: str = "programbench/ProgramBench-Tests"
    revision: str = "main"
    token: str | None = None
    get_delay: float = 0.0
    hold_files_for: int = 0
    page_size: int = 1000
    held: bool | None = field(default=None, init=False)
    _files: dict[str, _File] = field(default_factory=dict, init=False, repr=False)
    _log: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)
    _full_log: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)
    _log_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _arrived: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _endpoint: str = field(default="", init=False, repr=False)
    sha: str = field(default="", init=False)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> FakeHub:
        self._files = {
            p.relative_to(self.root).as_posix(): _File(p.read_bytes(), git_blob_sha1(p.read_bytes()))
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }
        listing = "\n".join(f"{path} {f.oid}" for path, f in self._files.items())
        self.sha = hashlib.sha1(listing.encode()).hexdigest()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        host, port = server.server_address[:2]
        self._endpoint = f"http://{host!s}:{port}"
        self._thread = threading.Thread(target=server.serve_forever, name="fakehub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The URL to put in ``HF_ENDPOINT``; stays valid (and refuses connections) after stop()."""
        if not self._endpoint:
            raise RuntimeError("FakeHub is not started")
        return self._endpoint

    # -- request log -------------------------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str]]:
        """A copy of (method, path) of every request served, in arrival order (no query string)."""
        with self._log_lock:
            return list(self._log)

    @property
    def requests_with_query(self) -> list[tuple[str, str]]:
        """Like `requests`, with the raw request target (query string included)."""
        with self._log_lock:
            return list(self._full_log)

    def _record(self, method: str, target: str) -> None:
        with self._log_lock:
            self._log.append((method, urllib.parse.urlsplit(target).path))
            self._full_log.append((method, target))
        with self._arrived:
            self._arrived.notify_all()

    def _hold_file(self) -> None:
        if not self.hold_files_for:
            return
        prefix = f"/api/datasets/{self.repo_id}/revision/"
        with self._arrived:
            came = self._arrived.wait_for(lambda: self.count("GET", prefix) >= self.hold_files_for, 60)
        with self._log_lock:
            self.held = came and self.held is not False  # False once any file was sent unheld

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()
            self._full_log.clear()

    def resolve_path(self, filename: str, rev: str | None = None) -> str:
        """The URL path of ``filename``'s resolve endpoint at ``rev`` (default: the commit sha)."""
        rev = self.sha if rev is None else rev
        return f"/datasets/{self.repo_id}/resolve/{urllib.parse.quote(rev, safe='')}/{filename}"

    def count(self, method: str, path_prefix: str = "") -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(path_prefix))

    def file_gets(self) -> dict[str, int]:
        """How many times each file's body was served (GET on any resolve URL), by repo path."""
        counts: dict[str, int] = {}
        prefix = f"/datasets/{self.repo_id}/resolve/"
        for method, path in self.requests:
            if method == "GET" and path.startswith(prefix):
                filename = path[len(prefix) :].split("/", 1)[1]
                counts[filename] = counts.get(filename, 0) + 1
        return counts

    # -- repo model --------------------------------------------------------------

    def _commit_for(self, rev: str) -> str | None:
        return self.sha if rev in (self.revision, self.sha) else None

    def _tree(self, under: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = f"{under}/" if under else ""
        dirs: set[str] = set()
        entries: list[dict[str, Any]] = []
        for path, f in self._files.items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :].split("/")
            # Every directory between `under` and the file; non-recursive listings only the first.
            for depth in range(1, len(rest) if recursive else min(2, len(rest))):
                dirs.add(prefix + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                entries.append({"type": "file", "oid": f.oid, "size": len(f.data), "path": path})
        entries += [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in dirs
        ]
        return sorted(entries, key=lambda e: str(e["path"]))


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 so httpx can keep connections alive, as it does against the real Hub.
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # the log is hub.requests
            pass

        # -- plumbing ------------------------------------------------------------

        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, head: bool = False
        ) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head and body:
                self.wfile.write(body)

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send(
                status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
            )

        def _error(
            self, status: int, code: str | None, message: str, *, head: bool = False, **extra: str
        ) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": message, **extra}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(), headers, head=head)

        def _authorized(self, head: bool) -> bool:
            if hub.token is None:
                return True
            auth = self.headers.get("Authorization")
            if auth is None:
                # What the Hub answers for a private repo to an anonymous client.
                self._error(401, "RepoNotFound", "Repository not found", head=head)
                return False
            if auth != f"Bearer {hub.token}":
                self._error(401, None, "Invalid credentials in Authorization header", head=head)
                return False
            return True

        def _split(self) -> tuple[list[str], dict[str, list[str]]]:
            url = urllib.parse.urlsplit(self.path)
            hub._record(self.command, self.path)
            parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
            return parts, urllib.parse.parse_qs(url.query)

        def _repo_rest(self, parts: list[str], start: int) -> list[str] | None:
            """parts[start:] must begin with the two components of repo_id."""
            owner, name = hub.repo_id.split("/")
            if parts[start : start + 2] != [owner, name]:
                return None
            return parts[start + 2 :]

        # -- verbs ---------------------------------------------------------------

        def do_HEAD(self) -> None:
            parts, _ = self._split()
            self._resolve(parts, head=True)

        def do_GET(self) -> None:
            parts, query = self._split()
            if parts[:2] == ["api", "datasets"]:
                self._api(parts, query)
            else:
                self._resolve(parts, head=False)

        def do_POST(self) -> None:
            parts, _ = self._split()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if not self._authorized(False):
                return
            rest = self._repo_rest(parts, 2) if parts[:2] == ["api", "datasets"] else None
            if rest is None or len(rest) != 2 or rest[0] != "paths-info":
                self._error(404, None, "not served by FakeHub")
                return
            if hub._commit_for(rest[1]) is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rest[1]}")
                return
            form = urllib.parse.parse_qs(body.decode())
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = list(json.loads(body or b"{}").get("paths", []))
            else:
                paths = form.get("paths", [])
            tree = {str(e["path"]): e for e in hub._tree("", recursive=True)}
            self._json(200, [tree[p] for p in paths if p in tree])

        # -- endpoints -----------------------------------------------------------

        def _api(self, parts: list[str], query: dict[str, list[str]]) -> None:
            if not self._authorized(False):
                return
            rest = self._repo_rest(parts, 2)
            if rest is None:
                self._error(401, "RepoNotFound", "Repository not found")
                return
            if len(rest) >= 2 and rest[0] == "revision":
                rev = "/".join(rest[1:])
                sha = hub._commit_for(rev)
                if sha is None:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                    return
                self._json(
                    200,
                    {
                        "_id": "fakehub",
                        "id": hub.repo_id,
                        "author": hub.repo_id.split("/")[0],
                        "sha": sha,
                        "private": hub.token is not None,
                        "disabled": False,
                        "gated": False,
                        "tags": [],
                        "siblings": [{"rfilename": p} for p in hub._files],
                    },
                )
                return
            if len(rest) >= 2 and rest[0] == "tree":
                rev, under = rest[1], "/".join(rest[2:])
                if hub._commit_for(rev) is None:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                    return
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                entries = hub._tree(under, recursive)
                if under and not entries:
                    self._error(404, "EntryNotFound", f"{under} does not exist on {rev}")
                    return
                start = int(query.get("cursor", ["0"])[0])
                page = entries[start : start + hub.page_size]
                headers: dict[str, str] = {}
                if start + hub.page_size < len(entries):
                    # The Hub paginates with an opaque cursor in a Link header; ours is an offset.
                    nxt = {k: v[0] for k, v in query.items()} | {"cursor": str(start + hub.page_size)}
                    url = (
                        f"{hub.endpoint}{urllib.parse.urlsplit(self.path).path}?{urllib.parse.urlencode(nxt)}"
                    )
                    headers["Link"] = f'<{url}>; rel="next"'
                self._json(200, page, headers)
                return
            self._error(404, None, "not served by FakeHub")

        def _resolve(self, parts: list[str], *, head: bool) -> None:
            if not self._authorized(head):
                return
            rest = self._repo_rest(parts, 1) if parts[:1] == ["datasets"] else None
            if rest is None or len(rest) < 3 or rest[0] != "resolve":
                self._error(404, "RepoNotFound" if rest is None else None, "not served by FakeHub", head=head)
                return
            rev, filename = rest[1], "/".join(rest[2:])
            sha = hub._commit_for(rev)
            if sha is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head=head)
                return
            f = hub._files.get(filename)
            if f is None:
                self._error(
                    404, "EntryNotFound", f"{filename} does not exist", head=head, **{"X-Repo-Commit": sha}
                )
                return
            data, status = f.data, 200
            headers = {
                "Content-Type": "application/octet-stream",
                "ETag": f'"{f.oid}"',
                "X-Repo-Commit": sha,
                "Accept-Ranges": "bytes",
            }
            rng = self.headers.get("Range")
            if not head and rng and rng.startswith("bytes="):
                first, _, last = rng[len("bytes=") :].partition("-")
                lo, hi = int(first or 0), int(last) if last else len(f.data) - 1
                data, status = f.data[lo : hi + 1], 206
                headers["Content-Range"] = f"bytes {lo}-{hi}/{len(f.data)}"
            if not head:
                hub._hold_file()
            if not head and hub.get_delay:
                time.sleep(hub.get_delay)
            # For HEAD, _send announces len(data) as Content-Length but writes no body.
            self._send(status, data, headers, head=head)

    return Handler


def iter_files(root: Path) -> Iterator[tuple[str, bytes]]:
    """(repo path, bytes) of every file under root, for byte-equality assertions."""
    for p in sorted(root.rglob("*")):
        if p.is_file():
            yield p.relative_to(root).as_posix(), p.read_bytes()
