"""Whole sessions: selection options, node ids, markers, header, errors, xdist."""

from __future__ import annotations

import pytest
from support import FAKE_OUTCOME

from pytest_programbench.selection.tasks import default_tasks_dir

#: pytest's own surface (collection, reports, xdist): tox's py-pytestmin runs these on pytest 8.0.
pytestmark = pytest.mark.pytest_surface


def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("programbench::")]


@pytest.mark.parametrize(
    ("language", "count"),
    [
        ("rust", 107),
        ("rs", 107),
        ("go", 46),
        ("c", 33),
        ("cpp", 12),
        ("c++", 12),
        ("hs", 1),
        ("java", 1),
        ("all", 200),
        ("rust,go", 153),
    ],
)
def test_language_counts(pytester: pytest.Pytester, language: str, count: int) -> None:
    result = pytester.runpytest_subprocess("--pb-language", language, "--collect-only", "-q")
    assert len(collected(result)) == count
    result.stdout.fnmatch_lines([f"{count} test* collected*"])


def test_everything_excludes_the_package_fixture(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--pb-language", "all", "--collect-only", "-q")
    ids = collected(result)
    assert ids == sorted(ids), "collection order must be deterministic (sorted by instance id)"
    assert not [i for i in ids if "testorg__" in i]
    assert len(ids) == len(set(ids)) == 200


def test_k_selects_one_task(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--pb-language", "all", "--collect-only", "-q", "-k", "sharkdp__hexyl"
    )
    assert collected(result) == ["programbench::instance[sharkdp__hexyl.2e26437]"]


def test_keywords_and_markers(pytester: pytest.Pytester) -> None:
    by_k = collected(
        pytester.runpytest_subprocess("--pb-language", "all", "--collect-only", "-q", "-k", "rust and hard")
    )
    by_m = collected(
        pytester.runpytest_subprocess("--pb-language", "all", "--collect-only", "-q", "-m", "rust and hard")
    )
    by_opts = collected(
        pytester.runpytest_subprocess(
            "--pb-language", "rust", "--pb-difficulty", "hard", "--collect-only", "-q"
        )
    )
    assert len(by_opts) == 10
    assert by_m == by_opts
    # -k matches substrings of names too, so an id containing "rust" may join in.
    assert set(by_opts) <= set(by_k)
    unrated = pytester.runpytest_subprocess("--pb-difficulty", "unrated", "--collect-only", "-q")
    assert len(collected(unrated)) == 35


def _m_takes_keyword_arguments() -> bool:
    """pytest's -m matches marker keyword arguments from 8.1 on (8.0 cannot parse them)."""
    from _pytest.mark.expression import Expression  # private; its parse error's name moved in 9.x

    try:
        Expression.compile("m(a=1)")
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _m_takes_keyword_arguments(), reason="this pytest's -m has no keyword arguments")
def test_marker_with_keyword_arguments(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--pb-language", "all", "--collect-only", "-q", "-m", "programbench(language='go', difficulty='easy')"
    )
    assert len(collected(result)) == 10


def test_instance_regex_and_slice(pytester: pytest.Pytester) -> None:
    everything = collected(pytester.runpytest_subprocess("--pb-language", "all", "--collect-only", "-q"))
    sliced = collected(
        pytester.runpytest_subprocess("--pb-language", "all", "--pb-slice", "5:8", "--collect-only", "-q")
    )
    assert sliced == everything[5:8]
    matched = collected(pytester.runpytest_subprocess("--pb-instance", "sharkdp__", "--collect-only", "-q"))
    assert matched and all(m.startswith("programbench::instance[sharkdp__") for m in matched)
    # re.match semantics, like `programbench eval --filter`: anchored at the start.
    assert collected(pytester.runpytest_subprocess("--pb-instance", "hexyl", "--collect-only", "-q")) == []


def test_attempts_give_every_instance_k_items(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--pb-instance", "sharkdp__hexyl", "--pb-attempts", "3", "--collect-only", "-q"
    )
    assert collected(result) == [
        f"programbench::instance[sharkdp__hexyl.2e26437-attempt{k}]" for k in (1, 2, 3)
    ]


def test_header_shows_the_selection(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--pb-language", "c,cpp", "--collect-only")
    result.stdout.fnmatch_lines(
        ["programbench: 45 instances (c 33, cpp 12) of 200 in the programbench package*"]
    )


def test_header_shows_force_and_branch_settings(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--pb-language=c", "--pb-force", "--pb-branch-workers=2", "--pb-branch-retries=0", "--collect-only"
    )
    result.stdout.fnmatch_lines(
        [
            "programbench: --pb-force: every instance is scored again in full; agents are not rerun",
            "programbench: 2 branch worker(s) per instance, 0 branch retries",
        ]
    )
    quiet = pytester.runpytest_subprocess("--pb-language=c", "--collect-only")
    assert "branch worker" not in quiet.stdout.str() and "--pb-force" not in quiet.stdout.str()


def test_empty_selection_says_so(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--pb-language", "java", "--pb-difficulty", "hard")
    result.stdout.fnmatch_lines(
        ["programbench: no instance matches language=java difficulty=hard*nothing to run"]
    )
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pb-language", "cobol"], "*--pb-language='cobol' is not valid; accepted languages: *rust*"),
        (
            ["--pb-difficulty", "brutal"],
            "*--pb-difficulty='brutal' is not valid; accepted difficulties: easy*",
        ),
        (["--pb-slice", "1-3"], "*--pb-slice='1-3' is not valid; expected A:B*"),
        (["--pb-instance", "(oops"], "*--pb-instance='(oops' is not valid; it is not a regular expression*"),
        (
            ["--pb-attempts", "0", "--pb-language", "go"],
            "*--pb-attempts='0' is not valid; expected a whole number*",
        ),
        (
            ["--pb-threshold", "1.5", "--pb-language", "go"],
            "*--pb-threshold='1.5' is not valid*between 0 and 1*",
        ),
        (["--pb-tasks-dir", "nowhere"], "*--pb-tasks-dir='nowhere' is not valid; *is not a directory*"),
    ],
)
def test_bad_input_is_a_usage_error(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_tasks_dir_without_tasks(pytester: pytest.Pytester) -> None:
    pytester.mkdir("empty_tasks")
    result = pytester.runpytest_subprocess("--pb-tasks-dir", "empty_tasks")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: programbench: --pb-tasks-dir *empty_tasks holds no tasks; expected*"]
    )


def make_task(root: pytest.Pytester, instance_id: str, body: str) -> None:
    task = root.mkdir("tasks") if not (root.path / "tasks").exists() else root.path / "tasks"
    (task / instance_id).mkdir()
    (task / instance_id / "task.yaml").write_text(body)


def test_tasks_dir_and_image_naming(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    make_task(pytester, "acme__tool.1234567", "repository: acme/tool\nlanguage: go\ndifficulty: hard\n")
    make_task(pytester, "acme__other.7654321", "repository: acme/other\nlanguage: rs\n")
    pytester.makeconftest(
        """
        def pytest_collection_finish(session):
            for item in session.items:
                inst = item.callspec.params["pb_instance"]
                print("IMAGE", inst.instance_id, inst.image_ref, inst.language, inst.difficulty)
        """
    )
    monkeypatch.setenv("PROGRAMBENCH_DOCKER_ORG", "registry.example:5000/mirror")
    result = pytester.runpytest_subprocess(
        "--pb-tasks-dir", "tasks", "--pb-image-tag", "v7", "--collect-only", "-q", "-s"
    )
    result.stdout.fnmatch_lines(
        [
            "IMAGE acme__other.7654321 registry.example:5000/mirror/acme_1776_other.7654321:v7 rust unrated",
            "IMAGE acme__tool.1234567 registry.example:5000/mirror/acme_1776_tool.1234567:v7 go hard",
        ]
    )


def test_ini_twins(pytester: pytest.Pytester) -> None:
    make_task(pytester, "acme__tool.1234567", "language: go\ndifficulty: easy\n")
    make_task(pytester, "acme__rusty.1234567", "language: rust\ndifficulty: easy\n")
    pytester.makeini("[pytest]\npb_tasks_dir = tasks\npb_language = go\npb_attempts = 2\n")
    ids = collected(pytester.runpytest_subprocess("--collect-only", "-q"))
    assert ids == [
        "programbench::instance[acme__tool.1234567-attempt1]",
        "programbench::instance[acme__tool.1234567-attempt2]",
    ]
    # The command line wins over the ini file.
    ids = collected(
        pytester.runpytest_subprocess("--collect-only", "-q", "--pb-language", "rust", "--pb-attempts", "1")
    )
    assert ids == ["programbench::instance[acme__rusty.1234567]"]


def test_ini_value_error_names_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\npb_language = fortran\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: programbench: ini option pb_language='fortran' is not valid*"])


def test_xdist_workers_collect_and_run_the_same_items(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_OUTCOME)
    result = pytester.runpytest_subprocess("--pb-language", "go", "-n", "2", "-m", "easy", "-v")
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(["*[gw?]*PASSED programbench::instance[*"])


def test_item_fails_below_the_threshold(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        class Outcome:
            score = 0.5
            def failure_reason(self, threshold):
                return f"score {self.score} < {threshold}"

        @pytest.fixture
        def pb_outcome(pb_instance):
            return Outcome()
        """
    )
    failing = pytester.runpytest_subprocess("--pb-instance", "sharkdp__hexyl")
    failing.assert_outcomes(failed=1)
    failing.stdout.fnmatch_lines(["*score 0.5 < 1.0*"])
    passing = pytester.runpytest_subprocess("--pb-instance", "sharkdp__hexyl", "--pb-threshold", "0.5")
    passing.assert_outcomes(passed=1)


def test_inert_without_a_selection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            heavy = (
                "docker", "yaml", "programbench", "huggingface_hub", "pytest_programbench.selection.tasks"
            )
            heavy = [m for m in heavy if m in sys.modules]
            print("HEAVY-MODULES", heavy)
        """
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*HEAVY-MODULES []"])
    result.stdout.no_fnmatch_line("programbench:*")
    markers = pytester.runpytest_subprocess("--markers")
    markers.stdout.no_fnmatch_line("*ProgramBench instances*")


def test_default_tasks_dir_is_the_package_data() -> None:
    assert (default_tasks_dir() / "sharkdp__hexyl.2e26437" / "task.yaml").is_file()
