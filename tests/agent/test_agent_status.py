"""Observed state from a real agent: assignments, per-node view, events (standalone node worker1)."""

from __future__ import annotations

from egress_api import models
from helpers.agent import wait_for

from seed_objects import GW, policy


def settled_status(client, name, expect_ips):
    """Gateway status once the controller has assigned (or reasoned about) every IP in `expect_ips`."""

    def ready():
        st = client.gateway_status(name)
        done = all(st.floating_ips.get(ip) or "waiting" not in st.unassigned_reasons.get(ip, "waiting") for ip in expect_ips)
        return st if done else None

    return wait_for(ready, what=f"assignment of {expect_ips}")


def test_standalone_node_holds_every_ip_in_its_subnet(agent_process):
    c = agent_process.client
    c.create_gateway(GW)
    st = settled_status(c, "default", GW.floating_ips)
    assert st.nodes == {"worker1": "Up"}
    assert st.floating_ips == {ip: "worker1" for ip in GW.floating_ips}
    assert st.unassigned_reasons == {}
    node = c.get_node("worker1")
    assert (node.role, node.state, node.node_ip) == ("worker", "Up", "192.0.2.11/24")
    assert node.floating_ips == GW.floating_ips
    assert c.list_nodes() == [node]


def test_ip_outside_the_subnet_is_unassigned_with_reason_and_events(agent_process):
    c = agent_process.client
    gw = models.Gateway(name="default", floating_ips=["192.0.2.100", "203.0.113.10"])
    c.create_gateway(gw)
    c.create_policy(policy("far", source="203.0.113.10"))
    c.create_policy(policy("near", source="192.0.2.100"))
    st = settled_status(c, "default", gw.floating_ips)
    assert st.floating_ips == {"192.0.2.100": "worker1", "203.0.113.10": ""}
    assert st.unassigned_reasons == {"203.0.113.10": "no node's subnet contains 203.0.113.10"}

    events = wait_for(lambda: c.list_events("policy", "far"), what="UnknownEgressIP event")
    (e,) = events
    assert (e.kind, e.name, e.type, e.reason, e.count) == ("policy", "far", "Warning", "UnknownEgressIP", 1)
    assert "203.0.113.10" in e.message and "no node's subnet" in e.message

    d = c.describe_policy("far")
    assert d.holder == "" and [x.reason for x in d.events] == ["UnknownEgressIP"]
    assert d.counters == {"steered_packets": 0, "steered_bytes": 0, "translated_packets": 0, "translated_bytes": 0}
    assert c.describe_policy("near").holder == "worker1"
    assert c.describe_policy("near").events == []

    (g,) = wait_for(lambda: c.list_events("gateway", "default"), what="Unassignable event")
    assert (g.type, g.reason) == ("Warning", "Unassignable") and "203.0.113.10" in g.message

    # The warning shows up on a dry run too (what the provider turns into a plan warning).
    res = c.validate_policy(policy("far", source="203.0.113.10"))
    assert res.errors == [] and "UnknownEgressIP" in res.warnings[0].message


def test_updating_a_still_unassigned_policy_folds_its_event(agent_process):
    c = agent_process.client
    c.create_gateway(models.Gateway(name="default", floating_ips=["203.0.113.10"]))
    c.create_policy(policy("far", source="203.0.113.10"))
    wait_for(lambda: c.list_events("policy", "far"), what="first event")
    c.update_policy(policy("far", source="203.0.113.10", cidrs=("198.51.100.0/25",)))
    (e,) = wait_for(lambda: [e for e in c.list_events("policy", "far") if e.count == 2], what="folded event")
    assert e.reason == "UnknownEgressIP"
    assert len(c.list_events()) == 2  # the policy's (folded) and the gateway's Unassignable


def test_events_of_deleted_objects_go_with_them(agent_process):
    c = agent_process.client
    c.create_gateway(models.Gateway(name="default", floating_ips=["203.0.113.10"]))
    c.create_policy(policy("far", source="203.0.113.10"))
    wait_for(lambda: c.list_events("policy", "far"), what="event")
    c.delete_policy("far")
    wait_for(lambda: c.list_events("policy") == [], what="policy events removed")
    c.delete_gateway("default")
    wait_for(lambda: c.list_events() == [], what="gateway events removed")


def test_status_after_restart_and_removed_ips(agent_process):
    c = agent_process.client
    c.create_gateway(GW)
    settled_status(c, "default", GW.floating_ips)
    agent_process.restart()
    c = agent_process.client
    st = settled_status(c, "default", GW.floating_ips)
    assert st.floating_ips == {ip: "worker1" for ip in GW.floating_ips}
    c.update_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100"]))
    wait_for(lambda: c.get_node("worker1").floating_ips == ["192.0.2.100"], what="removed IPs released")
