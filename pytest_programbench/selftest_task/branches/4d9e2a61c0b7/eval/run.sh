#!/bin/bash
# Hidden-test runner of the pytest-programbench self-test task. The evaluator streams this branch
# into /workspace, puts the built ./executable beside it and reads eval/results.xml afterwards.
set -e
cd "$(dirname "$0")/.."
python3 -m pytest eval/tests/ --junitxml=eval/results.xml -n auto -p no:cacheprovider \
    --timeout=60 --timeout-method=thread -q || true
