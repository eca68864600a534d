"""Fixtures for the provider tests: a real egress-agent and a Terraform working dir pointed at it."""

from __future__ import annotations

import pytest

from helpers.terraform import Acceptance, Terraform


@pytest.fixture
def acc(agent_process, tmp_path) -> Acceptance:
    """Acceptance steps against a fresh agent (worker1, 192.0.2.11/24), isolated Terraform environment."""
    return Acceptance(Terraform(tmp_path, endpoint=agent_process.endpoint), agent_process)
