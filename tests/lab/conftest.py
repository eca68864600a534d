"""The agent lab: 3 workers + 1 master, etcd and a real egress-agent per node; built once per session, always torn down.

The seed's cast: alice's frontend pods on worker1 and worker2, alice's backend
and bob's frontend on worker1, paul's frontend on worker3.
"""

from __future__ import annotations

import os

import pytest

from helpers.agent_lab import AgentLab

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="session")
def agent_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, eBPF, nftables): run them as root")
    lab = AgentLab(tmp_path_factory.mktemp("agentlab") / "run", workers=3, masters=1)
    try:
        lab.label_namespace("alice", user="alice")
        lab.label_namespace("bob", user="bob")
        lab.label_namespace("paul", user="paul")
        lab.add_pod("fe1", "worker1", "alice", role="frontend")
        lab.add_pod("fe2", "worker2", "alice", role="frontend")
        lab.add_pod("be1", "worker1", "alice", role="backend")
        lab.add_pod("bob1", "worker1", "bob", role="frontend")
        lab.add_pod("paul1", "worker3", "paul", role="frontend")
        yield lab
    finally:
        lab.close()


@pytest.fixture
def clean_lab(agent_lab):
    """No policies or gateways before and after the test; every node up."""
    _clear(agent_lab)
    yield agent_lab
    _clear(agent_lab)


def _clear(lab: AgentLab) -> None:
    from egress_lab import agents, labstate

    st = labstate.require()
    for spec in st.nodes():
        if not agents.running(st, agents.agent_key(spec.name)):
            lab.node_start(spec.name)
        st = labstate.require()
    with lab.client() as c:
        for p in c.list_policies():
            c.delete_policy(p.obj.name)
        for g in c.list_gateways():
            c.delete_gateway(g.obj.name)
