"""Pure parsing rules of the options (no pytest session needed)."""

from __future__ import annotations

import pytest

from pytest_programbench.selection import settings


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


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("512m", 512 * 2**20), ("2g", 2 * 2**30), ("1.5G", 3 * 2**29), ("10GiB", 10 * 2**30)],
)
def test_sizes(spec: str, expected: int) -> None:
    assert settings.parse_bytes(spec, "--pb-disk") == expected


@pytest.mark.parametrize("spec", ["0", "lots", "-1g", "5q"])
def test_bad_sizes_name_their_source(spec: str) -> None:
    with pytest.raises(pytest.UsageError, match=r"ini option pb_max_submission=.* expected a size"):
        settings.parse_bytes(spec, "ini option pb_max_submission")


def test_agent_reported_numbers_are_checked() -> None:
    from pytest_programbench.model import AgentRun, clean_cost, clean_steps

    assert [clean_steps(v) for v in (3, 0, -1, True, 2.0, "4")] == [3, 0, None, None, None, None]
    assert [clean_cost(v) for v in (0.25, 1, -0.1, float("nan"), float("inf"), 10**400, "free")] == [
        0.25,
        1.0,
        None,
        None,
        None,
        None,
        None,
    ]
    # What a marker on disk holds goes through the same check (a resume used to crash on it).
    assert AgentRun(name="x", seconds=1.0, steps="many", cost=10**400) == AgentRun(name="x", seconds=1.0)  # type: ignore[arg-type]


def test_counts_accept_zero_and_name_the_flag_when_negative() -> None:
    assert settings.parse_count("0", "--pb-branch-retries") == 0
    with pytest.raises(pytest.UsageError, match=r"--pb-branch-retries='-1' is not valid; expected a whole"):
        settings.parse_count("-1", "--pb-branch-retries")


def test_force_agent_implies_force_and_branch_options_resolve(pytester: pytest.Pytester) -> None:
    from pytest_programbench import selftest
    from pytest_programbench.keys import SETTINGS_KEY

    tasks = f"--pb-tasks-dir={selftest.tasks_dir()}"
    config = pytester.parseconfigure(
        tasks, "--pb-force-agent", "--pb-branch-workers=3", "--pb-branch-retries=0"
    )
    resolved = config.stash[SETTINGS_KEY]
    assert (resolved.force, resolved.force_agent, resolved.branch_workers, resolved.branch_retries) == (
        True,
        True,
        3,
        0,
    )
    defaults = pytester.parseconfigure(tasks).stash[SETTINGS_KEY]
    assert (defaults.force, defaults.force_agent, defaults.branch_workers, defaults.branch_retries) == (
        False,
        False,
        1,
        1,
    )
    with pytest.raises(pytest.UsageError, match=r"--pb-branch-workers='0' is not valid"):
        pytester.parseconfigure(tasks, "--pb-branch-workers=0")


def test_help_states_what_force_and_force_agent_redo(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = " ".join(result.stdout.str().split())
    assert "--pb-force Re-score every instance in full" in text
    assert "Agents are not rerun" in text
    assert "--pb-force-agent Rerun the agents too (implies --pb-force)" in text
    for flag in ("--pb-branch-workers=N", "--pb-branch-retries=N"):
        assert flag in text
