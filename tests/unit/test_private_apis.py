"""The private APIs of other packages we rely on still exist (each used in one place, named there).

A release that renames one fails here, in seconds, instead of deep in a Docker session.
"""

from __future__ import annotations

import pytest


def test_pytest_module_internals_items_py_overrides() -> None:
    assert callable(pytest.Module._getobj)
    assert callable(pytest.Module._genfunctions)


def test_pytest_junitxml_stash_key_results_py_reads() -> None:
    from _pytest.junitxml import LogXML, xml_key

    assert isinstance(xml_key, pytest.StashKey)
    assert callable(LogXML.add_global_property)


def test_programbench_internals_scoring_py_calls() -> None:
    from programbench.eval import eval_batch
    from programbench.eval.eval import Evaluator

    assert callable(eval_batch._summary_from_existing)
    for name in (
        "_new_env",
        "_compile_executable",
        "_run_step",
        "_evaluate_branch",
        "_run_test_branch",
        "_copy_file_from_container",
    ):
        assert callable(getattr(Evaluator, name)), name


def test_docker_api_internals_the_engine_calls() -> None:
    from docker import APIClient

    for name in ("_get", "_url", "_raise_for_status"):
        assert callable(getattr(APIClient, name)), name


def test_mini_swe_agent_internal_mini_agent_py_calls() -> None:
    docker_env = pytest.importorskip("minisweagent.environments.docker", reason="the mini extra")
    assert callable(docker_env.DockerEnvironment._check_finished)


def test_docker_api_client_looks_up_its_ssh_adapter_by_name_containers_py_supplies_it() -> None:
    # engine.client.docker_sdk imports docker without paramiko and sets docker.api.client's
    # SSHHTTPAdapter global only when an ssh:// engine is used.
    import inspect

    from docker.api import client
    from docker.transport.sshconn import SSHHTTPAdapter

    assert "SSHHTTPAdapter(" in inspect.getsource(client.APIClient.__init__)
    assert callable(SSHHTTPAdapter)


def test_tarfile_member_list_packing_and_submissions_py_clear() -> None:
    # packing.forget_members empties the list a stream-mode TarFile appends each member to.
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|") as tar:
        tar.addfile(tarfile.TarInfo("a"))
        assert [m.name for m in tar.members] == ["a"]  # type: ignore[attr-defined]
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue()), mode="r|") as tar:
        assert tar.next() is not None and len(tar.members) == 1  # type: ignore[attr-defined]


def test_programbench_container_execute_scoring_py_mirrors() -> None:
    # scoring.bounded_execute replaces ContainerEnvironment.execute on each evaluator container
    # (same command, timeout and sweep; tests/unit/test_step_output.py compares the two). A
    # release that changes what execute runs must fail here first.
    import inspect

    from programbench.container import ContainerEnvironment

    assert list(inspect.signature(ContainerEnvironment.execute).parameters) == ["self", "command", "timeout"]
    source = inspect.getsource(ContainerEnvironment.execute)
    for piece in ('"exec"', '"-w"', "self.cwd", "self.container_id", '"bash"', '"-lc"', "text=True"):
        assert piece in source, piece
    assert "kill -KILL -1 2>/dev/null; sleep 0.2; kill -KILL -1 2>/dev/null; true" in source
    init = inspect.getsource(ContainerEnvironment.__init__)
    assert "self.default_timeout = timeout" in init and "self.executable = executable" in init
