"""Collect-only of all 200 instances against collect-only of an empty directory.

Target (issue 2): ratio <= 1.5. Same interpreter, same plugins, alternated runs:

    python benchmarks/bench_collect.py --runs 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _support import compare  # the script's own folder is on sys.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    pytest_cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    with tempfile.TemporaryDirectory() as empty:
        result = compare([*pytest_cmd, "--pb-language", "all"], pytest_cmd, Path(empty), args.runs)
    report = {"benchmark": "collect 200 instances vs empty dir", "target_ratio": 1.5, **result}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
