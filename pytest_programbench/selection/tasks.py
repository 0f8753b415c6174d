"""Select tasks: read the task definitions and apply the user's selection.

A task directory follows the programbench layout (``<dir>/<instance_id>/task.yaml``
plus ``tests.json``). Collection only needs what ``task.yaml`` says, so ``tests.json``
(tens of MB across the benchmark) is read later, by the item that scores the
instance, through :func:`load_tests`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pytest_programbench.errors import SelectionInvalid
from pytest_programbench.model import LANGUAGE_ALIASES, Instance, Selection
from pytest_programbench.selection.settings import Settings

#: The package's test fixture, not a benchmark task (its tests.json names do not
#: even match pytest's JUnit names).
FIXTURE_PREFIX = "testorg__"


def default_tasks_dir() -> Path:
    from programbench.constants import TASKS_DIR

    return Path(TASKS_DIR)


def _yaml_load(text: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


def load_instances(tasks_dir: Path, *, image_tag: str, skip_fixtures: bool) -> list[Instance]:
    """Every task under ``tasks_dir``, sorted by id so every xdist worker agrees."""
    from programbench.constants import image_name_from_instance_id

    instances = []
    for task_yaml in sorted(tasks_dir.glob("*/task.yaml")):
        instance_id = task_yaml.parent.name
        if skip_fixtures and instance_id.startswith(FIXTURE_PREFIX):
            continue
        try:
            meta = _yaml_load(task_yaml.read_text())
        except Exception as exc:
            raise SelectionInvalid(f"cannot read {task_yaml}: {exc}") from None
        problem = task_yaml_problem(meta)
        if problem:
            raise SelectionInvalid(f"{task_yaml} is not a valid task.yaml: {problem}")
        language = str(meta.get("language", "unknown")).lower()
        instances.append(
            Instance(
                instance_id=instance_id,
                language=LANGUAGE_ALIASES.get(language, language),
                difficulty=str(meta.get("difficulty") or "unrated").lower(),
                repository=str(meta.get("repository", "")),
                task_dir=str(task_yaml.parent),
                image=image_name_from_instance_id(instance_id),
                image_tag=image_tag,
            )
        )
    return instances


def select(settings: Settings) -> Selection:
    """Apply language, difficulty, regex and slice, in that order, then expand attempts."""
    if settings.tasks_dir:
        tasks_dir, source = Path(settings.tasks_dir), settings.tasks_dir
        instances = load_instances(tasks_dir, image_tag=settings.image_tag, skip_fixtures=False)
        if not instances:
            raise SelectionInvalid(
                f"--pb-tasks-dir {tasks_dir} holds no tasks; expected "
                "<dir>/<instance_id>/task.yaml (the programbench package's data/tasks layout)"
            )
    else:
        tasks_dir = default_tasks_dir()
        source = "the programbench package"
        instances = load_instances(tasks_dir, image_tag=settings.image_tag, skip_fixtures=True)
    available = len(instances)
    known_ids = {i.instance_id for i in instances}
    submitted = submission_ids(Path(settings.submissions_dir)) if settings.submissions_dir else set()
    if settings.submissions_dir and not settings.explicit_selection:
        # Replaying a run with no other selection: score what the run holds, like
        # `programbench eval DIR` does.
        instances = [i for i in instances if i.instance_id in submitted]
    if settings.languages:
        instances = [i for i in instances if i.language in settings.languages]
    if settings.difficulties:
        instances = [i for i in instances if i.difficulty in settings.difficulties]
    if settings.instance_pattern:
        pattern = re.compile(settings.instance_pattern)
        instances = [i for i in instances if pattern.match(i.instance_id)]
    if settings.slice is not None:
        instances = instances[slice(*settings.slice)]
    if settings.attempts > 1:
        instances = [
            Instance(**{**i.__dict__, "attempt": k, "attempts": settings.attempts})
            for i in instances
            for k in range(1, settings.attempts + 1)
        ]
    selected_ids = {i.instance_id for i in instances}
    unknown = submitted - known_ids
    return Selection(
        instances=tuple(instances),
        tasks_dir=str(tasks_dir),
        source=source,
        available=available,
        unselected_submissions=tuple(sorted(submitted - selected_ids - unknown)),
        unknown_submissions=tuple(sorted(unknown)),
    )


def submission_ids(run_dir: Path) -> set[str]:
    """Instance ids that have a ``<id>/submission.tar.gz`` in a run directory."""
    return {p.parent.name for p in run_dir.glob("*/submission.tar.gz")}


def task_yaml_problem(meta: Any) -> str:
    """What is wrong with a parsed task.yaml, or "" (the fields we and programbench read)."""
    if not isinstance(meta, dict):
        return f"expected a mapping, found {type(meta).__name__}"
    for key in ("language", "difficulty", "repository"):
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            return f"{key} must be a string, found {type(value).__name__}"
    # A SHA of digits reads as a YAML number (or a date): programbench's loader takes any value, and
    # nothing scores by it, so any single value is taken, as text.
    commit = meta.get("commit")
    if isinstance(commit, dict | list):
        return f"commit must be a string, found {type(commit).__name__}"
    return ""


def tests_json_problem(data: Any) -> str:
    """What is wrong with a parsed tests.json, or "" (the shape programbench's scoring reads)."""
    if not isinstance(data, dict):
        return f"expected a JSON object with 'branches', found a {type(data).__name__}"
    branches = data.get("branches", {})
    if not isinstance(branches, dict):
        return f"'branches' must be an object, found a {type(branches).__name__}"
    for name, info in branches.items():
        if not isinstance(info, dict):
            return f"branch {name!r} must be an object, found a {type(info).__name__}"
        if "tests" not in info:
            return f"branch {name!r} has no 'tests' list"
        if not isinstance(info["tests"], list) or not all(isinstance(t, str) for t in info["tests"]):
            return f"branch {name!r}: 'tests' must be a list of test names"
        if not isinstance(info.get("ignored", False), bool):
            return f"branch {name!r}: 'ignored' must be true or false"
        ignored = info.get("ignored_tests") or []
        if not isinstance(ignored, list) or not all(
            isinstance(t, dict) and isinstance(t.get("name"), str) for t in ignored
        ):
            return f"branch {name!r}: 'ignored_tests' must be a list of objects with a 'name'"
    return ""


def load_tests(instance: Instance) -> dict[str, Any]:
    """The instance's task.yaml and tests.json merged, as programbench's load_data does.

    A file that does not parse or has the wrong shape raises TaskInvalid naming it.
    """
    from pytest_programbench.errors import TaskInvalid

    task_dir = Path(instance.task_dir)
    task_yaml, tests_file = task_dir / "task.yaml", task_dir / "tests.json"
    try:
        meta = _yaml_load(task_yaml.read_text())
    except Exception as exc:
        raise TaskInvalid(str(task_yaml), f"it does not parse ({exc})") from None
    problem = task_yaml_problem(meta or {})
    if problem:
        raise TaskInvalid(str(task_yaml), problem)
    entry: dict[str, Any] = dict(meta or {})
    entry["instance_id"] = instance.instance_id
    entry["image_name"] = instance.image
    if tests_file.exists():
        try:
            data = json.loads(tests_file.read_text())
        except (OSError, ValueError) as exc:
            raise TaskInvalid(str(tests_file), f"it is not valid JSON ({exc})") from None
        problem = tests_json_problem(data)
        if problem:
            raise TaskInvalid(str(tests_file), problem)
        entry.update(data)
    entry.setdefault("branches", {})
    if entry.get("commit") is not None:
        entry["commit"] = str(entry["commit"])  # as the file spells it, for what reads it later
    problem = _no_active_branch(entry, tests_file)
    if problem:
        raise TaskInvalid(str(tests_file), problem)
    return entry


def _no_active_branch(entry: dict[str, Any], tests_file: Path) -> str:
    """Why the task would run no hidden test at all, or "" (programbench eval skips such a task)."""
    branches = entry["branches"]
    if any(not info.get("ignored") for info in branches.values()):
        return ""
    if not tests_file.exists():
        return "it is missing, so the task has no hidden-test branch to score against"
    if not branches:
        return "it names no branch ('branches' is empty), so no hidden test would run"
    return f"every branch is ignored ({', '.join(sorted(branches))}), so no hidden test would run"
