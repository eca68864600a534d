"""The agent lab: 3 workers + 1 master, etcd and a real egress-agent per node; built once per session, always torn down.

The pods and namespace labels are the seed's cast (helpers.lab.SEED_PODS).
"""

from __future__ import annotations

import os

import pytest

from helpers.agent_lab import AgentLab
from helpers.lab import SEED_NAMESPACES, SEED_PODS

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="session")
def agent_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, eBPF, nftables): run them as root")
    lab = AgentLab(tmp_path_factory.mktemp("agentlab") / "run", workers=3, masters=1)
    try:
        for namespace, labels in SEED_NAMESPACES.items():
            lab.label_namespace(namespace, **labels)
        for pod, node, namespace, labels in SEED_PODS:
            lab.add_pod(pod, node, namespace, **labels)
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
    _wait_all_up(lab, [spec.name for spec in st.nodes()])
    with lab.client() as c:
        for p in c.list_policies():
            c.delete_policy(p.obj.name)
        for g in c.list_gateways():
            c.delete_gateway(g.obj.name)


def _wait_all_up(lab: AgentLab, names: list[str], timeout: float = 20.0) -> None:
    """Every agent sees every node Up. A node restarted by the test before is healthy on its own socket
    before the leader has seen it answer probes; a gateway created in that gap goes to another node and,
    assignment being sticky, stays there, so a test expecting the seed's first choice would fail."""
    from egress_api import errors
    from helpers.agent_lab import eventually

    want = dict.fromkeys(names, "Up")

    def views() -> bool:
        for name in names:
            with lab.client(name, timeout=2.0) as c:
                try:
                    if {n.name: n.state for n in c.list_nodes()} != want:
                        return False
                except errors.ApiError:
                    return False
        return True

    eventually(views, True, timeout=timeout)
