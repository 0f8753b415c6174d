"""Submissions: find an instance's ``submission.tar.gz`` and check it unpacks.

The evaluator streams the archive straight into the task container's ``tar -xzf``
(GNU tar and gzip); when they fail, it raises and ``programbench eval`` scores the
instance 0. :func:`scan_archive` reads the archive to its end first, as they would,
with memory that does not grow with the number of members, and names the byte or the
member they would stop at: a file that is not gzip, a gzip stream cut short or failing
its check, bytes after it other than zeros, a tar header that does not check out, a
member named with ``..``, a hard link to nothing unpacked before it, a member under a
symlink that leaves the workspace. Those are the submission's own faults
(``invalid_submission``, score 0 like the official tool's); what tar accepts (absolute
names, which it unpacks under the workspace; zero padding; concatenated gzip members;
no end-of-archive blocks) passes.
"""

from __future__ import annotations

import io
import posixpath
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from pytest_programbench import files
from pytest_programbench.agents.packing import forget_members
from pytest_programbench.errors import NoSubmission, SubmissionInvalid, SubmissionTooLarge

ARCHIVE_NAME = "submission.tar.gz"
#: A replayed archive may unpack to this many times --pb-max-submission: source compresses
#: ~5x, and a gzip bomb (12.5 MB -> 12 GB) must stop long before the disk does.
UNPACKED_FACTOR = 8
_GZIP_MAGIC = b"\x1f\x8b"
_READ = 1 << 16
_OUT = 1 << 18  # decompressed bytes per step: a bomb's chunk does not unpack in one go
_RING = 1 << 16  # decompressed bytes kept behind the reader, to see where tar stopped
#: Symlinks out of the workspace remembered to check what lies under them; past this many,
#: the task image's own tar is left to refuse what goes through one (it does).
_MAX_ESCAPING_LINKS = 10_000


class ArchiveFault(Exception):
    """Why GNU tar and gzip in the task image would refuse the archive: one sentence."""


def submission_path(run_dir: Path, instance_id: str) -> Path:
    """Where a run directory keeps an instance's archive (the layout `programbench eval` reads)."""
    return run_dir / instance_id / ARCHIVE_NAME


def find_submission(run_dir: Path, instance_id: str) -> Path:
    path = submission_path(run_dir, instance_id)
    if not path.is_file():
        raise NoSubmission(instance_id, str(run_dir))
    return path


def check_archive(path: Path, max_unpacked: int = 0) -> None:
    """Raise SubmissionInvalid unless ``path`` unpacks as the evaluator unpacks it.

    With ``max_unpacked`` (bytes), raise SubmissionTooLarge as soon as the members'
    declared sizes pass it: the check stops before decompressing a bomb, and the
    evaluator never unpacks it.
    """

    def too_large() -> None:
        raise SubmissionTooLarge(
            f"submission {path} unpacked", max_unpacked, f"it is left untouched at {path}"
        )

    try:
        scan_archive(path, max_unpacked, too_large)
    except ArchiveFault as fault:
        raise SubmissionInvalid(str(path), str(fault)) from None
    except OSError as exc:
        raise SubmissionInvalid(str(path), f"it cannot be read ({exc})") from None


def scan_archive(path: Path, max_unpacked: int = 0, too_large: Any = None) -> int:
    """Read ``path`` to its end as ``tar -xzf`` in the task image would; return its member count.

    Raises ArchiveFault naming the byte offset (of the file, or of the unpacked tar) or
    the member at which GNU tar or gzip would fail. Memory stays flat: members are not
    kept, only the hard links' targets (read again in a second pass when there are any)
    and symlinks that leave the workspace.
    """
    links: dict[str, tuple[int, str, str, int]] = {}  # target -> (first link's index, name, linkname, offset)
    escaping: dict[str, str] = {}  # symlink -> its target
    total = members = 0
    with path.open("rb") as raw:
        gunzip = _Gunzip(raw)
        for index, member in enumerate(_members(gunzip)):
            members += 1
            total += member.size + tarfile.BLOCKSIZE
            if max_unpacked and total > max_unpacked and too_large is not None:
                too_large()
            name = _canonical(member.name)
            where = f"member {member.name!r} (at byte {member.offset} of the unpacked tar)"
            if ".." in member.name.split("/"):
                raise ArchiveFault(f"{where} has a '..' in its name, which tar refuses to unpack")
            if name == "." and not member.isdir():
                raise ArchiveFault(f"{where} has an empty name, which tar unpacks over the workspace itself")
            if escaping:
                _check_not_under(escaping, name, where)
            if member.issym() and len(escaping) < _MAX_ESCAPING_LINKS and _escapes(member.linkname):
                escaping[name] = member.linkname
            elif member.islnk():
                target = _canonical(member.linkname, link_target=True)
                links.setdefault(target, (index, member.name, member.linkname, member.offset))
        gunzip.drain()
    if links:
        _check_links(path, links)
    return members


def _members(gunzip: _Gunzip) -> Any:
    """The tar's members in order, none kept; ArchiveFault where tar would stop with an error."""
    try:
        with tarfile.open(fileobj=gunzip, mode="r|", encoding="utf-8") as tar:
            while True:
                forget_members(tar)
                member = tar.next()
                if member is None:
                    break
                yield member
            stopped = tar.offset
    except tarfile.ReadError as exc:
        if str(exc) == "empty file":  # a gzip of nothing: tar unpacks nothing, and succeeds
            return
        if str(exc) == "unexpected end of data":
            raise ArchiveFault(
                f"the unpacked tar ends at byte {gunzip.produced} inside a member's data: the archive is cut "
                "short"
            ) from None
        raise ArchiveFault(
            f"the gzip data does not hold a tar archive ({exc} at byte 0 of the unpacked tar)"
        ) from None
    except tarfile.TarError as exc:
        raise ArchiveFault(
            f"a tar header near byte {gunzip.produced} of the unpacked tar is broken ({exc})"
        ) from None
    # tarfile stops without a word at any header it cannot read; tar stops quietly only at the
    # end of the data, at a header cut short by it, or at an end-of-archive (zero) block.
    block = gunzip.block_at(stopped)
    if len(block) == tarfile.BLOCKSIZE and block.count(0) != tarfile.BLOCKSIZE:
        raise ArchiveFault(
            f"the tar header at byte {stopped} of the unpacked tar does not check out (bad checksum): "
            "tar skips it and fails"
        )


def _canonical(name: str, *, link_target: bool = False) -> str:
    """``name`` as tar unpacks it, relative to the workspace (``./a//b`` -> ``a/b``, ``/etc`` -> ``etc``).

    tar drops leading slashes; of a hard link's target it drops everything up to its last
    ``..`` too (GNU tar's safer_name_suffix).
    """
    if link_target:
        parts = name.split("/")
        if ".." in parts:
            name = "/".join(parts[len(parts) - parts[::-1].index("..") :])
    name = name.lstrip("/")
    return posixpath.normpath(name) if name else "."


def _escapes(target: str) -> bool:
    """A symlink tar deems dangerous (absolute, or with ``..``): made last, a placeholder until then."""
    return target.startswith("/") or ".." in target.split("/")


def _check_not_under(escaping: dict[str, str], name: str, where: str) -> None:
    parts = name.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        if parent in escaping:
            raise ArchiveFault(
                f"{where} lies under the symlink {parent!r} (-> {escaping[parent]!r}), which leaves the "
                "workspace: tar does not unpack through it"
            )


def _check_links(path: Path, links: dict[str, tuple[int, str, str, int]]) -> None:
    """Second pass: every hard link's target is a non-directory member unpacked before the link."""
    first: dict[str, int] = {}
    with path.open("rb") as raw:
        for index, member in enumerate(_members(_Gunzip(raw))):
            name = _canonical(member.name)
            if name in links and name not in first and not member.isdir():
                first[name] = index
    for target, (index, name, linkname, offset) in links.items():
        if first.get(target, index) >= index:
            raise ArchiveFault(
                f"hard link {name!r} (at byte {offset} of the unpacked tar) points to {linkname!r}, and no "
                f"member before it is a file tar would have unpacked there ({target!r}): tar cannot link it"
            )


class _Gunzip(io.RawIOBase):
    """A file's gzip data, decompressed as ``gzip -d`` reads it.

    Concatenated members are one stream; zero bytes after the last member are padding;
    anything else after it, a member cut short, or one failing its CRC or length check
    is an ArchiveFault naming the byte of the file.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._pos = 0  # bytes of the file handed to a decompressor (or found to be padding)
        self._input = b""  # bytes of the file read and not yet handed on
        self._inflate: Any = None  # the current member's decompressor
        self._member_start = 0
        self._members = 0
        self._out = memoryview(b"")
        self._done = False
        self.produced = 0  # decompressed bytes handed out
        self._ring = bytearray()  # the last _RING of them

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out and not self._done:
            self._out = memoryview(self._step())
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._ring += self._out[:n]
        if len(self._ring) > 2 * _RING:
            del self._ring[: len(self._ring) - _RING]
        self._out = self._out[n:]
        self.produced += n
        return n

    def block_at(self, offset: int) -> bytes:
        """The (up to) 512 decompressed bytes from ``offset``, which must be recent."""
        start = self.produced - len(self._ring)
        if offset < start:
            return b""
        return bytes(self._ring[offset - start : offset - start + tarfile.BLOCKSIZE])

    def drain(self) -> None:
        """Read to the end: the rest of the tar, then the gzip trailer and what follows it."""
        while self.read(_OUT):
            pass

    def _more(self) -> bytes:
        if not self._input:
            self._input = self._raw.read(_READ)
        data, self._input = self._input, b""
        return data

    def _step(self) -> bytes:
        if self._inflate is None:
            return self._start_member()
        if self._inflate.unconsumed_tail:
            data = self._inflate.unconsumed_tail
        else:
            data = self._more()
            if not data:
                raise ArchiveFault(
                    f"the gzip data ends at byte {self._pos} (the end of the file) inside gzip member "
                    f"{self._members}, which began at byte {self._member_start}: the file is cut short "
                    "(its 8-byte CRC and length trailer, or more, is missing)"
                )
        before = len(data)
        try:
            out = self._inflate.decompress(data, _OUT)
        except zlib.error as exc:
            meaning = {
                "incorrect data check": "its CRC does not match the data",
                "incorrect length check": "its length field does not match the data",
            }.get(str(exc).split(": ")[-1].split(" (")[0].strip(), "the compressed data is corrupt")
            raise ArchiveFault(
                f"gzip member {self._members} (from byte {self._member_start}) fails before byte "
                f"{self._pos + before}: {meaning} ({exc})"
            ) from None
        left = len(self._inflate.unconsumed_tail) + len(self._inflate.unused_data)
        self._pos += before - left
        if self._inflate.eof:
            self._input = self._inflate.unused_data
            self._inflate = None
        return bytes(out)

    def _start_member(self) -> bytes:
        head = self._more()
        while 0 < len(head) < 2:
            more = self._raw.read(_READ)
            if not more:
                break
            head += more
        if not head:
            if self._members == 0:
                raise ArchiveFault("the file is empty, not gzip data")
            self._done = True
            return b""
        if head[:2] != _GZIP_MAGIC:
            if self._members == 0:
                raise ArchiveFault(f"the file is not gzip data (it begins with {head[:16]!r})")
            self._padding(head)
            return b""
        self._input = head
        self._members += 1
        self._member_start = self._pos
        self._inflate = zlib.decompressobj(31)  # gzip framing, header and trailer checked
        return b""

    def _padding(self, data: bytes) -> None:
        """After the last member only zero bytes may follow (gzip skips them, and fails on anything else)."""
        while data:
            stripped = data.lstrip(b"\0")
            if stripped:
                at = self._pos + len(data) - len(stripped)
                raise ArchiveFault(
                    f"bytes that are not gzip data follow the gzip stream, from byte {at} of the file "
                    f"({stripped[:16]!r}...): gzip stops with 'trailing garbage'"
                )
            self._pos += len(data)
            data = self._raw.read(_READ)
        self._done = True


def place_submission(source: Path, instance_dir: Path) -> Path:
    """Put the archive at ``<instance_dir>/submission.tar.gz`` (no copy when already there)."""
    target = instance_dir / ARCHIVE_NAME
    if target.exists() and target.resolve() == source.resolve():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with files.replacing(target, durable=True) as partial:
        shutil.copyfile(source, partial)
    return target
