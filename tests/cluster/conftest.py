"""Real etcd plus several real egress-agent processes (control plane only) on loopback."""

from __future__ import annotations

import pytest

from helpers.agent_group import AgentGroup
from helpers.etcd import make_cluster


@pytest.fixture
def empty_group(tmp_path) -> AgentGroup:
    """No agents yet, on a single-member etcd: for tests that start agents with their own flags."""
    cluster = make_cluster(tmp_path / "etcd", size=1)
    g = AgentGroup(tmp_path, cluster)
    try:
        cluster.start()
        yield g
    finally:
        g.close()
        cluster.close()
