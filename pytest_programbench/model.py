"""The domain objects: small frozen dataclasses of builtins, so they cross xdist."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Instance:
    """One ProgramBench task as a run sees it; builtins only, so it crosses xdist."""

    instance_id: str
    language: str
    difficulty: str
    repository: str
    task_dir: str
    image: str
    image_tag: str
    attempt: int = 1
    attempts: int = 1

    @property
    def image_ref(self) -> str:
        return f"{self.image}:{self.image_tag}"

    @property
    def param_id(self) -> str:
        """The pytest parameter id: the instance id, plus the attempt when there are several."""
        if self.attempts == 1:
            return self.instance_id
        return f"{self.instance_id}-attempt{self.attempt}"


@dataclass(frozen=True)
class Selection:
    """The instances a session runs, in collection order, and where they came from."""

    instances: tuple[Instance, ...]
    tasks_dir: str
    source: str
    available: int

    def counts_by_language(self) -> dict[str, int]:
        return dict(Counter(i.language for i in self.instances if i.attempt == 1))

    @property
    def n_instances(self) -> int:
        return sum(1 for i in self.instances if i.attempt == 1)
