"""likeness.Reference: how much of a real binary a stream holds, however it was changed or packed.

The reference here is the machine's own bash (a real ELF binary of a few hundred KiB or
more), the honest stand-in another real binary: what the audit compares every large file
the build leaves with, and the share it reports.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import lzma
import os
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from pytest_programbench.scoring import likeness
from pytest_programbench.scoring.likeness import SHARE_THRESHOLD, Reference


def real_binary(name: str) -> bytes:
    found = shutil.which(name)
    assert found, f"{name} is on every machine the suite runs on"
    return Path(os.path.realpath(found)).read_bytes()


@pytest.fixture(scope="module")
def binary() -> bytes:
    return real_binary("bash")


@pytest.fixture(scope="module")
def reference(binary: bytes) -> Reference:
    return Reference(binary)


def share(reference: Reference, data: bytes) -> likeness.Match:
    return reference.examine(io.BytesIO(data).read)


def in_tar(name: str, data: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_a_copy_cut_padded_or_spliced_still_holds_most_of_the_reference(
    reference: Reference, binary: bytes
) -> None:
    middle = len(binary) // 2
    changed = {
        "copy": binary,
        "padded": binary + b"\0PADDING" * 512,
        "prefixed": b"#!junk\n" * 100 + binary,
        "cut": binary[:middle] + binary[middle + 4000 :],
        "spliced": binary[:1000] + b"XYZ" + binary[1000:middle] + b"inserted" + binary[middle:],
    }
    for name, data in changed.items():
        found = share(reference, data)
        assert found.share >= 0.9 and found.form == "", (name, found)
        assert found.share >= SHARE_THRESHOLD
    assert share(reference, binary).sha256 == reference.sha256


def test_compressed_and_encoded_forms_are_read_as_what_they_hold(reference: Reference, binary: bytes) -> None:
    forms = {
        "gzip": gzip.compress(binary, mtime=0),
        "zlib": zlib.compress(binary),
        "xz": lzma.compress(binary, preset=0),
        "lzma": lzma.compress(binary, format=lzma.FORMAT_ALONE, preset=0),
        "bzip2": bz2.compress(binary, 1),
        "zstd": zstandard.ZstdCompressor().compress(binary),
        "base64": base64.encodebytes(binary),
        "base64, then gzip": base64.b64encode(gzip.compress(binary)),
        "gzip, then base64": gzip.compress(base64.encodebytes(binary)),
    }
    for form, data in forms.items():
        found = share(reference, data)
        assert (found.form, found.share >= 0.99) == (form, True), found
    # A tarball of it: the binary sits in the decoded tar between headers.
    found = share(reference, in_tar("usr/bin/tool", binary + b"more"))
    assert found.form == "gzip" and found.share >= 0.99
    assert "once decoded (gzip)" in found.describe()


def test_other_programs_and_an_xored_copy_hold_little_of_it(reference: Reference, binary: bytes) -> None:
    for other in ("ls", "env", "tar"):
        assert share(reference, real_binary(other)).share < SHARE_THRESHOLD / 2, other
    assert share(reference, bytes(b ^ 0x5A for b in binary)).share < 0.05
    assert share(reference, b"\0" * len(binary)).share == 0.0
    assert share(reference, b"").share == 0.0


def test_pieces_do_not_depend_on_where_the_stream_is_split(binary: bytes) -> None:
    anchor = likeness.choose_anchor(binary)
    assert anchor[0] != anchor[-1] and len(anchor) in (2, 3)  # it cannot overlap itself
    whole = list(likeness.cut(iter([binary]), anchor))
    assert b"".join(whole) == binary

    def blocks(size: int) -> Iterator[bytes]:
        return iter([binary[i : i + size] for i in range(0, len(binary), size)])

    for size in (997, 4096, 100_003):
        assert list(likeness.cut(blocks(size), anchor)) == whole, size
    assert all(len(p) <= likeness.MAX_PIECE for p in whole)


def test_the_anchor_depends_on_the_data_alone(binary: bytes) -> None:
    assert likeness.choose_anchor(binary) == likeness.choose_anchor(bytes(binary))
    assert Reference(bytes(binary)).pieces == Reference(binary).pieces


def test_a_compression_bomb_is_read_only_up_to_the_cap(reference: Reference) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))
    outputs = dict(likeness.decodings(bomb, reference.decoded_cap))
    assert len(outputs["gzip"]) == reference.decoded_cap
    assert share(reference, bomb).share == 0.0


def test_text_that_only_looks_like_base64_or_a_magic_number_is_no_error(reference: Reference) -> None:
    assert share(reference, b"\x1f\x8b" + b"not gzip at all" * 100).share == 0.0
    assert share(reference, b"QUJD" * 5000).share == 0.0
    assert list(likeness.decodings(b"BZh9 not bzip2", 1 << 20)) == []


def test_small_references_get_small_pieces() -> None:
    assert likeness.target_piece(14_000) == 128
    assert likeness.target_piece(400_000) == 1024
    assert likeness.target_piece(100 << 20) == 1024
