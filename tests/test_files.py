"""Files written whole: a temporary name per process, so two writers never collide."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pytest_programbench import files

WRITER = """
import sys
from pathlib import Path
from pytest_programbench import files
target = Path(sys.argv[1])
print(files.partial_path(target), flush=True)
for i in range(300):
    files.write_text(target, sys.argv[2] * 10_000)
"""


def test_two_processes_writing_one_file_neither_fails_nor_tears_it(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), letter],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for letter in "ab"
    ]
    outputs = [w.communicate(timeout=120) for w in writers]
    assert [w.returncode for w in writers] == [0, 0], [err.decode() for _, err in outputs]
    partials = {out.decode().strip() for out, _ in outputs}
    assert len(partials) == 2 and str(files.partial_path(target)) not in partials
    assert target.read_text() in ("a" * 10_000, "b" * 10_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
