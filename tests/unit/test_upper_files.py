"""engine.observe._upper_files: what a container wrote under some roots, read from its overlay upper dir."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_programbench.engine.observe import _upper_files


def test_regular_files_under_the_roots_only_links_and_other_dirs_left_out(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    for rel in ("tmp/a", "tmp/deep/b", "var/tmp/c", "etc/passwd", "tmpfoo/d"):
        (upper / rel).parent.mkdir(parents=True, exist_ok=True)
        (upper / rel).write_bytes(rel.encode())
    os.symlink("/etc/shadow", upper / "tmp" / "link")  # a link is not a file the build wrote
    os.symlink(upper / "etc", upper / "tmp" / "etcdir")  # nor followed into another directory

    found = _upper_files(str(upper), ("/tmp", "/var/tmp", "/missing"))

    assert sorted(found) == sorted(
        (path, str(upper) + path) for path in ("/tmp/a", "/tmp/deep/b", "/var/tmp/c")
    )
