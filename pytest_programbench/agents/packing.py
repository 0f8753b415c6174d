"""Pack: turn the engine's tar of ``/workspace`` into ``submission.tar.gz`` on the host.

Nothing runs inside the sandbox to pack it: an agent can leave a fork bomb, a fifo where
a packer would write, or a full pids table, and none of that may cost the workspace. The
engine's archive API (what ``docker cp`` uses) reads the container's filesystem from the
outside, even when the container is stopped, and we gzip its stream on the host.

The result is what GNU tar's ``tar -czf submission.tar.gz -C /workspace .`` writes (its
default ``gnu`` format: members ``./`` and ``./...``, ownership and modes kept, names
over 100 bytes as ``././@LongLink`` records, non-ASCII names as their raw bytes), so the
task image's own ``tar -xzf``, which the evaluator pipes it into, unpacks the same tree.
Every header is written afresh: the engine's archive carries PAX records (``path``,
``linkpath``) for long and non-ASCII names, and tarfile gives a member's old PAX record
priority over the name we give it, which put those files under ``./workspace/``.
Symlinks stay symlinks (nothing is followed); fifos and devices cannot be submitted
and are skipped, and listed. The packed size and the time taken are bounded, so a
20 GB file cannot fill the host's disk, and so is memory: members are not kept.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pytest_programbench import files
from pytest_programbench.engine.containers import ChunkReader

#: Member types a workspace may hold: files, directories, symlinks, hard links.
_KEPT_TYPES = frozenset(
    {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE}
)
_CHUNK = 1 << 20


class PackLimit(Exception):
    """The workspace went over a packing limit: ``kind`` is ``size`` or ``time``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True)
class Packed:
    path: Path
    members: int
    skipped: tuple[str, ...]  # special files left out (fifos, devices), as ./paths


class _StreamReader(ChunkReader):
    """The engine's chunk iterator as a file, checking the deadline as it reads."""

    def __init__(self, chunks: Iterator[bytes], deadline: float, seconds: float) -> None:
        super().__init__(chunks)
        self._deadline = deadline
        self._seconds = seconds

    def readinto(self, buffer: Any) -> int:
        if time.monotonic() > self._deadline:
            raise PackLimit("time", f"packing took longer than {self._seconds:.0f}s")
        return super().readinto(buffer)


class _Budget:
    """Counts bytes reaching the host file and stops the copy once over the limit."""

    def __init__(self, out: IO[bytes], limit: int) -> None:
        self._out = out
        self.limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.limit and self.written > self.limit:
            raise PackLimit("size", f"the packed workspace passed {self.limit} bytes")
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()


def pack_stream(chunks: Iterator[bytes], dest: Path, *, root: str, max_bytes: int, timeout: float) -> Packed:
    """Write the tar stream of directory ``root`` (as the engine names it) to ``dest`` as a gzip tar.

    Raises :class:`PackLimit` (and leaves no file at ``dest``) when the packed size passes
    ``max_bytes`` (0: no limit) or the work takes longer than ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    dest.parent.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    members = 0
    # durable: the archive may be an agent run that took hours; never a torn one under its name.
    with files.replacing(dest, durable=True) as partial:
        source = io.BufferedReader(_StreamReader(chunks, deadline, timeout), _CHUNK)
        with partial.open("wb") as raw:
            budget = _Budget(raw, max_bytes)
            # Level 6, gzip's and GNU tar's default: level 9 is several times slower for a few %.
            with (
                gzip.GzipFile(fileobj=budget, mode="wb", compresslevel=6, mtime=0) as zipped,
                tarfile.open(fileobj=source, mode="r|") as reader,
                tarfile.open(
                    fileobj=zipped, mode="w|", format=tarfile.GNU_FORMAT, encoding="utf-8"
                ) as writer,
            ):
                for member in reader:
                    forget_members(reader)
                    forget_members(writer)
                    name = _rebase(member.name, root)
                    if name is None:
                        continue
                    if member.type not in _KEPT_TYPES:
                        skipped.append(name)
                        continue
                    linkname = member.linkname
                    if member.type == tarfile.LNKTYPE:
                        target = _rebase(member.linkname, root)
                        if target is None:
                            skipped.append(name)
                            continue
                        linkname = target
                    data = reader.extractfile(member) if member.isreg() else None
                    writer.addfile(gnu_header(member, name, linkname), data)
                    members += 1
    return Packed(dest, members, tuple(skipped))


def forget_members(tar: tarfile.TarFile) -> None:
    """Drop what a stream-mode TarFile lists as it goes: a million-file archive would hold a
    million TarInfo objects (about 1 kB each) until it is closed.

    Private tarfile API (``TarFile.members``), used here and by submissions.scan_archive;
    tests/unit/test_private_apis.py checks it.
    """
    tar.members.clear()  # type: ignore[attr-defined]


def gnu_header(member: tarfile.TarInfo, name: str, linkname: str) -> tarfile.TarInfo:
    """A fresh header for ``member`` under ``name``, as GNU tar would write it: no PAX records.

    Only what ``tar -c`` stores by default is kept (no xattrs, no sub-second times).
    """
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE if member.type == tarfile.AREGTYPE else member.type
    info.mode = member.mode
    info.uid, info.gid = member.uid, member.gid
    info.uname, info.gname = member.uname, member.gname
    info.mtime = int(member.mtime)
    info.size = member.size if member.isreg() else 0
    info.linkname = linkname
    info.devmajor, info.devminor = member.devmajor, member.devminor
    return info


def _rebase(name: str, root: str) -> str | None:
    """``workspace/src/a.c`` -> ``./src/a.c`` (and ``workspace`` -> ``.``); None outside ``root``."""
    name = name.rstrip("/")
    if name == root:
        return "."
    if name.startswith(root + "/"):
        return "./" + name[len(root) + 1 :]
    return None
