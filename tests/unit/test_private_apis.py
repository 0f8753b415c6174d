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


def test_docker_api_internals_containers_py_calls() -> None:
    from docker import APIClient

    for name in ("_get", "_url", "_raise_for_status"):
        assert callable(getattr(APIClient, name)), name


def test_mini_swe_agent_internal_mini_agent_py_calls() -> None:
    docker_env = pytest.importorskip("minisweagent.environments.docker", reason="the mini extra")
    assert callable(docker_env.DockerEnvironment._check_finished)


def test_docker_api_client_looks_up_its_ssh_adapter_by_name_containers_py_supplies_it() -> None:
    # containers.docker_sdk imports docker without paramiko and sets docker.api.client's
    # SSHHTTPAdapter global only when an ssh:// engine is used.
    import inspect

    from docker.api import client
    from docker.transport.sshconn import SSHHTTPAdapter

    assert "SSHHTTPAdapter(" in inspect.getsource(client.APIClient.__init__)
    assert callable(SSHHTTPAdapter)
