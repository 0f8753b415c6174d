"""Per-instance overhead of the agent phase against a bare ``docker run --rm <image> true``.

Target: ratio <= 2. Side A is what the plugin does around an agent that does nothing, in this
process and in a row for N instances: ``open_sandbox`` (create and start the container, find the
agent user), the ``none`` agent through ``run_agent`` (its thread, then ``expire`` killing every
process in the container), ``pack_workspace`` into a temporary directory, and the container's
removal when the sandbox closes. Side B runs ``docker run --rm <image> true`` N times through the
docker CLI. One engine connection serves every A run, as one serves a whole session.

The agent user is cached per image per process, and the exec API client is made on first use: the
warm-up pair fills both, so the timed runs measure the steady state of a session. Runs alternate
A B A B; a run's time is per instance (its wall time / N). Also reported: side A's per-instance
medians of its phases (start, agent, pack, remove), to show where the time goes.

    python benchmarks/bench_agent.py --n 10 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from _support import finish, summarize  # the script's own folder is on sys.path

from pytest_programbench import selftest
from pytest_programbench.engine.containers import LABEL_RUN, Engine
from pytest_programbench.model import Instance

PHASES = ("start", "agent", "pack", "remove")
AGENT_TIMEOUT = 60.0


def default_image() -> str:
    return f"{selftest.image_name()}:{selftest.IMAGE_TAG}"


def instances(image: str, n: int) -> list[Instance]:
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    return [
        Instance(
            instance_id=f"pbselftest__bench-agent-{k}.5e1f7a0",
            language="c",
            difficulty="easy",
            repository="pytest-programbench/rpncalc",
            task_dir="",
            image=name,
            image_tag=tag,
        )
        for k in range(n)
    ]


def side_a(
    engine: Engine, image: str, run_id: str, batch: list[Instance], scratch: Path
) -> tuple[float, dict[str, list[float]]]:
    """One A run: the agent phase of every instance in turn; per-instance wall time and phase times."""
    from pytest_programbench.agents import agent as agents
    from pytest_programbench.agents.sandbox import Limits, open_sandbox

    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    limits = Limits(cpus=1)
    with tempfile.TemporaryDirectory(prefix="bench-agent-", dir=scratch) as tmp:
        begin = time.perf_counter()
        for instance in batch:
            t0 = time.perf_counter()
            with open_sandbox(
                engine, image, run_id=run_id, worker="bench", instance_id=instance.instance_id, limits=limits
            ) as sandbox:
                t1 = time.perf_counter()
                run, error = agents.run_agent(agents.none_agent, instance, sandbox, timeout=AGENT_TIMEOUT)
                t2 = time.perf_counter()
                if error is not None or run.timed_out or run.exit_status != "Submitted":
                    raise SystemExit(f"the none agent did not submit: {run} {error!r}")
                packed = sandbox.pack_workspace(Path(tmp) / instance.instance_id / "submission.tar.gz")
                t3 = time.perf_counter()
            t4 = time.perf_counter()
            if packed.stat().st_size == 0:
                raise SystemExit(f"{packed} is empty")
            for phase, (t_from, t_to) in zip(PHASES, [(t0, t1), (t1, t2), (t2, t3), (t3, t4)], strict=True):
                phases[phase].append(t_to - t_from)
        elapsed = time.perf_counter() - begin
    return elapsed / len(batch), phases


def side_b(image: str, n: int) -> float:
    """One B run: ``docker run --rm <image> true`` n times; per-instance wall time."""
    begin = time.perf_counter()
    for _ in range(n):
        subprocess.run(["docker", "run", "--rm", image, "true"], check=True)
    return (time.perf_counter() - begin) / n


def leftovers(run_id: str) -> list[str]:
    """Containers of this run still on the engine, as ``docker ps -a`` sees them."""
    proc = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label={LABEL_RUN}={run_id}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return proc.stdout.split()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=10, help="instances per run and side (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="timed A/B pairs (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed A/B pairs first (default 1)")
    parser.add_argument("--image", default=default_image(), help="task image (default: the self-test's)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.runs < 1 or args.warmup < 0:
        parser.error("--n and --runs must be >= 1, --warmup >= 0")

    run_id = f"bench-agent-{uuid.uuid4().hex[:12]}"
    batch = instances(args.image, args.n)
    times_a: list[float] = []
    times_b: list[float] = []
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    with Engine() as engine, tempfile.TemporaryDirectory(prefix="bench-agent-") as scratch:
        try:
            engine.require_image(args.image, "Build it with images/build-test-images.sh, or pass --image")
            for i in range(args.warmup + args.runs):
                t_a, phases_a = side_a(engine, args.image, run_id, batch, Path(scratch))
                t_b = side_b(args.image, args.n)
                if i >= args.warmup:
                    times_a.append(t_a)
                    times_b.append(t_b)
                    for phase in PHASES:
                        phases[phase].extend(phases_a[phase])
        finally:
            left = leftovers(run_id)
            if left:
                engine.sweep({LABEL_RUN: run_id})
    if left:
        raise SystemExit(f"FAIL: run {run_id} left {len(left)} container(s) behind (now removed): {left}")
    report = {
        "benchmark": f"agent phase of {args.n} instances (none agent) vs docker run --rm {args.image} true",
        "target_ratio": 2.0,
        "n": args.n,
        "runs": args.runs,
        "warmup": args.warmup,
        "steady_state": "agent user cached and exec client made by the warm-up, as in a running session",
        **summarize(times_a, times_b),
        "a_times_s": [round(t, 3) for t in times_a],
        "b_times_s": [round(t, 3) for t in times_b],
        "leftover_containers": 0,
    }
    report["a_breakdown_per_instance"] = {
        f"{p}_median_s": round(statistics.median(phases[p]), 4) for p in PHASES
    }
    finish(report)


if __name__ == "__main__":
    main()
