"""Cluster addresses never float: refused through any agent, and released when a node joins with one."""

from __future__ import annotations

import pytest

from egress_api import errors, models
from helpers.agent import wait_for
from helpers.agent_group import agreed_status

pytestmark = pytest.mark.etcd


def test_another_nodes_address_is_refused_through_any_agent(group):
    """worker1 knows worker2's address only from worker2's NODE record in etcd."""
    for via in ("worker1", "master1"):
        with pytest.raises(errors.InvalidArgument) as info:
            group[via].client.create_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.12"]))
        assert info.value.violations == [models.Violation(
            ("floating_ips",), "floating IP 192.0.2.12 is the address of node 'worker2': it can never be a floating IP")]
    assert group["worker1"].client.list_gateways() == []


def test_a_node_joining_with_a_floating_ip_as_its_address_makes_it_unassignable(empty_group):
    """The stored gateway became invalid: its holder lets the IP go, with an Unassignable event; nothing crashes."""
    g = empty_group
    w1 = g.add("worker1", "worker", "192.0.2.11/24")
    w1.client.create_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.13"]))
    agreed_status([w1], lambda s: s.floating_ips == {"192.0.2.13": "worker1", "192.0.2.100": "worker1"},
                  "both IPs on worker1")

    w3 = g.add("worker3", "worker", "192.0.2.13/24")  # the operator gave a new node a floating IP as its address
    st = agreed_status([w1, w3], lambda s: s.floating_ips.get("192.0.2.13") == "" and s.nodes.get("worker3") == "Up",
                       "192.0.2.13 released")
    assert st.floating_ips["192.0.2.100"] == "worker1"  # the other IP does not move
    (event,) = wait_for(lambda: [e for e in w1.client.list_events("gateway", "default") if e.reason == "Unassignable"],
                        what="the Unassignable event")
    assert event.type == "Warning"
    assert event.message == ("floating IP 192.0.2.13 cannot be assigned to any node: 192.0.2.13 is the address of "
                             "node 'worker3', which can never float")
    # Every agent still serves, and a write naming the IP again is refused.
    assert {a.client.health().status for a in (w1, w3)} == {"SERVING"}
    with pytest.raises(errors.InvalidArgument, match="192.0.2.13 is the address of node 'worker3'"):
        w3.client.update_gateway(models.Gateway(name="default", floating_ips=["192.0.2.13"]))
