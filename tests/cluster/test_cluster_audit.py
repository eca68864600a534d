"""The audit log in a cluster: every agent logs the writes it served and the leader changes it saw."""

from __future__ import annotations

import json

import pytest

from egress_api import models
from helpers.agent import wait_for
from helpers.agent_group import AgentGroup, leader_of
from helpers.etcd import make_cluster

pytestmark = pytest.mark.etcd


def audit(agent) -> list[dict]:
    path = agent.workdir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_writes_and_leader_changes_are_audited_by_the_agent_that_saw_them(tmp_path):
    etcd = make_cluster(tmp_path / "etcd", size=1).start()
    group = AgentGroup(tmp_path, etcd)
    try:
        for name, ip in (("worker1", "192.0.2.11/24"), ("worker2", "192.0.2.12/24")):
            group.add(name, "worker", ip, extra=["--audit-log", str(tmp_path / name / "audit.jsonl")])
        agents = group.running()
        old = wait_for(lambda: leader_of(agents), what="a leader")
        other = next(a for a in agents if a.node != old)
        other.client.create_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100"]))
        (write,) = [line for line in audit(other) if line["method"] == "CreateGateway"]
        assert write["outcome"] == "OK" and write["role"] == "admin" and write["node"] == other.node
        assert write["identity"].startswith("unix:uid=0(root)")
        assert not [line for line in audit(group[old]) if line["method"] == "CreateGateway"]  # not served there

        group[old].kill()
        wait_for(lambda: any(line["method"] == "LeaderChanged" and line["object"] == f"leader/{other.node}"
                             for line in audit(other)), timeout=10, what="the survivor to audit its own election")
    finally:
        group.close()
        etcd.close()
