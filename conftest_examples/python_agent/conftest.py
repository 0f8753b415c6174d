"""A Python agent, handed to pytest-programbench by a ``pytest_programbench_agent`` hook.

The hook is asked once per instance and returns the agent for it, or None to leave the
instance to ``--pb-agent``. An agent is a callable ``(instance, sandbox)``: it works in the
task container only through ``sandbox`` (``exec``, ``read_file``, ``write_file``), leaves its
work in /workspace and reports steps and cost with ``sandbox.report`` or its return value.
This one knows the self-test task's answer; a real one would loop model -> sandbox.exec.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_programbench import Instance, Sandbox
from pytest_programbench.selftest import reference_source

COMPILE_SH = "#!/bin/sh\nset -e\ngcc -O2 -o executable rpncalc.c\n"


def rpncalc_agent(instance: Instance, sandbox: Sandbox) -> dict[str, Any]:
    """Write the source and compile.sh, build, check the build, submit."""
    sandbox.write_file("rpncalc.c", reference_source())
    sandbox.write_file("compile.sh", COMPILE_SH, mode=0o755)
    built = sandbox.exec("./compile.sh && ./executable 2 3 +", timeout=120)
    # Reported as it goes: kept even if the agent is stopped at --pb-agent-timeout.
    sandbox.report(steps=3, cost=0.0)
    if built.returncode != 0 or built.output.splitlines()[-1:] != ["5"]:
        return {"exit_status": f"build failed: {built.output.strip()[-200:]}"}
    return {"exit_status": "Submitted"}


def pytest_programbench_agent(config: pytest.Config, instance: Instance) -> Any:
    if instance.instance_id.startswith("pbselftest__rpncalc."):
        return rpncalc_agent
    return None  # every other instance: whatever --pb-agent says


# The alternative: override the pb_agent fixture. It beats every hook and --pb-agent, gets
# the instance as the fixture pb_instance, and may use any other fixture:
#
#     @pytest.fixture
#     def pb_agent(pb_instance: Instance) -> Any:
#         return rpncalc_agent
