"""Hook specifications of pytest-programbench (specs only; the defaults live in plugin.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_programbench_agent(config: pytest.Config, instance: Any) -> Any:
    """Return the agent that solves ``instance``, or None to let ``--pb-agent`` decide.

    An agent is a callable ``(instance, sandbox)`` or an object with
    ``run(instance, sandbox)``. ``instance`` has ``instance_id``, ``language``,
    ``difficulty`` and ``prompt``; ``sandbox`` has ``exec(command, timeout=None)``,
    ``read_file``, ``write_file`` and ``report(steps=..., cost=..., trajectory=...)``.
    The first hook that returns something wins (the whole order, fixture included, is
    stated in agents.py).

    Example conftest.py::

        def my_agent(instance, sandbox):
            sandbox.write_file("compile.sh", "#!/bin/sh\\ncc -O2 -o executable main.c\\n", mode=0o755)
            ...
            return {"steps": 12, "cost": 0.42}

        def pytest_programbench_agent(config, instance):
            if instance.language == "c":
                return my_agent
            return None  # everything else: whatever --pb-agent says
    """
