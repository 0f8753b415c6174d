"""Packing's pure part: the engine's tar of /workspace in, programbench's layout out, bounded."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_programbench.packing import PackLimit, pack_stream


def engine_tar(*members: tuple[tarfile.TarInfo, bytes]) -> Iterator[bytes]:
    """A tar as the engine's archive API sends it for /workspace, in small chunks."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = buffer.getvalue()
    return iter([raw[i : i + 4096] for i in range(0, len(raw), 4096)])


def member(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def test_layout_is_tar_c_workspace_dot(tmp_path: Path) -> None:
    chunks = engine_tar(
        (member("workspace", tarfile.DIRTYPE, uid=1000), b""),
        (member("workspace/src", tarfile.DIRTYPE), b""),
        (member("workspace/src/a.c", uid=1000, mode=0o600), b"int main;"),
        (member("workspace/src/b.c", tarfile.LNKTYPE, linkname="workspace/src/a.c"), b""),
        (member("workspace/up", tarfile.SYMTYPE, linkname="../../etc/passwd"), b""),
        (member("workspace/fifo", tarfile.FIFOTYPE), b""),
        (member("workspace/tty", tarfile.CHRTYPE, devmajor=5, devminor=0), b""),
        (member("elsewhere/x"), b"not ours"),
    )
    packed = pack_stream(chunks, tmp_path / "s.tar.gz", root="workspace", max_bytes=0, timeout=60)
    assert packed.skipped == ("./fifo", "./tty") and packed.members == 5
    with tarfile.open(packed.path, "r:gz") as tar:
        got = {m.name: m for m in tar}
        assert tar.extractfile("./src/a.c").read() == b"int main;"  # type: ignore[union-attr]
    assert list(got) == [".", "./src", "./src/a.c", "./src/b.c", "./up"]
    assert got["./src/a.c"].uid == 1000 and got["./src/a.c"].mode == 0o600
    assert got["./src/b.c"].linkname == "./src/a.c" and got["./up"].linkname == "../../etc/passwd"


def test_size_limit_leaves_nothing_behind(tmp_path: Path) -> None:
    chunks = engine_tar(
        (member("workspace", tarfile.DIRTYPE), b""), (member("workspace/r"), os.urandom(300_000))
    )
    with pytest.raises(PackLimit) as caught:
        pack_stream(chunks, tmp_path / "s.tar.gz", root="workspace", max_bytes=100_000, timeout=60)
    assert caught.value.kind == "size"
    assert list(tmp_path.iterdir()) == []
