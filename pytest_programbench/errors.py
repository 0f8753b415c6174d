"""Errors a user can hit, each carrying what to do about it.

Harness trouble (no engine, a missing image or archive, a broken submission) must
surface as a pytest *error* on the item, never as a silent zero score. Raising one
of these from a fixture does exactly that, and the message is the one-line cause
the reports show.
"""

from __future__ import annotations


class ProgramBenchError(Exception):
    """Base of every harness error; ``code`` is the short tag reports use."""

    code = "harness_error"

    def __init__(self, message: str, fix: str = "") -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message}. {fix}" if fix else message)


class EngineUnavailable(ProgramBenchError):
    code = "engine_unavailable"

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(
            f"no Docker engine answers at {host} ({detail})",
            "Start one (`sudo systemctl start docker`, or `dockerd &`) or point DOCKER_HOST at a running "
            "engine",
        )
        self.host = host


class ImageMissing(ProgramBenchError):
    code = "image_missing"

    def __init__(self, image: str, fix: str = "") -> None:
        super().__init__(
            f"image {image} is not on the Docker engine",
            fix or f"Pull it (`docker pull {image}`) or run with --pb-pull missing",
        )
        self.image = image


class ImageBuildFailed(ImageMissing):
    """A build the harness started failed; the message carries the build's own error."""

    code = "image_build_failed"

    def __init__(self, image: str, detail: str, fix: str = "") -> None:
        ProgramBenchError.__init__(
            self,
            f"building {image} failed: {detail}",
            fix or "Fix what the build's error names, or build the image by hand with `docker build`",
        )
        self.image = image
        self.detail = detail


class ImagePullFailed(ProgramBenchError):
    code = "image_pull_failed"

    def __init__(self, image: str, detail: str, fix: str = "") -> None:
        super().__init__(
            f"pulling {image} failed: {detail}",
            fix
            or "Check the registry is reachable and the name is right (PROGRAMBENCH_DOCKER_ORG changes "
            "the organisation), or load the image by hand with `docker load`",
        )
        self.image = image
        self.detail = detail


class HiddenTestsMissing(ProgramBenchError):
    code = "hidden_tests_missing"

    def __init__(self, instance_id: str, branch: str, where: str) -> None:
        super().__init__(
            f"hidden-test archive for {instance_id} branch {branch} not found in {where}",
            "Point --pb-blob-dir at a directory laid out as <dir>/<instance>/tests/<branch>.tar.gz, "
            "or let the plugin download them from Hugging Face (unset HF_HUB_OFFLINE, set HF_TOKEN "
            "if the dataset needs one)",
        )
        self.instance_id = instance_id
        self.branch = branch


class HiddenTestsUnavailable(HiddenTestsMissing):
    """The Hub could not be asked (unreachable, offline without a cached copy, access refused).

    A subclass of :class:`HiddenTestsMissing` so callers that handle "no archive" handle
    this too; the message says why the Hub could not help and what to do about it.
    """

    code = "hidden_tests_unavailable"

    def __init__(self, instance_id: str, where: str, detail: str, fix: str, branch: str = "") -> None:
        # Skip HiddenTestsMissing.__init__: its message is about a branch the Hub lacks.
        ProgramBenchError.__init__(
            self, f"cannot get the hidden tests of {instance_id} from {where}: {detail}", fix
        )
        self.instance_id = instance_id
        self.branch = branch  # the first archive known to be needed, when there is one


class HiddenTestsBroken(HiddenTestsMissing):
    """A branch's archive is there but the task image's tar cannot unpack it (a truncated download, say)."""

    code = "hidden_tests_broken"

    def __init__(self, instance_id: str, branch: str, path: str, detail: str, fix: str = "") -> None:
        ProgramBenchError.__init__(
            self,
            f"hidden-test archive {path} ({instance_id} branch {branch}) is broken: {detail}",
            fix
            or f"Replace it with a good copy of {instance_id}/tests/{branch}.tar.gz from the dataset "
            "(programbench/ProgramBench-Tests), or delete it and let the plugin download it again",
        )
        self.instance_id = instance_id
        self.branch = branch


class SubmissionInvalid(ProgramBenchError):
    """The submission cannot be unpacked as the evaluator unpacks it: the submission's own fault.

    Scored 0, as ``programbench eval`` scores it (its evaluator raises there), not an error.
    """

    code = "invalid_submission"

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"submission {path} cannot be unpacked as the evaluator unpacks it: {detail}",
            "Repack the workspace with `tar -czf submission.tar.gz -C <workspace> .` (GNU tar), or fix what "
            "produced it",
        )
        self.path = path


class NoSubmission(ProgramBenchError):
    code = "no_submission"

    def __init__(self, instance_id: str, run_dir: str) -> None:
        super().__init__(
            f"no submission for {instance_id} in {run_dir} (expected {instance_id}/submission.tar.gz)",
            "Deselect the instance (-k 'not ...' or --pb-instance) or add its submission",
        )
        self.instance_id = instance_id


class EvaluatorCrashed(ProgramBenchError):
    code = "evaluator_crashed"

    def __init__(self, instance_id: str, detail: str) -> None:
        super().__init__(
            f"the programbench evaluator raised while scoring {instance_id}: {detail}",
            "Rerun this item (paste its node id as an argument); if it repeats, `--tb=long` shows where "
            "in the evaluator it raised",
        )
        self.instance_id = instance_id


class NoAgent(ProgramBenchError):
    code = "no_agent"

    def __init__(self) -> None:
        super().__init__(
            "nothing produces a submission in this session",
            "Give --pb-agent (none, command, mini-swe-agent or module:attr), define a "
            "pytest_programbench_agent hook or pb_agent fixture in conftest.py, or score an existing "
            "run with --pb-submissions DIR",
        )


class AgentUnavailable(ProgramBenchError):
    code = "agent_unavailable"

    def __init__(self, name: str, detail: str, fix: str = "") -> None:
        super().__init__(
            f"agent {name!r} cannot be loaded: {detail}",
            fix or "Check the --pb-agent value: a built-in name or an importable module:attr",
        )


class AgentCrashed(ProgramBenchError):
    code = "agent_crashed"

    def __init__(self, instance_id: str, detail: str) -> None:
        super().__init__(
            f"the agent raised on {instance_id}: {detail}",
            "Its workspace was packed into the run directory; fix the agent and rerun the item, or "
            "score the workspace as it is with --pb-submissions",
        )
        self.instance_id = instance_id


class WorkspaceUnpackable(ProgramBenchError):
    code = "pack_failed"

    def __init__(self, instance_id: str, detail: str) -> None:
        super().__init__(
            f"packing /workspace of {instance_id} into submission.tar.gz failed: {detail}",
            "Rerun with --pb-keep and inspect the container (`docker exec -it <id> bash`)",
        )
        self.instance_id = instance_id


class ImageChanged(ProgramBenchError):
    code = "image_changed"

    def __init__(self, image: str, pinned: str, now: str, when: str) -> None:
        super().__init__(
            f"task image {image} changed {when}: it was {pinned}, it is now {now}",
            "Something re-tagged it (an agent that can reach the engine?); this item is not scored. "
            f"Restore the tag (`docker tag {pinned} {image}`, or pull it again) and rerun the item",
        )
        self.image = image


class SubmissionTooLarge(ProgramBenchError):
    code = "submission_too_large"

    def __init__(self, what: str, limit: int, where: str) -> None:
        super().__init__(
            f"{what} exceeds the submission limit of {_size(limit)}; {where}",
            "Raise --pb-max-submission if the workspace really needs it, or have the agent keep build "
            "output and data out of /workspace",
        )
        self.limit = limit


class PackTimedOut(ProgramBenchError):
    code = "pack_timed_out"

    def __init__(self, instance_id: str, seconds: float, where: str) -> None:
        super().__init__(
            f"packing /workspace of {instance_id} took longer than {seconds:.0f}s; {where}",
            "Look for huge or endless files in the workspace; rerun with --pb-keep to inspect it",
        )
        self.instance_id = instance_id


class DiskLimitExceeded(ProgramBenchError):
    code = "disk_limit_exceeded"

    def __init__(self, instance_id: str, used: int, limit: int) -> None:
        super().__init__(
            f"the agent on {instance_id} was stopped: its container wrote {_size(used)}, over the "
            f"--pb-disk limit of {_size(limit)}; what it left in /workspace was packed",
            "Raise --pb-disk if the task needs the space, or fix the agent that filled the disk",
        )
        self.instance_id = instance_id


class RunDirUnwritable(ProgramBenchError):
    """Writing into the run directory failed mid-item (it turned read-only, the disk is full)."""

    code = "run_dir_unwritable"

    def __init__(self, path: str, detail: str, run_dir: str, kept: str = "") -> None:
        super().__init__(
            f"cannot write {path} ({detail}): the run directory {run_dir} is not writable"
            + (f"; {kept}" if kept else ""),
            "Make it writable again (or free space) and rerun the item: what finished before stays there",
        )
        self.path = path


class RunDirInvalid(ProgramBenchError):
    """Something in the run directory stands where a file of ours goes (a directory named eval.json)."""

    code = "run_dir_invalid"

    def __init__(self, path: str, what: str) -> None:
        super().__init__(
            f"{path} is a directory, where the {what} goes",
            "Move it out of the run directory (or delete it) and rerun; nothing was run for this item",
        )
        self.path = path


class SelectionInvalid(ProgramBenchError):
    """The task selection cannot be made (an unreadable task.yaml, a tasks dir without tasks).

    Raised before any item exists, so plugin.py turns it into a usage error.
    """

    code = "selection_invalid"


class TaskInvalid(ProgramBenchError):
    code = "task_invalid"

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"task file {path} is invalid: {detail}",
            "Restore it from the programbench package (or your task source) and rerun",
        )
        self.path = path


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
