"""The domain objects: small frozen dataclasses of builtins, so they cross xdist."""

from __future__ import annotations

import copy
import math
import os
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# The vocabularies, each defined here once: settings parse against them, tasks normalise
# to them, markers and aggregates are ordered by them, rows carry their values.

#: ProgramBench's own spelling (task.yaml ``language``) -> the name we show and mark with.
LANGUAGE_ALIASES: dict[str, str] = {
    "rust": "rust",
    "rs": "rust",
    "go": "go",
    "golang": "go",
    "c": "c",
    "cpp": "cpp",
    "c++": "cpp",
    "cxx": "cpp",
    "haskell": "haskell",
    "hs": "haskell",
    "java": "java",
}
LANGUAGES = ("rust", "go", "c", "cpp", "haskell", "java")
#: How the prompt names each language ("was written in C++").
LANGUAGE_NAMES = {"rust": "Rust", "go": "Go", "c": "C", "cpp": "C++", "haskell": "Haskell", "java": "Java"}
DIFFICULTIES = ("easy", "medium", "hard", "unrated")  # unrated: a task.yaml without a difficulty
#: What a score means (category_of), best first; an item that scored ends as one of these.
CATEGORIES = ("resolved", "almost", "partial", "zero")
#: An item with no score: harness trouble, a dead worker, a session cut short. Counts 0.
ERROR = "error"
#: Selected but without a verdict, in this session or the run directory: counts 0 in the mean.
NOT_RUN = "not_run"
#: Every value of a verdict's ``outcome`` (and a row's): the categories, then ERROR and NOT_RUN.
OUTCOMES = (*CATEGORIES, ERROR, NOT_RUN)
#: The progress letter pytest prints for each category.
LETTERS = {"resolved": "R", "almost": "A", "partial": "P", "zero": "Z"}

PROMPT = """\
Rebuild a program from its behaviour.

/workspace holds a compiled program, ./executable, and the documentation that shipped with it. The original
was written in {language}. Write a new codebase, from scratch, whose build produces an ./executable that
behaves exactly like the given one: same output, same exit codes, same files written, for every input.

Deliver in /workspace:
- the source code of your implementation;
- an executable ./compile.sh that builds it into ./executable at the workspace root, starting from a fresh
  checkout of your files. It runs without network access, so it cannot download dependencies.

The rules:
- Learn what the program does only by running it and by reading the bundled documentation.
- Do not look for the original source anywhere: no repositories, package registries or websites.
- Do not decompile, disassemble, strace or ltrace ./executable (your own binaries are fair game).
- Do not wrap, copy or call the given ./executable, or any installed copy of the same tool, from your build
  or your program.
Submissions that break these rules are disqualified.

Hidden tests then run your build and count how many of them it passes.
"""


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
    def rel_dir(self) -> str:
        """Where this attempt's files live in the run directory; each attempt dir is itself a run dir."""
        if self.attempts == 1:
            return self.instance_id
        return f"attempt-{self.attempt}/{self.instance_id}"

    @property
    def prompt(self) -> str:
        """The task statement an agent is given."""
        return PROMPT.format(language=LANGUAGE_NAMES.get(self.language, self.language))

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


def clean_steps(value: object) -> int | None:
    """An agent's step count if it is one (an int >= 0), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def clean_cost(value: object) -> float | None:
    """An agent's cost in dollars if it is one (a finite number >= 0), else None.

    Agents report what they like; "free", NaN or 10**400 must not reach the summary's
    ``f"${cost:.2f}"`` (or a resumed run's, which reads it back from disk).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


@dataclass(frozen=True)
class AgentRun:
    """What the agent phase of one item did."""

    name: str
    seconds: float
    timed_out: bool = False
    exit_status: str = ""
    steps: int | None = None
    cost: float | None = None
    #: What the agent could do with ./executable (sandbox.protect_reference), '' when not known.
    reference: str = ""

    def __post_init__(self) -> None:
        # The last line of defence: a marker written by an older version may hold anything.
        object.__setattr__(self, "steps", clean_steps(self.steps))
        object.__setattr__(self, "cost", clean_cost(self.cost))


#: A row's flat agent keys -> the AgentRun field each holds (rows and markers are flat).
AGENT_ROW_KEYS = {
    "agent": "name",
    "agent_seconds": "seconds",
    "agent_timed_out": "timed_out",
    "agent_exit_status": "exit_status",
    "agent_steps": "steps",
    "agent_cost": "cost",
    "agent_reference": "reference",
}
#: The flat agent keys of a row with no agent run (replay, or no agent reached).
NO_AGENT_ROW = {
    "agent": None,
    "agent_seconds": None,
    "agent_timed_out": False,
    "agent_exit_status": None,
    "agent_steps": None,
    "agent_cost": None,
    "agent_reference": None,
}


def agent_run_of(row: dict[str, Any]) -> AgentRun | None:
    """The agent run a flat row (a report row, a marker's verdict) records, if it records one."""
    if not isinstance(row.get("agent"), str):
        return None
    values = {f: row[k] for k, f in AGENT_ROW_KEYS.items() if row.get(k) is not None}
    try:
        return AgentRun(**{"seconds": 0.0, **values})
    except TypeError:
        return None


@dataclass(frozen=True)
class Submission:
    """What ``pb_submission`` hands on: the archive to score and the agent run that packed it.

    ``agent_run`` is None for a replayed archive (or one an overriding fixture made).
    """

    path: Path
    agent_run: AgentRun | None = None

    @classmethod
    def of(cls, value: Submission | str | os.PathLike[str]) -> Submission:
        """A Submission from what a fixture returned: ours, or a bare path from a conftest override."""
        return value if isinstance(value, Submission) else cls(Path(value))


@dataclass(frozen=True)
class Outcome:
    """An item's verdict: as scored by the official evaluator, or an error that counts 0.

    The one shape of every row: ``to_dict`` flattens it (the agent run into ``agent_*``
    keys) for the JSON report, JUnit and the resume marker.
    """

    instance_id: str
    attempt: int
    language: str
    difficulty: str
    score: float
    n_resolved: int
    n_tests: int
    outcome: str  # one of OUTCOMES: category_of(score), or ERROR (no score)
    error_code: str | None = None
    message: str = ""  # ERROR, or a 0 without an eval.json: what went wrong and what to do
    branch_errors: dict[str, list[str]] = field(default_factory=dict)
    eval_seconds: float = 0.0
    agent: AgentRun | None = None  # None: a replayed archive, or no agent ran
    reused: bool = False  # taken from a previous session's run directory (resume)
    #: The integrity audit's findings (integrity.Finding as dicts); empty when it saw nothing.
    findings: list[dict[str, str]] = field(default_factory=list)
    #: Set when --pb-integrity strict counted a flagged instance as 0: the evaluator's score.
    official_score: float | None = None
    image_id: str | None = None  # the task image scored (sha256:...), pinned before the agent ran
    # A previous session's verdict scored again: "part" (only ``rescored_branches``, merged into
    # its eval.json) or "full", and why; "" when there was none or it was reused.
    rescored: str = ""
    rescored_branches: list[str] = field(default_factory=list)
    rescore_reason: str = ""

    def counted_strictly(self) -> Outcome:
        """Under ``--pb-integrity strict``: a flagged instance counts 0, its official score kept beside."""
        if not self.findings or self.official_score is not None:
            return self
        return replace(self, score=0.0, outcome=category_of(0.0), official_score=self.score)

    @classmethod
    def from_score(cls, instance: Instance, *, score: float, **fields: Any) -> Outcome:
        return cls(**_identity(instance), score=score, outcome=category_of(score), **fields)

    @classmethod
    def error(cls, instance: Instance, code: str, message: str) -> Outcome:
        """An item with no score (harness trouble, a dead worker, a run cut short): it counts 0."""
        return cls(
            **_identity(instance),
            score=0.0,
            n_resolved=0,
            n_tests=0,
            outcome=ERROR,
            error_code=code,
            message=message,
        )

    @classmethod
    def not_run(cls, instance: Instance, cause: str) -> Outcome:
        """A selected item with no verdict, in this session or the run directory: it counts 0."""
        return replace(cls.error(instance, NOT_RUN, cause), outcome=NOT_RUN)

    def failure_reason(self, threshold: float) -> str:
        if self.official_score is not None:
            from pytest_programbench.scoring.integrity import describe

            return (
                f"counted 0 under --pb-integrity strict (official score {self.official_score:.2f}, "
                f"{self.n_resolved}/{self.n_tests} hidden tests): {describe(self.findings)}"
            )
        reason = f"score {self.score:.2f} ({self.n_resolved}/{self.n_tests} hidden tests) < {threshold:.2f}"
        if self.error_code:
            reason += f": {self.error_code}"
            if self.message:  # a 0 the evaluator gave without a result (scoring.unscored): the cause
                reason += f" ({self.message})"
        elif self.branch_errors:
            reason += "; branch errors " + ", ".join(
                f"{b}: {','.join(codes)}" for b, codes in sorted(self.branch_errors.items())
            )
        if self.agent is not None and self.agent.timed_out:
            reason += f"; the agent timed out after {self.agent.seconds or 0:.0f}s"
        if self.findings:
            from pytest_programbench.scoring.integrity import describe

            reason += f"; integrity: {describe(self.findings)}"
        return reason

    def to_dict(self) -> dict[str, Any]:
        """The verdict written out: flat, the agent run as ``agent_*`` keys (see agent_run_of)."""
        row: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "agent":
                run = self.agent
                row.update(
                    NO_AGENT_ROW if run is None else {k: getattr(run, a) for k, a in AGENT_ROW_KEYS.items()}
                )
            else:
                row[f.name] = copy.deepcopy(getattr(self, f.name))
        return row


def _identity(instance: Instance) -> dict[str, Any]:
    """The fields of a verdict that name its item."""
    return {
        "instance_id": instance.instance_id,
        "attempt": instance.attempt,
        "language": instance.language,
        "difficulty": instance.difficulty,
    }
