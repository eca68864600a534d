"""With the kernel datapath, the router's and the nodes' addresses are refused as floating IPs.

Before issue #9 one CreateGateway made a node add the router's IP to its uplink and announce it
(a neighbour's ARP entry for the router switched to that node's MAC). Each agent now reads its uplink's
routes at start and publishes the routers in its NODE record, and every agent refuses them.
"""

from __future__ import annotations

import pytest

from egress_api import errors, models
from egress_lab import topology as T
from helpers.agent import wait_for

pytestmark = pytest.mark.kernel


def test_the_router_and_node_addresses_are_refused_and_never_added(clean_lab):
    lab = clean_lab
    nodes = ("worker1", "worker2", "worker3", "master1")
    before = {n: lab.floating_ips_on(n) for n in nodes}
    with lab.client("worker2") as c:
        for ip, reason in (
            (T.ROUTER_IP, "a router of node 'master1' (a gateway of its routes)"),
            (lab.node("worker3").ip, "the address of node 'worker3'"),
        ):
            with pytest.raises(errors.InvalidArgument) as info:
                c.create_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100", ip]))
            assert info.value.violations == [models.Violation(
                ("floating_ips",), f"floating IP {ip} is {reason}: it can never be a floating IP")]
        assert c.list_gateways() == []
        # A valid floating IP still goes onto a node's uplink.
        c.create_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100"]))
        holder = wait_for(lambda: next((n for n in nodes if "192.0.2.100" in lab.floating_ips_on(n)), ""),
                          timeout=15, what="192.0.2.100 on some node's uplink")
    after = {n: lab.floating_ips_on(n) for n in nodes}
    assert after == {n: before[n] | ({"192.0.2.100"} if n == holder else set()) for n in nodes}
    assert all(T.ROUTER_IP not in ips for ips in after.values())
