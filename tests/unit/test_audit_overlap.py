"""The audit's look at the built workspace runs beside the evaluator's commit, never past cleanup."""

from __future__ import annotations

import threading

from pytest_programbench import scoring


class SlowAudit:
    """Records when its look starts and ends; the look waits until released."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def compiled(self, container_id: str, executable_hash: str | None) -> None:
        self.events.append(f"look {container_id} {executable_hash}")
        self.started.set()
        self.release.wait(10)
        self.events.append("look done")


class FakeEnv:
    container_id = "c1"

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def cleanup(self) -> None:
        self.events.append("cleanup")


def test_the_look_runs_while_the_evaluator_goes_on_and_cleanup_waits_for_it() -> None:
    audit = SlowAudit()
    env = FakeEnv(audit.events)
    scoring._look_while_committing(env, audit, "abc")  # type: ignore[arg-type]
    assert audit.started.wait(10)  # returned at once: the look is still running
    audit.events.append("commit")  # the evaluator commits meanwhile
    cleaner = threading.Thread(target=env.cleanup)
    cleaner.start()
    cleaner.join(0.2)
    assert cleaner.is_alive(), "cleanup must wait for the look"
    audit.release.set()
    cleaner.join(10)
    assert audit.events == ["look c1 abc", "commit", "look done", "cleanup"]
    env.cleanup()  # the evaluator's __del__ cleans up again: no second look, no hang
    assert audit.events[-1] == "cleanup"
