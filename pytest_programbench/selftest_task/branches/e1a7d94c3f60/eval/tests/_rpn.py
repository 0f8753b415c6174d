"""Run the program under test (/workspace/executable) the way every hidden test does."""

from __future__ import annotations

import subprocess
from pathlib import Path

EXECUTABLE = Path(__file__).resolve().parents[2] / "executable"


def rpn(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXECUTABLE), *args], input=stdin, capture_output=True, text=True, timeout=10)


def value(*args: str) -> str:
    """stdout of a run that must succeed, without the trailing newline."""
    r = rpn(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n")
    return r.stdout[:-1]
