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

import pytest

from pytest_programbench.model import Instance, Selection
from pytest_programbench.settings import LANGUAGE_ALIASES, Settings

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
            raise pytest.UsageError(f"programbench: cannot read {task_yaml}: {exc}") from None
        if not isinstance(meta, dict):
            raise pytest.UsageError(f"programbench: {task_yaml} is not a mapping")
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
            raise pytest.UsageError(
                f"programbench: --pb-tasks-dir {tasks_dir} holds no tasks; expected "
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


def load_tests(instance: Instance) -> dict[str, Any]:
    """The instance's task.yaml and tests.json merged, as programbench's load_data does."""
    task_dir = Path(instance.task_dir)
    entry: dict[str, Any] = dict(_yaml_load((task_dir / "task.yaml").read_text()) or {})
    entry["instance_id"] = instance.instance_id
    entry["image_name"] = instance.image
    tests_file = task_dir / "tests.json"
    if tests_file.exists():
        entry.update(json.loads(tests_file.read_text()))
    entry.setdefault("branches", {})
    return entry
