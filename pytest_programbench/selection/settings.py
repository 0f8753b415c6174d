"""The effective settings of a session, resolved once from the command line and ini.

Every ``--pb-*`` option has an ini twin (``pb_*``); the command line wins, then the
ini file, then the default. The result is a frozen object built in
``pytest_configure``, so every later step reads one validated truth, and a bad value
fails fast with a :class:`pytest.UsageError` naming where it came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_programbench.model import DIFFICULTIES, LANGUAGE_ALIASES

DEFAULT_IMAGE_TAG = "task_cleanroom_v6"
# mini-swe-agent's ProgramBench config keeps a task container 7 h; the agent gets the same bound.
DEFAULT_AGENT_TIMEOUT = 7 * 3600
BUILTIN_AGENTS = ("none", "command", "mini-swe-agent")
INTEGRITY_MODES = ("report", "strict")
#: What the agent may do with the task's ./executable (sandbox.protect_reference).
REFERENCE_MODES = ("readable", "exec-only")
PULL_POLICIES = ("never", "missing", "always")
# pytest reads int and float ini values since 8.4; before that every scalar ini value is a string.
_NUMBER_INI_TYPES = tuple(int(p) for p in pytest.__version__.split(".")[:2]) >= (8, 4)


#: How an option's value is turned into its Settings field: (value, where it came from, config).
Parse = Callable[[Any, str, pytest.Config], Any]


@dataclass(frozen=True)
class Option:
    """One user-facing setting: its flag, ini twin, help, default, and the field it fills.

    ``kind`` says how pytest reads it: ``string`` (one value), ``list`` (repeatable, comma
    lists), ``bool`` (a flag), ``int``/``float`` (one value, a number in ini files too).
    ``parse`` checks the raw value and returns what ``Settings.<field>`` holds; an option
    without a field is read by the rules of :func:`resolve` instead.
    """

    flag: str
    help: str
    kind: str = "string"
    default: str = ""  # shown in --help as "(default: ...)"
    field: str = ""
    parse: Parse | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _plain(parse: Callable[[Any, str], Any]) -> Parse:
    """A parser that needs no config (most of them)."""
    return lambda value, where, config: parse(value, where)


def _flag(value: Any, where: str, config: pytest.Config) -> bool:
    return True


def _text(value: Any, where: str, config: pytest.Config) -> str:
    return str(value).strip()


# The selection options: giving any of them (or its ini twin) switches the plugin on.
SELECTION_OPTIONS = (
    Option(
        "--pb-language",
        "Languages to run: rust/rs, go, c, cpp/c++, haskell/hs, java, or all; repeatable or a comma list",
        "list",
        "all",
        "languages",
        _plain(lambda v, w: parse_languages(v, w)),
        metavar="L",
    ),
    Option(
        "--pb-difficulty",
        "Difficulties to run: easy, medium, hard, unrated; repeatable or a comma list",
        "list",
        "all",
        "difficulties",
        _plain(lambda v, w: parse_difficulties(v, w)),
        metavar="D",
    ),
    Option(
        "--pb-instance",
        "Run instances whose id matches this regex (re.match, like `programbench eval --filter`)",
        default="all",
        field="instance_pattern",
        parse=_plain(lambda v, w: parse_pattern(v, w)),
        metavar="REGEX",
    ),
    Option(
        "--pb-slice",
        "Run this slice A:B of the selected instances (after the other filters)",
        default="all of them",
        field="slice",
        parse=_plain(lambda v, w: parse_slice(v, w)),
        metavar="A:B",
    ),
    Option(
        "--pb-tasks-dir",
        "Task definitions in the programbench layout (DIR/<id>/task.yaml)",
        default="the programbench package's 200 tasks",
        field="tasks_dir",
        parse=lambda v, w, c: _resolve_path(v, c, w),
        metavar="DIR",
    ),
    Option(
        "--pb-selftest",
        "Check this machine's setup: build the bundled self-test task's image if missing and score "
        "its reference submission end to end",
        "bool",
        "off",
    ),
    Option(
        "--pb-submissions",
        "Replay: score DIR/<id>/submission.tar.gz instead of running an agent "
        "(alone, it selects the instances DIR holds)",
        default="run an agent",
        field="submissions_dir",
        parse=lambda v, w, c: _resolve_path(v, c, w),
        metavar="DIR",
    ),
)
OTHER_OPTIONS = (
    Option(
        "--pb-image-tag",
        "Tag of the task images",
        default=DEFAULT_IMAGE_TAG,
        field="image_tag",
        parse=_plain(lambda v, w: parse_image_tag(v, w)),
        metavar="TAG",
    ),
    Option(
        "--pb-attempts",
        "Run every instance K times (pass@k, mean over attempts)",
        "int",
        "1",
        "attempts",
        _plain(lambda v, w: parse_positive_int(v, w)),
        metavar="K",
    ),
    Option(
        "--pb-blob-dir",
        "Hidden-test archives DIR/<id>/tests/<branch>.tar.gz "
        "(PROGRAMBENCH_HF_REPO/REVISION, HF_TOKEN, HF_HUB_OFFLINE honoured)",
        default="$PROGRAMBENCH_BLOB_DIR when set (as programbench reads it), else download from Hugging Face",
        field="blob_dir",
        parse=lambda v, w, c: _resolve_path(v, c, w),
        metavar="DIR",
    ),
    Option(
        "--pb-output",
        "Run directory (programbench eval/info layout)",
        default=".programbench/runs/<run id> in the directory pytest starts in (runs/latest: the newest)",
        field="output_dir",
        parse=lambda v, w, c: _resolve_path(v, c, w, must_exist=False),
        metavar="DIR",
    ),
    Option(
        "--pb-report",
        "Write the results as JSON to FILE",
        default="none",
        field="report_file",
        parse=lambda v, w, c: str((_base(c, w) / os.path.expanduser(v)).resolve()),
        metavar="FILE",
    ),
    Option(
        "--pb-cpus",
        "CPUs per agent and scoring container; always clamped to what the engine has",
        "int",
        "the engine's cores, at most 10 (the official value)",
        "cpus",
        _plain(lambda v, w: parse_positive_int(v, w)),
        metavar="N",
    ),
    Option(
        "--pb-pull",
        "Pull task images: never, missing or always",
        default="missing",
        field="pull",
        parse=_plain(lambda v, w: parse_choice(v, w, PULL_POLICIES)),
        metavar="WHEN",
    ),
    Option(
        "--pb-agent",
        "Agent that solves each instance: none, command, mini-swe-agent, or module:attr (a callable "
        "(instance, sandbox) or an object with run(instance, sandbox)); conftest.py may choose "
        "instead (see docs/agents.md)",
        default="none given: the item errors unless a hook or fixture names one",
        field="agent",
        parse=_plain(lambda v, w: parse_agent(v, w)),
        metavar="NAME",
    ),
    Option(
        "--pb-agent-cmd",
        "Host command of the `command` agent; it gets PB_CONTAINER_ID, DOCKER_HOST, PB_INSTANCE_ID, "
        "PB_WORKSPACE and PB_PROMPT_FILE in its environment",
        default="none",
        field="agent_cmd",
        parse=_text,
        metavar="CMD",
    ),
    Option(
        "--pb-model",
        "Model of the mini-swe-agent agent, e.g. anthropic/claude-sonnet-4-5",
        default="mini-swe-agent's configured model",
        field="model",
        parse=_text,
        metavar="MODEL",
    ),
    Option(
        "--pb-agent-config",
        "YAML merged over mini-swe-agent's ProgramBench config (agent, model, environment keys)",
        default="none",
        field="agent_config",
        parse=lambda v, w, c: _existing_file(v, c, w),
        metavar="FILE",
    ),
    Option(
        "--pb-agent-timeout",
        "Wall-clock limit of the agent phase per instance: seconds or 30m/2h",
        default=f"{DEFAULT_AGENT_TIMEOUT // 3600}h",
        field="agent_timeout",
        parse=_plain(lambda v, w: parse_duration(v, w)),
        metavar="S",
    ),
    Option(
        "--pb-memory",
        "Memory limit of the agent container (e.g. 8g)",
        default="no limit",
        field="memory",
        parse=_plain(lambda v, w: parse_memory(v, w)),
        metavar="SIZE",
    ),
    Option("--pb-network", "Give the agent container network access", "bool", "none", "network", _flag),
    Option(
        "--pb-scoring-memory",
        "Memory limit of each scoring container (e.g. 16g); a limit can change scores: a build or "
        "test that needs more fails",
        default="none, as the official evaluator",
        field="scoring_memory",
        parse=_plain(lambda v, w: parse_memory(v, w)),
        metavar="SIZE",
    ),
    Option(
        "--pb-max-submission",
        "Largest packed submission (e.g. 200m, 2g); a replayed archive may unpack to 8x this",
        default="1g",
        field="max_submission",
        parse=_plain(lambda v, w: parse_bytes(v, w)),
        metavar="SIZE",
    ),
    Option(
        "--pb-disk",
        "Disk the agent container may write (e.g. 20g): a quota where the engine has one, else the "
        "agent is stopped when it passes it",
        default="no limit",
        field="disk",
        parse=_plain(lambda v, w: parse_bytes(v, w)),
        metavar="SIZE",
    ),
    Option(
        "--pb-force",
        "Re-score every instance in full, ignoring verdicts a previous session left in the run directory "
        "(--pb-output). Agents are not rerun: their packed submissions are scored again",
        "bool",
        "off",
        "force",
        _flag,
    ),
    Option(
        "--pb-force-agent",
        "Rerun the agents too (implies --pb-force): nothing a previous session left is reused",
        "bool",
        "off",
        "force_agent",
        _flag,
    ),
    Option(
        "--pb-branch-workers",
        "Test branches of one instance scored in parallel, each in its own container, like "
        "`programbench eval --branch-workers`; they share the engine's CPUs",
        "int",
        "1",
        "branch_workers",
        _plain(lambda v, w: parse_positive_int(v, w)),
        metavar="N",
    ),
    Option(
        "--pb-branch-retries",
        "Rerun a test branch whose JUnit XML reports pytest-xdist worker crashes up to N times in a fresh "
        "container, like `programbench eval --branch-retries`; 0 disables",
        "int",
        "1",
        "branch_retries",
        _plain(lambda v, w: parse_count(v, w)),
        metavar="N",
    ),
    Option(
        "--pb-keep", "Keep agent containers after their item, for debugging", "bool", "off", "keep", _flag
    ),
    Option(
        "--pb-keep-other-tests",
        "Also run the other tests pytest collects (by default a ProgramBench session deselects them)",
        "bool",
        "off",
        "keep_other_tests",
        _flag,
    ),
    Option(
        "--pb-cleanup",
        "Remove containers left behind by sessions that are no longer running, then exit",
        "bool",
        "off",
    ),
    Option(
        "--pb-integrity",
        "What the integrity audit's findings do: report (the official score, findings beside it) "
        "or strict (a flagged instance counts 0)",
        default="report",
        field="integrity",
        parse=_plain(lambda v, w: parse_choice(v, w, INTEGRITY_MODES)),
        metavar="MODE",
    ),
    Option(
        "--pb-reference",
        "What the agent may do with the task's ./executable: readable (as the official harness hands "
        "it over) or exec-only (an ELF binary becomes root-owned mode 0111: it runs, it cannot be read "
        "or copied; a script stays readable)",
        default="readable",
        field="reference",
        parse=_plain(lambda v, w: parse_choice(v, w, REFERENCE_MODES)),
        metavar="MODE",
    ),
    Option(
        "--pb-threshold",
        "An item passes when its score >= X (0..1)",
        "float",
        "1.0 (resolved)",
        "threshold",
        _plain(lambda v, w: parse_fraction(v, w)),
        metavar="X",
    ),
    Option(
        "--pb-gold",
        "Gold run: score each selected task's reference ./executable, as it stands in its image, against "
        "the hidden tests on this machine (no agent, no compile); writes <run dir>/gold_mask.json",
        "bool",
        "off",
        "gold",
        _flag,
    ),
    Option(
        "--pb-gold-mask",
        "A gold_mask.json of a --pb-gold run: rows get gold_score, the share of the tests the reference "
        "passes there that the submission passes (the official score is unchanged)",
        default="none",
        field="gold_mask",
        parse=lambda v, w, c: _existing_file(v, c, w),
        metavar="FILE",
    ),
)
ALL_OPTIONS = SELECTION_OPTIONS + OTHER_OPTIONS


@dataclass(frozen=True)
class Settings:
    """What the user asked for, validated. Only builtins, so it pickles anywhere."""

    active: bool
    languages: tuple[str, ...] = ()
    difficulties: tuple[str, ...] = ()
    instance_pattern: str = ""
    slice: tuple[int | None, int | None] | None = None
    tasks_dir: str = ""
    image_tag: str = DEFAULT_IMAGE_TAG
    attempts: int = 1
    threshold: float = 1.0
    selftest: bool = False
    submissions_dir: str = ""
    blob_dir: str = ""
    output_dir: str = ""
    report_file: str = ""
    cpus: int = 0  # 0: decide from the engine
    pull: str = "missing"
    agent: str = ""
    agent_cmd: str = ""
    model: str = ""
    agent_config: str = ""
    agent_timeout: float = DEFAULT_AGENT_TIMEOUT
    memory: str = ""
    network: bool = False
    max_submission: int = 1 << 30  # bytes, packed
    disk: int = 0  # bytes of the agent container's writable layer; 0: unlimited
    keep: bool = False
    keep_other_tests: bool = False  # run the non-ProgramBench tests pytest collected too
    node_ids: tuple[str, ...] = ()  # parameter ids of instance node ids given as arguments
    force: bool = False  # re-score everything (agents' packed submissions are reused)
    force_agent: bool = False  # rerun agents too; implies force
    branch_workers: int = 1  # programbench eval --branch-workers
    branch_retries: int = 1  # programbench eval --branch-retries
    integrity: str = "report"
    reference: str = "readable"  # the agent's access to ./executable (--pb-reference)
    scoring_memory: str = ""
    gold: bool = False  # score the tasks' references (gold.py), not submissions
    gold_mask: str = ""  # a gold_mask.json: rows get gold_score beside the official score

    @property
    def explicit_selection(self) -> bool:
        """Did the user name instances (not merely a run directory to replay)?"""
        return bool(
            self.languages
            or self.difficulties
            or self.instance_pattern
            or self.slice is not None
            or self.tasks_dir
        )

    def describe(self) -> str:
        """The selection in words, for the header and 'matches nothing' messages."""
        parts = []
        if self.languages:
            parts.append("language=" + ",".join(self.languages))
        if self.difficulties:
            parts.append("difficulty=" + ",".join(self.difficulties))
        if self.instance_pattern:
            parts.append(f"instance=~{self.instance_pattern!r}")
        if self.slice is not None:
            start, stop = self.slice
            parts.append(f"slice={'' if start is None else start}:{'' if stop is None else stop}")
        if self.submissions_dir and not self.explicit_selection:
            parts.append(f"with a submission in {self.submissions_dir}")
        return " ".join(parts) or "all instances"


def add_options(parser: pytest.Parser, options: Sequence[Option] = ALL_OPTIONS) -> None:
    group = parser.getgroup("programbench", "ProgramBench benchmark (pytest-programbench)")
    for opt in options:
        text = f"{opt.help} (default: {opt.default})" if opt.default else opt.help
        if opt.kind == "list":
            group.addoption(opt.flag, action="append", dest=opt.dest, metavar=opt.metavar, help=text)
            parser.addini(opt.dest, text, type="args")
        elif opt.kind == "bool":
            group.addoption(opt.flag, action="store_const", const=True, dest=opt.dest, help=text)
            parser.addini(opt.dest, text, type="bool", default=None)
        else:
            # Numbers stay strings on the command line so our parsers word the error.
            group.addoption(opt.flag, dest=opt.dest, metavar=opt.metavar, help=text)
            parser.addini(opt.dest, text, type=_ini_type(opt.kind), default=None)


def _ini_type(kind: str) -> Literal["string", "int", "float"]:
    """Numbers are numbers in ini files where pytest can say so (8.4+: a TOML 3 is not a string)."""
    if kind in ("int", "float") and _NUMBER_INI_TYPES:
        return "int" if kind == "int" else "float"
    return "string"


def _raw(config: pytest.Config, opt: Option) -> tuple[Any, str]:
    """The user's value for one option and where it came from (None when unset)."""
    value = config.getoption(opt.dest)
    if value is not None:
        return value, opt.flag
    where = f"ini option {opt.dest}"
    try:
        ini = config.getini(opt.dest)
    except (TypeError, ValueError, pytest.UsageError) as exc:  # an ini number pytest could not read
        raise pytest.UsageError(
            f"programbench: {where} is not valid ({exc}); expected a{'n' if opt.kind == 'int' else ''} "
            f"{opt.kind} number"
        ) from None
    if ini not in (None, "", []):
        return ini, where
    return None, ""


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip().lower() for v in values for part in str(v).split(",") if part.strip()]


def _usage(where: str, value: object, expected: str) -> pytest.UsageError:
    return pytest.UsageError(f"programbench: {where}={value!r} is not valid; {expected}")


def parse_languages(values: Sequence[str], where: str) -> tuple[str, ...]:
    wanted = _split(values)
    if "all" in wanted:
        return ()
    out: list[str] = []
    for name in wanted:
        if name not in LANGUAGE_ALIASES:
            accepted = ", ".join(sorted(LANGUAGE_ALIASES)) + ", all"
            raise _usage(where, name, f"accepted languages: {accepted}")
        canonical = LANGUAGE_ALIASES[name]
        if canonical not in out:
            out.append(canonical)
    return tuple(out)


def parse_difficulties(values: Sequence[str], where: str) -> tuple[str, ...]:
    out: list[str] = []
    for name in _split(values):
        if name not in DIFFICULTIES:
            raise _usage(where, name, f"accepted difficulties: {', '.join(DIFFICULTIES)}")
        if name not in out:
            out.append(name)
    return tuple(out)


def parse_slice(spec: str, where: str) -> tuple[int | None, int | None]:
    match = re.fullmatch(r"\s*(-?\d*)\s*:\s*(-?\d*)\s*", spec)
    if not match:
        raise _usage(where, spec, "expected A:B with optional integers, e.g. 0:10, :5 or 20:")
    start, stop = (int(g) if g else None for g in match.groups())
    return start, stop


def parse_pattern(pattern: str, where: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _usage(where, pattern, f"it is not a regular expression ({exc})") from None
    return pattern


def parse_positive_int(value: object, where: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise _usage(where, value, "expected a whole number >= 1")
    return number


def parse_count(value: object, where: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if number < 0:
        raise _usage(where, value, "expected a whole number >= 0")
    return number


def parse_fraction(value: object, where: str) -> float:
    try:
        number = float(str(value))
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise _usage(where, value, "expected a score between 0 and 1, e.g. 0.95")
    return number


def parse_duration(value: object, where: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value).lower())
    if not match or float(match.group(1)) <= 0:
        raise _usage(where, value, "expected a duration > 0: seconds, or with s/m/h, e.g. 900, 30m, 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def parse_memory(value: object, where: str) -> str:
    text = str(value).strip().lower()
    if not re.fullmatch(r"\d+[bkmg]?", text) or int(re.sub(r"\D", "", text)) == 0:
        raise _usage(where, value, "expected a size such as 512m or 8g")
    return text


def parse_bytes(value: object, where: str) -> int:
    """A size such as 512m, 2g or 1048576 (bytes), in bytes; binary units like Docker's."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", str(value).lower())
    number = float(match.group(1)) * 1024 ** "bkmgt".index(match.group(2) or "b") if match else 0
    if number < 1:
        raise _usage(where, value, "expected a size such as 512m, 2g or 20g")
    return int(number)


def parse_image_tag(value: object, where: str) -> str:
    tag = str(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise _usage(where, tag, "expected a Docker tag such as task_cleanroom_v6")
    return tag


def parse_choice(value: object, where: str, accepted: Sequence[str]) -> str:
    choice = str(value).strip().lower()
    if choice not in accepted:
        raise _usage(where, choice, "accepted: " + ", ".join(accepted))
    return choice


def parse_agent(value: object, where: str) -> str:
    name = str(value).strip()
    if name in BUILTIN_AGENTS or name == "selftest" or re.fullmatch(r"[\w.]+:[\w.]+", name):
        return name
    raise _usage(where, value, f"expected one of {', '.join(BUILTIN_AGENTS)}, or module:attr")


def _base(config: pytest.Config, where: str) -> Path:
    # CLI paths are relative to where pytest was invoked; ini paths to the ini file.
    if where.startswith("ini") and config.inipath is not None:
        return config.inipath.parent
    return Path(config.invocation_params.dir)


def _resolve_path(value: str, config: pytest.Config, where: str, *, must_exist: bool = True) -> str:
    path = (_base(config, where) / os.path.expanduser(value)).resolve()
    if must_exist and not path.is_dir():
        raise _usage(where, value, f"{path} is not a directory")
    if not must_exist and path.exists() and not path.is_dir():
        raise _usage(where, value, f"{path} exists and is not a directory")
    return str(path)


def home(config: pytest.Config) -> Path:
    """Where generated run directories and the self-test's files go: ``.programbench`` in the
    directory pytest starts in.

    Not the rootdir: pytest picks that before plugins add their options, so a path
    option written with a space (``--pb-submissions /abs/dir``) can move it.
    """
    return Path(config.invocation_params.dir) / ".programbench"


def parse_node_id(arg: str) -> str | None:
    """The parameter id of an instance node id such as ``programbench::instance[ID]``; None if not one.

    Also accepts what pytest prints when the rootdir is elsewhere (``../programbench::...``) and
    the collector alone (``programbench``: "" meaning all selected instances) unless a file or
    directory of that name exists (a ``::`` part cannot name anything in a directory).
    """
    match = re.fullmatch(r"(?:.*/)?programbench(::instance(?:\[(.+)\])?)?", arg)
    if match is None or (not match.group(1) and Path(arg).exists()):
        return None
    return match.group(2) or ""


def instance_pattern_of(node_ids: Sequence[str]) -> str:
    """A ``--pb-instance`` pattern matching exactly the instances of these parameter ids."""
    ids = sorted({re.sub(r"-attempt\d+$", "", i) for i in node_ids if i})
    return "(" + "|".join(re.escape(i) for i in ids) + ")$" if ids else ".*"


def _existing_file(value: str, config: pytest.Config, where: str) -> str:
    path = (_base(config, where) / os.path.expanduser(value)).resolve()
    if not path.is_file():
        raise _usage(where, value, f"{path} is not a file")
    return str(path)


def _selftest_inputs(config: pytest.Config) -> dict[str, Any]:
    """The self-test task and its hidden tests (written under home()); its agent is scripted."""
    from pytest_programbench import selftest

    root = home(config) / "selftest"
    return {
        "selftest": True,
        "tasks_dir": str(selftest.tasks_dir()),
        "blob_dir": str(selftest.write_blob_dir(root / "blobs")),
    }


def resolve(config: pytest.Config, node_ids: Sequence[str] = ()) -> Settings:
    """Build the session's settings; raises pytest.UsageError on any bad value.

    Each option's parser fills its field; then the few rules between options.
    ``node_ids``: parameter ids of instance node ids pasted as arguments; they select
    the plugin (and, alone, those instances) like a selection option.
    """
    raw = {opt.dest: _raw(config, opt) for opt in ALL_OPTIONS}
    active = bool(node_ids) or any(raw[opt.dest][0] is not None for opt in SELECTION_OPTIONS)
    if not active:
        for flag in ("--pb-agent", "--pb-gold"):
            if config.getoption(flag[2:].replace("-", "_")) is not None:
                raise pytest.UsageError(
                    f"programbench: {flag} needs instances to run; add a selection such as "
                    "--pb-language rust, --pb-instance REGEX or --pb-selftest"
                )
        return Settings(active=False)
    kwargs: dict[str, Any] = {"node_ids": tuple(node_ids)}
    if node_ids and not any(raw[opt.dest][0] is not None for opt in SELECTION_OPTIONS):
        kwargs["instance_pattern"] = instance_pattern_of(node_ids)
    for opt in ALL_OPTIONS:
        value, where = raw[opt.dest]
        if opt.parse is not None and value is not None and value is not False:  # False: an ini bool off
            kwargs[opt.field] = opt.parse(value, where, config)
    if raw["pb_selftest"][0]:
        # The bundled task replaces any tasks dir; a blob dir given alongside still wins.
        inputs = _selftest_inputs(config)
        kwargs.update(selftest=True, tasks_dir=inputs["tasks_dir"])
        kwargs.setdefault("blob_dir", inputs["blob_dir"])
        if not kwargs.get("agent") and not kwargs.get("submissions_dir") and not kwargs.get("gold"):
            kwargs["agent"] = "selftest"
    if "blob_dir" not in kwargs and os.environ.get("PROGRAMBENCH_BLOB_DIR"):
        kwargs["blob_dir"] = _resolve_path(
            os.environ["PROGRAMBENCH_BLOB_DIR"], config, "environment variable PROGRAMBENCH_BLOB_DIR"
        )
    if kwargs.get("force_agent"):
        kwargs["force"] = True  # a rerun agent leaves a new submission: nothing old can be reused
    if kwargs.get("gold"):
        for name, flag in (
            ("agent", "pb_agent"),
            ("submissions_dir", "pb_submissions"),
            ("gold_mask", "pb_gold_mask"),
        ):
            if kwargs.get(name):
                raise _usage(
                    raw[flag][1],
                    raw[flag][0],
                    "--pb-gold scores the tasks' own references, not submissions: leave it out, "
                    "or leave out --pb-gold",
                )
    if kwargs.get("agent") == "command" and not kwargs.get("agent_cmd"):
        raise _usage(raw["pb_agent"][1], "command", "the command agent needs --pb-agent-cmd CMD")
    return Settings(active=True, **kwargs)
