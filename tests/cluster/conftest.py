"""Real etcd plus several real egress-agent processes (control plane only) on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytest

from helpers.agent import AgentProcess
from helpers.etcd import EtcdCluster, free_port, make_cluster


class AgentGroup:
    """Agents named after their role, all on one etcd; every process is killed at close()."""

    def __init__(self, base: Path, etcd: EtcdCluster, prefix: str = "/egress"):
        self.base, self.etcd, self.prefix = base, etcd, prefix
        self.agents: dict[str, AgentProcess] = {}

    def add(self, name: str, role: str = "worker", node_ip: str = "192.0.2.11/24", start: bool = True,
            extra: Sequence[str] = ()) -> AgentProcess:
        port = free_port()
        agent = AgentProcess(
            self.base / name,
            node=name,
            role=role,
            node_ip=node_ip,
            extra_args=["--store", self.etcd.store_url, "--listen", f"127.0.0.1:{port}", "--etcd-prefix", self.prefix,
                        "--datapath", "off", *extra],
        )
        self.agents[name] = agent
        if start:
            agent.start(timeout=30)
        return agent

    def __getitem__(self, name: str) -> AgentProcess:
        return self.agents[name]

    def running(self) -> list[AgentProcess]:
        return [a for a in self.agents.values() if a.proc is not None]

    def close(self) -> None:
        for a in self.agents.values():
            a.close()


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


@pytest.fixture
def group(tmp_path, etcd3) -> AgentGroup:
    """worker1 (192.0.2.11), worker2 (192.0.2.12) and master1 (192.0.2.21), all Up."""
    g = AgentGroup(tmp_path, etcd3)
    try:
        g.add("worker1", "worker", "192.0.2.11/24")
        g.add("worker2", "worker", "192.0.2.12/24")
        g.add("master1", "master", "192.0.2.21/24")
        yield g
    finally:
        g.close()
