"""What an evaluator that raised means (scoring._crashed): whose fault, a 0 or an error, what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_programbench.errors import EvaluatorCrashed, HiddenTestsBroken
from pytest_programbench.scoring.evaluator import _crashed

from .support import instance

REFUSED = (
    "tar stream into container failed: tar: ./f/g: Cannot open: Not a directory\ntar: Exiting with failure"
)


def test_an_archive_the_task_images_tar_refused_is_the_submissions_zero() -> None:
    outcome = _crashed(instance(), Path("/runs/x/submission.tar.gz"), Path("/blobs/x"), RuntimeError(REFUSED))
    assert (outcome.score, outcome.outcome, outcome.error_code) == (0.0, "zero", "invalid_submission")
    assert outcome.message.startswith(
        "submission /runs/x/submission.tar.gz cannot be unpacked as the evaluator unpacks it: the task "
        "image's tar refused it: tar: ./f/g: Cannot open: Not a directory; tar: Exiting with failure"
    )


def test_a_branch_archive_it_refused_is_a_broken_hidden_test_archive() -> None:
    exc = RuntimeError(REFUSED)
    exc.pb_branch = "b1"  # type: ignore[attr-defined]
    with pytest.raises(HiddenTestsBroken) as caught:
        _crashed(instance(), Path("/runs/x/submission.tar.gz"), Path("/blobs/x"), exc)
    assert "hidden-test archive /blobs/x/tests/b1.tar.gz (org__tool.abc1234 branch b1) is broken" in str(
        caught.value
    )


def test_a_copy_docker_failed_is_no_archives_fault() -> None:
    exc = RuntimeError(
        "tar stream into container failed: Error response from daemon: container abc is not running"
    )
    with pytest.raises(EvaluatorCrashed) as caught:
        _crashed(instance(), Path("/s.tar.gz"), Path("/b"), exc)
    assert "evaluator log" not in str(caught.value) and "--tb=long" in str(caught.value)


def test_output_the_evaluator_cannot_decode_is_its_limit_named() -> None:
    exc = UnicodeDecodeError("utf-8", b"caf\xe9", 3, 4, "invalid continuation byte")
    exc.pb_step = "compile"  # type: ignore[attr-defined]
    exc.pb_offset = 1234  # type: ignore[attr-defined]
    outcome = _crashed(instance(), Path("/s.tar.gz"), Path("/b"), exc)
    assert (outcome.score, outcome.outcome, outcome.error_code) == (0.0, "zero", "evaluator_crashed")
    assert outcome.message.startswith("cause: undecodable_output. programbench's evaluator decodes")
    assert "the compile step's (invalid continuation byte: byte b'\\xe9' at offset 1234)" in outcome.message
    assert "rerun gives the same" in outcome.message and "Rerun this item" not in outcome.message
