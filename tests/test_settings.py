"""Pure parsing rules of the options (no pytest session needed)."""

from __future__ import annotations

import pytest

from pytest_programbench import settings


def test_language_aliases_collapse_to_canonical_names() -> None:
    assert settings.parse_languages(["rs,golang", "C++", "hs", "rust"], "--pb-language") == (
        "rust",
        "go",
        "cpp",
        "haskell",
    )


def test_all_means_no_language_filter() -> None:
    assert settings.parse_languages(["all"], "--pb-language") == ()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0:5", (0, 5)),
        (":5", (None, 5)),
        ("10:", (10, None)),
        ("-3:", (-3, None)),
        (" 1 : 2 ", (1, 2)),
        (":", (None, None)),
    ],
)
def test_slices(spec: str, expected: tuple[int | None, int | None]) -> None:
    assert settings.parse_slice(spec, "--pb-slice") == expected


@pytest.mark.parametrize("spec", ["5", "a:b", "1:2:3", ""])
def test_bad_slices(spec: str) -> None:
    with pytest.raises(pytest.UsageError, match="--pb-slice"):
        settings.parse_slice(spec, "--pb-slice")


def test_errors_name_their_source() -> None:
    with pytest.raises(pytest.UsageError, match="ini option pb_difficulty='impossible'"):
        settings.parse_difficulties(["impossible"], "ini option pb_difficulty")


def test_describe() -> None:
    s = settings.Settings(active=True, languages=("go",), slice=(None, 4), instance_pattern="a.*")
    assert s.describe() == "language=go instance=~'a.*' slice=:4"
