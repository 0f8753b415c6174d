"""Likeness: how much of the given reference binary a file holds, however it was packed.

A byte-for-byte copy is a sha256 match, and one byte appended defeats that. Here the
reference is cut into pieces at the places where a short byte string of its own (its
*anchor*) occurs, so the cuts follow the content: a file cut the same way shares every
piece the reference has, except the few an insertion, a deletion or a padding touched.
The share of the reference found is the bytes of its pieces found, over all its
pieces' bytes (pieces too short or too uniform to say anything, such as runs of zero
padding, left out on both sides). A file is also decoded when its first bytes say it
is gzip, zlib, xz, lzma, bzip2, zstd or base64 text (nested up to :data:`MAX_DEPTH`
times), so a compressed copy counts as what it holds.

Everything runs at C speed (``bytes.split``, ``hash``, the decompressors), in memory
bounded by :data:`BLOCK` plus the decoded output's cap, because the audit reads every
large file a build leaves. Pure logic: no engine, no files beyond the streams it is given.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import collections
import hashlib
import lzma
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

#: Pieces shorter than this, or made of one byte value, match too much to mean anything.
MIN_PIECE = 64
#: A stretch with no anchor is cut into blocks of this size (counted from its start).
MAX_PIECE = 4096
#: Wanted mean distance between anchors in the reference: about 1/256 of it, within these
#: bounds (a small reference still gets enough pieces for one cut to cost little).
TARGET_PIECE = (128, 1024)
#: Streams are read in blocks of this size.
BLOCK = 1 << 22
#: Nested encodings tried (base64 of gzip of ... is two).
MAX_DEPTH = 3
#: A file holding at least this share of the reference is reported as holding it: on the
#: realistic fixtures a copy cut, padded, spliced, compressed or encoded holds 83% (100
#: bytes cut from the 14 KiB C reference) to 100%; other programs hold little: a plain
#: build of a fixture's own source 0.3% (Rust), 3.8% (C), 32% (Go: the runtime both link).
SHARE_THRESHOLD = 0.75
#: The same for the executable the submission built (wherever it is seen): a build of the
#: reference's very source with its compiler and flags, unstripped, holds 83% of it (the
#: self-test task), which no agent rebuilding from the binary gets near; a copy with bytes
#: appended holds 99% or more.
BUILT_SHARE_THRESHOLD = 0.95
#: Files smaller than this fraction of the reference are not examined (a compressed
#: binary is rarely below a fifth of its size; a tenth leaves room).
MIN_FILE_FRACTION = 0.1

_GZIP, _XZ, _BZIP2, _ZSTD = b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh", b"\x28\xb5\x2f\xfd"
_ZLIB = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")
_LZMA_ALONE = b"\x5d\x00\x00"
_BASE64_HEAD = re.compile(rb"^[A-Za-z0-9+/=\r\n]{64,}$")
_BASE64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


@dataclass(frozen=True)
class Match:
    """How much of the reference one stream holds, and through which decoding."""

    share: float
    form: str  # "" for the bytes as they are; else e.g. "gzip", "base64, then gzip"
    sha256: str  # of the bytes as they are (the outermost form)

    def describe(self) -> str:
        how = f" once decoded ({self.form})" if self.form else ""
        return f"{self.share:.0%} of the reference's content{how}"


class Reference:
    """The given binary, cut into content-defined pieces (built once per task image)."""

    def __init__(self, data: bytes) -> None:
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.anchor = choose_anchor(data)
        self.pieces: dict[int, int] = {}
        for piece in cut(iter([data]), self.anchor):
            if _significant(piece):
                self.pieces.setdefault(hash(piece), len(piece))
        self.total = sum(self.pieces.values())

    @property
    def min_file_size(self) -> int:
        return max(MIN_PIECE, int(self.size * MIN_FILE_FRACTION))

    def share_of(self, blocks: Iterable[bytes]) -> float:
        """The share of the reference's content that the stream of ``blocks`` holds."""
        if not self.total:
            return 0.0
        found = 0
        wanted = dict(self.pieces)
        for piece in cut(iter(blocks), self.anchor):
            length = wanted.pop(hash(piece), None)
            if length is not None:
                found += length
                if not wanted:
                    break
        return found / self.total

    def examine(self, read: Callable[[int], bytes], *, limit: int = 1 << 30) -> Match:
        """How much of the reference the stream ``read`` returns holds, as it is or decoded.

        The stream is read once; its first block decides which decodings are tried. Each
        decoding's output is capped (``decoded_cap``), so a compression bomb costs little.
        """
        hasher = hashlib.sha256()
        first = read(BLOCK)
        kept = [first]  # the bytes a decoder needs again, up to the cap
        kept_size = len(first)
        cap = self.decoded_cap

        def blocks() -> Iterator[bytes]:
            nonlocal kept_size
            total = 0
            block = first
            while block and total < limit:
                hasher.update(block)
                total += len(block)
                yield block
                block = read(BLOCK)
                if block and kept_size < cap:
                    kept.append(block)
                    kept_size += len(block)

        stream = blocks()
        plain = self.share_of(stream)
        for _ in stream:  # the rest, for the sha256 (share_of stops early on a full match)
            pass
        best = Match(plain, "", hasher.hexdigest())
        if best.share >= 0.999:
            return best
        data = b"".join(kept)[:cap]
        for share, form in self._decoded(data, depth=1):
            if share > best.share:
                best = Match(share, form, best.sha256)
        return best

    @property
    def decoded_cap(self) -> int:
        """Bytes of a stream kept for decoding, and of each decoder's output."""
        return 4 * self.size + (1 << 20)

    def _decoded(self, data: bytes, *, depth: int) -> Iterator[tuple[float, str]]:
        for name, output in decodings(data, self.decoded_cap):
            yield self.share_of([output]), name
            if depth < MAX_DEPTH:
                for share, inner in self._decoded(output, depth=depth + 1):
                    yield share, f"{name}, then {inner}"


def cut(blocks: Iterator[bytes], anchor: bytes) -> Iterator[bytes]:
    """Pieces of the concatenated ``blocks``: one starts at every ``anchor``, long ones in blocks.

    The same bytes give the same pieces wherever they sit in a stream and however the
    stream is split into blocks (the anchor cannot overlap itself, see choose_anchor).
    """
    carry = b""  # the piece in progress: from the last anchor seen (or the start) on
    for block in blocks:
        data = carry + block
        last = data.rfind(anchor, 1)
        if last == -1:
            carry = data
            if len(carry) > 4 * BLOCK:  # no anchor for a long way: its first blocks cannot change
                keep = len(carry) % MAX_PIECE + MAX_PIECE
                yield from _blocks(carry[:-keep])
                carry = carry[-keep:]
            continue
        yield from _pieces(data[:last], anchor)
        carry = data[last:]
    if carry:
        yield from _pieces(carry, anchor)


def _pieces(data: bytes, anchor: bytes) -> Iterator[bytes]:
    first, *rest = data.split(anchor)
    if first:
        yield from _blocks(first)
    for part in rest:
        yield from _blocks(anchor + part)


def _blocks(piece: bytes) -> Iterator[bytes]:
    if len(piece) <= MAX_PIECE:
        yield piece
        return
    for start in range(0, len(piece), MAX_PIECE):
        yield piece[start : start + MAX_PIECE]


def _significant(piece: bytes) -> bool:
    return len(piece) >= MIN_PIECE and piece.count(piece[:1]) * 2 < len(piece)


def choose_anchor(data: bytes) -> bytes:
    """A 3- or 2-byte string of ``data`` that cuts it into many pieces of useful size.

    Candidates are the strings whose count in a few samples spread over the data is
    nearest to one per :func:`target_piece` bytes; the one giving the most pieces between
    :data:`MIN_PIECE` and :data:`MAX_PIECE` bytes in those samples wins (a string that is
    frequent but clustered, say in one vectorised loop, gives few). The choice depends on
    the data alone, so the same reference always gives the same anchor.
    """
    target = target_piece(len(data))
    step = max(1, len(data) // 8)
    windows = [data[i : i + (1 << 16)] for i in range(0, len(data), step)][:8]
    heads = [w[: 1 << 14] for w in windows]
    expected = sum(len(h) for h in heads) / target
    best, best_score = b"\xff\x00\xfe", -1
    for width in (3, 2):
        counts: collections.Counter[tuple[int, ...]] = collections.Counter()
        for head in heads:  # tuples from zip: counted at C speed, no slice per position
            counts.update(zip(*(head[k:] for k in range(width)), strict=False))  # shorter tails end it
        # A string that can overlap itself (xx, xyx) would make where a stream is cut matter.
        near = [g for g, n in counts.items() if g[0] != g[-1] and expected / 4 <= n <= expected * 4]
        near = near or [g for g in counts if g[0] != g[-1]]
        near.sort(key=lambda g: (abs(counts[g] - expected), g))
        for gram in (bytes(g) for g in near[:12]):
            score = sum(MIN_PIECE <= len(p) <= MAX_PIECE for w in windows for p in w.split(gram))
            if score > best_score:
                best, best_score = gram, score
    return best


def target_piece(size: int) -> int:
    low, high = TARGET_PIECE
    return max(low, min(high, size // 256))


def decodings(data: bytes, cap: int) -> Iterator[tuple[str, bytes]]:
    """Each way ``data`` decodes that its first bytes announce: (name, output up to ``cap``)."""
    head = data[:8]
    tries: list[tuple[str, Callable[[bytes, int], bytes]]] = []
    if head.startswith(_GZIP):
        tries.append(("gzip", _gzip))
    if head[:2] in _ZLIB:
        tries.append(("zlib", _zlib))
    if head.startswith(_XZ):
        tries.append(("xz", _xz))
    if head.startswith(_LZMA_ALONE):
        tries.append(("lzma", _lzma_alone))
    if head.startswith(_BZIP2):
        tries.append(("bzip2", _bzip2))
    if head.startswith(_ZSTD):
        tries.append(("zstd", _zstd))
    if _BASE64_HEAD.match(data[:4096]):
        tries.append(("base64", _base64))
    for name, decode in tries:
        try:
            output = decode(data, cap)
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, binascii.Error):
            continue
        if output:
            yield name, output


def _gzip(data: bytes, cap: int) -> bytes:
    return _zlib_like(data, cap, 16 + zlib.MAX_WBITS)


def _zlib(data: bytes, cap: int) -> bytes:
    return _zlib_like(data, cap, zlib.MAX_WBITS)


def _zlib_like(data: bytes, cap: int, wbits: int) -> bytes:
    out = bytearray()
    while data and len(out) < cap:  # gzip members one after another, as gunzip reads them
        d = zlib.decompressobj(wbits)
        out += d.decompress(data, cap - len(out))
        if not d.eof:
            break
        data = d.unused_data
    return bytes(out)


def _xz(data: bytes, cap: int) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data, cap)


def _lzma_alone(data: bytes, cap: int) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data, cap)


def _bzip2(data: bytes, cap: int) -> bytes:
    return bz2.BZ2Decompressor().decompress(data, cap)


def _zstd(data: bytes, cap: int) -> bytes:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a declared dependency
        return b""
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    out = bytearray()
    while len(out) < cap:
        chunk = reader.read(min(1 << 20, cap - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _base64(data: bytes, cap: int) -> bytes:
    text = _BASE64_JUNK.sub(b"", data[: cap * 4 // 3 + 4])
    return base64.b64decode(text[: len(text) // 4 * 4])[:cap]
