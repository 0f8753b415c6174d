"""Submission archives, honest and broken, and what the task image's tar makes of each.

Shared by the pure tier (tests/unit/test_archive_scan.py: what submissions.scan_archive says)
and the real engine (tests/test_archive_faults.py: what GNU tar and gzip in the task image
say, and what the evaluator scores). Each case is the self-test's correct solution with one
thing changed. ``FAULTS`` maps a case to words of the scan's message; ``ACCEPTED`` cases unpack
(GNU tar 1.34 exits 0 on them, as checked in the task image).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable

from pytest_programbench import selftest

COMPILE_SH = b"#!/bin/sh\nset -e\ngcc -O2 -o executable rpncalc.c\n"


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.uid = info.gid = 1000
    info.uname = info.gname = "agent"
    return info


def tar_of(
    *extra: tarfile.TarInfo, solution: bool = True, end: bool = True, contents: dict[str, bytes] | None = None
) -> bytes:
    """The solution's tar (``./``, ``./compile.sh``, ``./rpncalc.c``), then ``extra`` members
    (their data ``contents[name]``, else ``x`` bytes)."""
    raw = io.BytesIO()
    tar = tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT)  # noqa: SIM115 (closed only with an end)
    members = []
    if solution:
        source = selftest.reference_source().encode()
        members = [
            (_info("./", tarfile.DIRTYPE), b""),
            (_info("./compile.sh", size=len(COMPILE_SH)), COMPILE_SH),
        ]
        members[1][0].mode = 0o755
        members.append((_info("./rpncalc.c", size=len(source)), source))
    for info in extra:
        members.append((info, (contents or {}).get(info.name, b"x" * info.size)))
    for info, data in members:
        tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    if end:
        tar.close()
        return raw.getvalue()
    tar.fileobj.flush()
    return raw.getvalue()  # no end-of-archive blocks: tar accepts that


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def _last_header() -> int:
    with tarfile.open(fileobj=io.BytesIO(tar_of())) as tar:
        return [m.offset for m in tar][-1]


GOOD = tar_of()

#: case -> the archive's bytes, built on demand.
BUILD: dict[str, Callable[[], bytes]] = {
    # accepted
    "correct": lambda: gz(GOOD),
    "concatenated_gzip": lambda: gz(GOOD[:1024]) + gz(GOOD[1024:]),
    "zero_padding": lambda: gz(GOOD) + b"\0" * 1024,
    "no_end_blocks": lambda: gz(tar_of(end=False)),
    "absolute_member": lambda: gz(tar_of(_info("/tmp/abs", size=1))),
    "escaping_symlink": lambda: gz(tar_of(_info("./shadow", tarfile.SYMTYPE, linkname="/etc/shadow"))),
    "hard_link": lambda: gz(tar_of(_info("./copy.c", tarfile.LNKTYPE, linkname="./rpncalc.c"))),
    "hard_link_dotdot_to_member": lambda: gz(
        tar_of(_info("./copy.c", tarfile.LNKTYPE, linkname="../rpncalc.c"))
    ),
    "empty_tar": lambda: gz(b""),
    "unknown_type": lambda: gz(tar_of(_info("./weird", b"Z", size=1))),
    # faults of the gzip layer
    "not_gzip": lambda: b"this is not a gzip archive\n",
    "empty_file": lambda: b"",
    "no_trailer": lambda: gz(GOOD)[:-8],
    "trailing_garbage": lambda: gz(GOOD) + b"garbage after the stream\n",
    "zeros_then_garbage": lambda: gz(GOOD) + b"\0" * 100 + b"garbage",
    "crc_mismatch": lambda: _flip(gz(GOOD), len(gz(GOOD)) - 8),
    # faults of the tar layer
    "first_header_checksum": lambda: gz(_flip(GOOD, 148)),
    "later_header_checksum": lambda: gz(_flip(GOOD, _last_header() + 148)),
    "cut_in_member_data": lambda: gz(GOOD[:1500]),
    "dotdot_member": lambda: gz(tar_of(_info("./../evil", size=1))),
    "inner_dotdot_member": lambda: gz(tar_of(_info("./a/../../evil", size=1))),
    "empty_name": lambda: gz(tar_of(_info("", size=1), solution=False)),
    "hard_link_outside": lambda: gz(tar_of(_info("./h", tarfile.LNKTYPE, linkname="../../etc/passwd"))),
    "hard_link_absolute": lambda: gz(tar_of(_info("./h", tarfile.LNKTYPE, linkname="/etc/passwd"))),
    "hard_link_forward": lambda: gz(
        tar_of(_info("./h", tarfile.LNKTYPE, linkname="./later"), _info("./later", size=1))
    ),
    "hard_link_to_directory": lambda: gz(tar_of(_info("./h", tarfile.LNKTYPE, linkname="./"))),
    "under_escaping_symlink": lambda: gz(
        tar_of(_info("./d", tarfile.SYMTYPE, linkname="/tmp"), _info("./d/x", size=1))
    ),
}

#: What the scan must say of each fault (words of its message: the byte or member it names).
FAULTS: dict[str, str] = {
    "not_gzip": "the file is not gzip data (it begins with b'this is not a gz')",
    "empty_file": "the file is empty",
    "no_trailer": "the file is cut short (its 8-byte CRC and length trailer",
    "trailing_garbage": "follow the gzip stream, from byte",
    "zeros_then_garbage": "follow the gzip stream, from byte",
    "crc_mismatch": "its CRC does not match the data",
    "first_header_checksum": "bad checksum at byte 0 of the unpacked tar",
    "later_header_checksum": "does not check out (bad checksum)",
    "cut_in_member_data": "ends at byte 1500 inside a member's data",
    "dotdot_member": "member './../evil' (at byte",
    "inner_dotdot_member": "member './a/../../evil' (at byte",
    "empty_name": "member '' (at byte 0 of the unpacked tar) has an empty name",
    "hard_link_outside": "hard link './h' (at byte",
    "hard_link_absolute": "points to '/etc/passwd'",
    "hard_link_forward": "points to './later'",
    "hard_link_to_directory": "points to './'",
    "under_escaping_symlink": "lies under the symlink 'd' (-> '/tmp')",
}
ACCEPTED = [case for case in BUILD if case not in FAULTS]

#: A fault the scan leaves to the task image's own tar (it would need every member's name):
#: a member under a name an earlier member made a regular file. The evaluator's tar refuses it.
LEFT_TO_TAR = {"file_as_directory": lambda: gz(tar_of(_info("./f", size=1), _info("./f/g", size=1)))}

#: Honest archives the official evaluator itself cannot score: it decodes each step's output as
#: text, and this compile.sh prints a byte that is not UTF-8 before building correctly.
UNDECODABLE_COMPILE_SH = b"#!/bin/sh\nset -e\nprintf 'caf\\351 latin-1\\n'\ngcc -O2 -o executable rpncalc.c\n"


def undecodable_build_output() -> bytes:
    source = selftest.reference_source().encode()
    return gz(
        tar_of(
            _info("./", tarfile.DIRTYPE),
            _with_mode(_info("./compile.sh", size=len(UNDECODABLE_COMPILE_SH)), 0o755),
            _info("./rpncalc.c", size=len(source)),
            solution=False,
            contents={"./compile.sh": UNDECODABLE_COMPILE_SH, "./rpncalc.c": source},
        )
    )


def _with_mode(info: tarfile.TarInfo, mode: int) -> tarfile.TarInfo:
    info.mode = mode
    return info
