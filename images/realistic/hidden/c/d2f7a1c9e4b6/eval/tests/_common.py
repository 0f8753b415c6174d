"""Run ./executable (the program under test) the way every hidden test does."""

import random
import subprocess
import zlib
from pathlib import Path

EXECUTABLE = Path(__file__).resolve().parents[2] / "executable"


def run(*args, stdin=b""):
    return subprocess.run([str(EXECUTABLE), *map(str, args)], input=stdin, capture_output=True, timeout=60)


def crc(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def big_file(path, size=24 << 20, seed=5):
    """24 MiB of pseudo-random bytes: the program runs for tens of milliseconds on it."""
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data
