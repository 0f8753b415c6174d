"""tasks: reading task.yaml files and applying a selection, on temporary task directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_programbench.errors import SelectionInvalid, TaskInvalid
from pytest_programbench.selection import tasks
from pytest_programbench.selection.settings import Settings

from .support import instance, write_task

TASKS = {
    "a__one.1": "language: rust\ndifficulty: easy\nrepository: a/one\n",
    "a__two.1": "language: Rust\ndifficulty: hard\n",
    "b__three.1": "language: golang\n",
    "b__four.1": "language: c++\ndifficulty: Medium\n",
    "c__five.1": "language: haskell\ndifficulty: hard\n",
}


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    for iid, text in TASKS.items():
        write_task(tmp_path / "tasks", iid, text)
    return tmp_path / "tasks"


def ids(tasks_dir: Path, **settings: object) -> list[str]:
    selection = tasks.select(Settings(active=True, tasks_dir=str(tasks_dir), **settings))  # type: ignore[arg-type]
    return [i.param_id for i in selection.instances]


def test_instances_are_sorted_and_normalised(tasks_dir: Path) -> None:
    found = tasks.load_instances(tasks_dir, image_tag="t1", skip_fixtures=False)
    assert [i.instance_id for i in found] == sorted(TASKS)
    by_id = {i.instance_id: i for i in found}
    assert (by_id["a__two.1"].language, by_id["b__three.1"].language, by_id["b__four.1"].language) == (
        "rust",
        "go",
        "cpp",
    )
    assert (by_id["b__three.1"].difficulty, by_id["b__four.1"].difficulty) == ("unrated", "medium")
    assert by_id["a__one.1"].image_ref.endswith(":t1") and by_id["a__one.1"].repository == "a/one"


def test_language_then_difficulty(tasks_dir: Path) -> None:
    assert ids(tasks_dir, languages=("rust",)) == ["a__one.1", "a__two.1"]
    assert ids(tasks_dir, languages=("rust", "haskell"), difficulties=("hard",)) == ["a__two.1", "c__five.1"]
    assert ids(tasks_dir, difficulties=("unrated",)) == ["b__three.1"]


def test_the_regex_matches_from_the_start_and_the_slice_comes_last(tasks_dir: Path) -> None:
    assert ids(tasks_dir, instance_pattern="b__") == ["b__four.1", "b__three.1"]
    assert ids(tasks_dir, instance_pattern="three") == []
    assert ids(tasks_dir, instance_pattern="a|c", slice=(1, None)) == ["a__two.1", "c__five.1"]
    assert ids(tasks_dir, slice=(-1, None)) == ["c__five.1"]


def test_attempts_expand_each_instance_in_place(tasks_dir: Path) -> None:
    assert ids(tasks_dir, languages=("rust",), attempts=2) == [
        "a__one.1-attempt1",
        "a__one.1-attempt2",
        "a__two.1-attempt1",
        "a__two.1-attempt2",
    ]


def submissions(run: Path, *iids: str) -> Path:
    for iid in iids:
        (run / iid).mkdir(parents=True)
        (run / iid / "submission.tar.gz").write_bytes(b"")
    return run


def test_replay_alone_selects_what_the_run_holds(tmp_path: Path) -> None:
    [first, *_] = tasks.load_instances(tasks.default_tasks_dir(), image_tag="t", skip_fixtures=True)
    run = submissions(tmp_path / "run", first.instance_id, "z__unknown.1")
    alone = tasks.select(Settings(active=True, submissions_dir=str(run)))
    assert [i.instance_id for i in alone.instances] == [first.instance_id]
    assert alone.unknown_submissions == ("z__unknown.1",)
    assert alone.source == "the programbench package"


def test_replay_with_a_selection_names_what_it_leaves_out(tasks_dir: Path, tmp_path: Path) -> None:
    run = submissions(tmp_path / "run", "a__one.1", "c__five.1", "z__unknown.1")
    narrowed = tasks.select(
        Settings(active=True, tasks_dir=str(tasks_dir), submissions_dir=str(run), languages=("haskell",))
    )
    assert [i.instance_id for i in narrowed.instances] == ["c__five.1"]
    assert narrowed.unselected_submissions == ("a__one.1",)
    assert narrowed.unknown_submissions == ("z__unknown.1",)
    assert narrowed.available == len(TASKS)


def test_an_empty_tasks_dir_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SelectionInvalid, match=r"holds no tasks; expected <dir>/<instance_id>/task\.yaml"):
        tasks.select(Settings(active=True, tasks_dir=str(tmp_path)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list\n", "expected a mapping, found list"),
        ("language: [rust]\n", "language must be a string, found list"),
        ("language: rust\ndifficulty: 3\n", "difficulty must be a string, found int"),
        ("language: rust\n  bad: : indent\n", "cannot read"),
    ],
)
def test_a_bad_task_yaml_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    write_task(tmp_path, "x__bad.1", text)
    with pytest.raises(SelectionInvalid, match=message) as info:
        tasks.load_instances(tmp_path, image_tag="t", skip_fixtures=False)
    assert str(tmp_path / "x__bad.1" / "task.yaml") in str(info.value)


def test_the_package_fixture_is_skipped_only_when_asked(tmp_path: Path) -> None:
    write_task(tmp_path, f"{tasks.FIXTURE_PREFIX}x.1", "language: c\n")
    assert tasks.load_instances(tmp_path, image_tag="t", skip_fixtures=True) == []
    assert len(tasks.load_instances(tmp_path, image_tag="t", skip_fixtures=False)) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a JSON object with 'branches', found a list"),
        ({"branches": []}, "'branches' must be an object"),
        ({"branches": {"b": 1}}, "branch 'b' must be an object"),
        ({"branches": {"b": {}}}, "branch 'b' has no 'tests' list"),
        ({"branches": {"b": {"tests": [1]}}}, "'tests' must be a list of test names"),
        ({"branches": {"b": {"tests": [], "ignored": "no"}}}, "'ignored' must be true or false"),
        (
            {"branches": {"b": {"tests": [], "ignored_tests": ["t"]}}},
            "'ignored_tests' must be a list of objects",
        ),
        ({"branches": {"b": {"tests": ["t"], "ignored_tests": [{"name": "t"}]}}}, ""),
    ],
)
def test_tests_json_shape(data: object, message: str) -> None:
    problem = tasks.tests_json_problem(data)
    assert message in problem if message else problem == ""


def test_load_tests_merges_task_yaml_and_tests_json(tmp_path: Path) -> None:
    d = write_task(tmp_path, "x__ok.1", "language: c\ncommit: abc\n")
    (d / "tests.json").write_text(json.dumps({"branches": {"b": {"tests": ["t"]}}}))
    entry = tasks.load_tests(instance("x__ok.1", task_dir=str(d)))
    assert (entry["instance_id"], entry["commit"], entry["branches"]) == (
        "x__ok.1",
        "abc",
        {"b": {"tests": ["t"]}},
    )
    assert entry["image_name"] == "programbench/x__ok.1"


@pytest.mark.parametrize(
    ("tests_json", "problem"),
    [
        (None, "it is missing, so the task has no hidden-test branch"),
        ({"branches": {}}, "it names no branch ('branches' is empty)"),
        ({"branches": {"b": {"tests": ["t"], "ignored": True}}}, "every branch is ignored (b)"),
    ],
)
def test_a_task_without_an_active_branch_names_its_tests_json(
    tmp_path: Path, tests_json: object, problem: str
) -> None:
    # Not fetch_hidden_tests's bare "needs at least one branch" ValueError, deep in scoring.
    d = write_task(tmp_path, "x__none.1", "language: c\n")
    if tests_json is not None:
        (d / "tests.json").write_text(json.dumps(tests_json))
    with pytest.raises(TaskInvalid) as info:
        tasks.load_tests(instance("x__none.1", task_dir=str(d)))
    assert str(info.value).startswith(f"task file {d / 'tests.json'} is invalid: {problem}")


@pytest.mark.parametrize("commit", ["1234567", "0x1f", "2024-01-01", "12e4", "true"])
def test_a_commit_yaml_reads_as_another_type_is_taken_as_text(tmp_path: Path, commit: str) -> None:
    # programbench's loader takes any value here; a SHA of digits reads as an int.
    write_task(tmp_path, "x__num.1", f"language: c\ncommit: {commit}\n")
    [inst] = tasks.load_instances(tmp_path, image_tag="t", skip_fixtures=False)
    (tmp_path / "x__num.1" / "tests.json").write_text(json.dumps({"branches": {"b": {"tests": ["t"]}}}))
    assert isinstance(tasks.load_tests(inst)["commit"], str)


def test_a_broken_tests_json_is_task_invalid_naming_it(tmp_path: Path) -> None:
    d = write_task(tmp_path, "x__bad.1", "language: c\n")
    (d / "tests.json").write_text("{")
    with pytest.raises(TaskInvalid, match=r"tests.json is invalid: it is not valid JSON") as info:
        tasks.load_tests(instance("x__bad.1", task_dir=str(d)))
    assert info.value.code == "task_invalid"
