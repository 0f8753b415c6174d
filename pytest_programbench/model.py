"""The domain objects: small frozen dataclasses of builtins, so they cross xdist."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


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
    unselected_submissions: tuple[str, ...] = ()
    unknown_submissions: tuple[str, ...] = ()

    def counts_by_language(self) -> dict[str, int]:
        return dict(Counter(i.language for i in self.instances if i.attempt == 1))

    @property
    def n_instances(self) -> int:
        return sum(1 for i in self.instances if i.attempt == 1)


RESOLVED_THRESHOLD = 1.0  # programbench.submission: every counted test passes
ALMOST_THRESHOLD = 0.95  # programbench.submission: NEAR_RESOLVED_THRESHOLD


def category_of(score: float) -> str:
    if score >= RESOLVED_THRESHOLD:
        return "resolved"
    if score >= ALMOST_THRESHOLD:
        return "almost"
    if score > 0:
        return "partial"
    return "zero"


@dataclass(frozen=True)
class Outcome:
    """An instance's verdict, as scored by the official evaluator."""

    instance_id: str
    attempt: int
    language: str
    difficulty: str
    score: float
    n_resolved: int
    n_tests: int
    category: str
    error_code: str | None = None
    branch_errors: dict[str, list[str]] = field(default_factory=dict)
    eval_seconds: float = 0.0

    @classmethod
    def from_score(cls, instance: Instance, *, score: float, **fields: Any) -> Outcome:
        return cls(
            instance_id=instance.instance_id,
            attempt=instance.attempt,
            language=instance.language,
            difficulty=instance.difficulty,
            score=score,
            category=category_of(score),
            **fields,
        )

    def failure_reason(self, threshold: float) -> str:
        reason = f"score {self.score:.2f} ({self.n_resolved}/{self.n_tests} hidden tests) < {threshold:.2f}"
        if self.error_code:
            reason += f": {self.error_code}"
        elif self.branch_errors:
            reason += "; branch errors " + ", ".join(
                f"{b}: {','.join(codes)}" for b, codes in sorted(self.branch_errors.items())
            )
        return reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
