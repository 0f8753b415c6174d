"""Every module a benchmark script imports at its top exists (the scripts need an engine to run)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "benchmarks"
BENCHMARKS = sorted(HERE.glob("bench_*.py"))


def top_imports(script: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of each import at the script's top level."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_what_the_benchmark_imports_exists(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))  # as when the script runs: its own folder on sys.path
    for module, names in top_imports(script):
        if module == "__future__":
            continue
        assert importlib.util.find_spec(module) is not None, f"{script.name}: no module {module}"
        if module.startswith(("pytest_programbench", "_support")):
            loaded = importlib.import_module(module)
            missing = [
                n
                for n in names
                if not hasattr(loaded, n) and importlib.util.find_spec(f"{module}.{n}") is None
            ]
            assert not missing, f"{script.name}: {module} has no {missing}"
    sys.modules.pop("_support", None)
