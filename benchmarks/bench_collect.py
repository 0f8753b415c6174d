"""Collect-only of all 200 instances against collect-only of 200 trivial tests.

Target (issue 2): ratio <= 1.5. Side A: ``--pb-language all --collect-only`` (the plugin reads
every task.yaml and builds 200 parametrized items). Side B: ``--collect-only`` of a generated
file with 200 trivial parametrized tests, so B pays for pytest, its plugins and 200 items, and
the ratio is what the plugin adds. Same interpreter, same plugins, runs alternated A B A B:

    python benchmarks/bench_collect.py --runs 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _support import compare, finish  # the script's own folder is on sys.path

N = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    pytest_cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    with tempfile.TemporaryDirectory() as root:
        # Each side names a directory of its own, so neither collects the other's files.
        (Path(root) / "empty").mkdir()
        (Path(root) / "trivial").mkdir()
        (Path(root) / "trivial" / "test_trivial.py").write_text(
            f"import pytest\n\n\n@pytest.mark.parametrize('i', range({N}))\ndef test_x(i):\n    pass\n"
        )
        side_a = [*pytest_cmd, "--pb-language", "all", "empty"]
        result = compare(side_a, [*pytest_cmd, "trivial"], Path(root), args.runs)
    finish(
        {
            "benchmark": f"collect {N} instances vs {N} trivial tests",
            "target_ratio": 1.5,
            "runs": args.runs,
            **result,
        }
    )


if __name__ == "__main__":
    main()
