"""A failed build of the self-test image says why (the engine's own error) and what to do.

The session runs ``--pb-selftest`` under an organisation of its own, so the image it
wants is missing and the plugin builds it; the conftest points the build at a base no
registry can serve (``.invalid`` never resolves) and hides the offline base, as on a
machine with neither Docker Hub nor the offline base. Nothing is built, nothing is left.
"""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from pytest_programbench.engine.containers import Engine

UNRESOLVABLE = "pb-no-such-registry.invalid/base:bookworm"

CONFTEST = textwrap.dedent(
    f"""
    import shutil
    from pathlib import Path

    from pytest_programbench.engine import images
    from pytest_programbench import selftest

    # No offline base on this "machine", and a Dockerfile whose default base cannot be pulled.
    images.OFFLINE_BASE = "pbtest-no-offline-base/none:none"
    context = Path(__file__).parent / "selftest-context"
    shutil.copytree(selftest.image_context(), context, dirs_exist_ok=True)
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace("ARG BASE=debian:bookworm-slim", "ARG BASE={UNRESOLVABLE}", 1)
    )
    selftest.image_context = lambda: context
    """
)


def test_a_failed_selftest_build_shows_the_engines_error_and_the_offline_remedy(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> None:
    org = f"pbtest-buildfail-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("PROGRAMBENCH_DOCKER_ORG", org)
    pytester.makeconftest(CONFTEST)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "--pb-selftest", "--pb-cpus=1", f"--pb-output={pytester.path / 'out'}", f"--pb-report={report}"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    [row] = json.loads(report.read_text())["instances"]
    assert row["outcome"] == "error" and row["error_code"] == "image_build_failed", row
    message = row["message"]
    # The engine's own words (the registry lookup), where it failed, and the remedy.
    assert "pb-no-such-registry.invalid" in message and "no such host" in message, message
    assert "(at Step 2/" in message and "FROM ${BASE}" in message, message
    assert "build-offline.sh" in message and "mmdebstrap" in message, message
    assert "Step 1/" not in message, message
    result.stdout.fnmatch_lines(["*building*failed*no such host*build-offline.sh*"])
    assert not [image for image in engine.client.images.list() if any(org in t for t in image.tags)]
