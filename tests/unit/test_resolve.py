"""settings.resolve through pytest's own option parsing, in process (pytester.parseconfigure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_programbench.keys import SETTINGS_KEY
from pytest_programbench.selection.settings import ALL_OPTIONS, Settings

from .support import write_task


@pytest.fixture
def tasks(pytester: pytest.Pytester) -> str:
    write_task(pytester.path / "tasks", "x__one.1", "language: c\n")
    return f"--pb-tasks-dir={pytester.path / 'tasks'}"


def resolved(pytester: pytest.Pytester, *args: str) -> Settings:
    return pytester.parseconfigure(*args).stash[SETTINGS_KEY]


def test_without_a_selection_the_plugin_is_inert(pytester: pytest.Pytester) -> None:
    assert resolved(pytester, "--pb-memory=8g") == Settings(active=False)


def test_an_agent_without_a_selection_is_a_usage_error(pytester: pytest.Pytester) -> None:
    with pytest.raises(pytest.UsageError, match="--pb-agent needs instances to run"):
        resolved(pytester, "--pb-agent=none")


def test_defaults(pytester: pytest.Pytester, tasks: str) -> None:
    s = resolved(pytester, tasks)
    assert (s.active, s.attempts, s.threshold, s.pull, s.integrity, s.image_tag) == (
        True,
        1,
        1.0,
        "missing",
        "report",
        "task_cleanroom_v6",
    )
    assert (s.agent_timeout, s.max_submission, s.disk, s.cpus) == (7 * 3600, 1 << 30, 0, 0)


def test_every_option_resolves_to_its_field(pytester: pytest.Pytester, tasks: str, tmp_path: Path) -> None:
    (pytester.path / "agent.yaml").write_text("{}\n")
    s = resolved(
        pytester,
        tasks,
        "--pb-language=rs,go",
        "--pb-difficulty=hard",
        "--pb-instance=x__",
        "--pb-slice=1:",
        "--pb-image-tag=v7",
        "--pb-attempts=3",
        f"--pb-blob-dir={pytester.path}",
        "--pb-output=out",
        "--pb-report=r.json",
        "--pb-cpus=2",
        "--pb-pull=Always",
        "--pb-agent=command",
        "--pb-agent-cmd= ./run.sh ",
        "--pb-model=m",
        "--pb-agent-config=agent.yaml",
        "--pb-agent-timeout=30m",
        "--pb-memory=8G",
        "--pb-network",
        "--pb-scoring-memory=16g",
        "--pb-max-submission=200m",
        "--pb-disk=20g",
        "--pb-branch-workers=2",
        "--pb-branch-retries=0",
        "--pb-keep",
        "--pb-integrity=STRICT",
        "--pb-threshold=0.5",
    )
    root = pytester.path
    assert (s.languages, s.difficulties, s.instance_pattern, s.slice) == (
        ("rust", "go"),
        ("hard",),
        "x__",
        (1, None),
    )
    assert (s.image_tag, s.attempts, s.blob_dir, s.cpus, s.pull) == ("v7", 3, str(root), 2, "always")
    assert (s.output_dir, s.report_file) == (str(root / "out"), str(root / "r.json"))
    assert (s.agent, s.agent_cmd, s.model, s.agent_config) == (
        "command",
        "./run.sh",
        "m",
        str(root / "agent.yaml"),
    )
    assert (s.agent_timeout, s.memory, s.network, s.scoring_memory) == (1800.0, "8g", True, "16g")
    assert (s.max_submission, s.disk, s.branch_workers, s.branch_retries) == (200 << 20, 20 << 30, 2, 0)
    assert (s.keep, s.integrity, s.threshold) == (True, "strict", 0.5)


def test_ini_twins_and_the_command_line_wins(pytester: pytest.Pytester, tasks: str) -> None:
    pytester.makeini(
        "[pytest]\npb_language = go c\npb_attempts = 2\npb_network = true\npb_threshold = 0.25\n"
    )
    s = resolved(pytester, tasks)
    assert (s.languages, s.attempts, s.network, s.threshold) == (("go", "c"), 2, True, 0.25)
    assert resolved(pytester, tasks, "--pb-attempts=4", "--pb-language=rust").attempts == 4
    assert resolved(pytester, tasks, "--pb-language=rust").languages == ("rust",)


def test_an_ini_path_is_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    write_task(pytester.path / "cfg" / "tasks", "x__one.1", "language: c\n")
    pytester.makefile(".ini", **{"cfg/pytest": "[pytest]\npb_tasks_dir = tasks\n"})
    s = resolved(pytester, "-c", "cfg/pytest.ini")
    assert s.tasks_dir == str(pytester.path / "cfg" / "tasks")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pb-language=cobol"], r"--pb-language='cobol' is not valid; accepted languages: "),
        (["--pb-difficulty=insane"], r"--pb-difficulty='insane' is not valid; accepted difficulties"),
        (["--pb-instance=("], r"--pb-instance='\(' is not valid; it is not a regular expression"),
        (["--pb-slice=1-2"], r"--pb-slice='1-2' is not valid; expected A:B"),
        (["--pb-attempts=0"], r"--pb-attempts='0' is not valid; expected a whole number >= 1"),
        (["--pb-cpus=many"], r"--pb-cpus='many' is not valid"),
        (["--pb-pull=sometimes"], r"--pb-pull='sometimes' is not valid; accepted: never, missing, always"),
        (["--pb-agent=no such"], r"--pb-agent='no such' is not valid; expected one of none, command"),
        (["--pb-agent=command"], r"the command agent needs --pb-agent-cmd CMD"),
        (["--pb-agent-config=missing.yaml"], r"missing.yaml is not a file"),
        (["--pb-agent-timeout=0"], r"expected a duration > 0"),
        (["--pb-memory=lots"], r"--pb-memory='lots' is not valid; expected a size such as 512m"),
        (["--pb-disk=0"], r"--pb-disk='0' is not valid"),
        (["--pb-integrity=lax"], r"--pb-integrity='lax' is not valid; accepted: report, strict"),
        (["--pb-threshold=2"], r"--pb-threshold='2' is not valid; expected a score between 0 and 1"),
        (["--pb-image-tag=a tag"], r"expected a Docker tag"),
        (["--pb-blob-dir=nowhere"], r"nowhere is not a directory"),
        (["--pb-submissions=nowhere"], r"nowhere is not a directory"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_flag(
    pytester: pytest.Pytester, tasks: str, args: list[str], message: str
) -> None:
    with pytest.raises(pytest.UsageError, match=message):
        resolved(pytester, tasks, *args)


def test_an_ini_error_names_the_ini_option(pytester: pytest.Pytester, tasks: str) -> None:
    pytester.makeini("[pytest]\npb_threshold = high\n")
    with pytest.raises(pytest.UsageError, match=r"ini option pb_threshold") as raised:
        resolved(pytester, tasks)
    # pytest 8.4+ types the ini value itself (a float): the wording around the value differs.
    assert "is not valid" in str(raised.value) and "'high'" in str(raised.value)
    pytester.makeini("[pytest]\npb_attempts = 0\n")
    with pytest.raises(pytest.UsageError, match=r"ini option pb_attempts.* is not valid"):
        resolved(pytester, tasks)


def test_an_output_that_is_a_file_is_refused(pytester: pytest.Pytester, tasks: str) -> None:
    (pytester.path / "out").write_text("")
    with pytest.raises(pytest.UsageError, match=r"exists and is not a directory"):
        resolved(pytester, tasks, "--pb-output=out")


def test_selftest_scripts_its_agent_unless_one_is_named(pytester: pytest.Pytester) -> None:
    assert resolved(pytester, "--pb-selftest").agent == "selftest"
    assert resolved(pytester, "--pb-selftest", "--pb-agent=none").agent == "none"


def test_every_option_is_in_help_with_its_ini_twin_and_default(pytester: pytest.Pytester) -> None:
    text = " ".join(pytester.runpytest("--help").stdout.str().split())
    for opt in ALL_OPTIONS:
        assert opt.default, f"{opt.flag} has no default to show"
        assert f"{opt.flag}" in text and f"(default: {opt.default})" in text
        assert f"{opt.dest} " in text or f"{opt.dest} (" in text


def test_every_option_fills_a_settings_field_or_is_a_rule() -> None:
    fields = set(Settings.__dataclass_fields__)
    for opt in ALL_OPTIONS:
        assert (opt.field in fields) if opt.parse else opt.dest in ("pb_selftest", "pb_cleanup")


def test_a_selection_that_cannot_be_made_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "empty").mkdir()
    with pytest.raises(pytest.UsageError, match=r"^programbench: --pb-tasks-dir .*empty holds no tasks"):
        resolved(pytester, "--pb-tasks-dir=empty")
