"""Several real egress-agent processes (control plane only, no datapath) on one real etcd, on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from helpers.agent import AgentProcess, wait_for
from helpers.etcd import EtcdCluster, free_port


class AgentGroup:
    """Agents named after their role, all on one etcd; every process is killed at close().

    They run with --restart-window 0 unless a test gives one. On loopback all agents share one kernel,
    which refuses probes to a killed agent's port: with a window, the others would (rightly) read
    kill -9 as "its agent crashed, its node is alive" and hold its IPs (cluster/detector.py). These
    tests use kill -9 to model a dead node, whose kernel is silent.
    """

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
                        "--datapath", "off", "--restart-window", "0", *extra],
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


def agreed_status(agents, predicate, what, timeout=10.0, gateway="default"):
    """Every agent reports the same status of `gateway`, and it satisfies `predicate`; returns it."""

    def check():
        sts = [a.client.gateway_status(gateway) for a in agents]
        same = all((s.nodes, s.floating_ips) == (sts[0].nodes, sts[0].floating_ips) for s in sts)
        return sts[0] if same and predicate(sts[0]) else None

    return wait_for(check, timeout=timeout, what=what)


def leader_of(agents) -> str:
    """The leader every agent in `agents` names ("" while they disagree or none leads)."""
    names = {a.client.health().leader for a in agents}
    return names.pop() if len(names) == 1 else ""


def leader_terms(agents) -> int:
    """How many times any of `agents` became the controller leader (from their logs)."""
    return sum(a.log().count("is now the controller leader") for a in agents)


def down_verdicts(agents) -> int:
    """How many times any of `agents` judged a peer Down (from their logs)."""
    return sum(a.log().count(" is Down (no valid answer") for a in agents)


def moves(agent, gateway="default") -> int:
    """FloatingIPMoved events recorded on `gateway` (folded repeats counted), read through `agent`."""
    return sum(e.count for e in agent.client.list_events("gateway", gateway) if e.reason == "FloatingIPMoved")
