"""The seed's packet walk, asserted from the outside: what source IP the external host sees.

The datapath is programmed directly on every lab node (no agents yet), from
the same NodeDatapathState an agent computes. An un-NATed pod packet cannot
come back (the router has no pod routes), so every successful `whoami` also
proves the reply reached the pod.
"""

from __future__ import annotations

import json

import pytest

from helpers.lab import LabPolicy

pytestmark = pytest.mark.kernel

EXT, EXT2 = "198.51.100.10", "203.0.113.10"
FIP, FIP2 = "192.0.2.100", "192.0.2.101"
W1, W2, W3 = "192.0.2.11", "192.0.2.12", "192.0.2.13"


def seed_policy(holder="worker2", pods=("fe1", "fe2", "paul1"), cidrs=("198.51.100.0/24",), name="egress", ip=FIP):
    # The seed's selection (user=alice or user=paul, role=frontend), resolved to pods as the agent would.
    return LabPolicy(name, tuple(cidrs), ip, holder, tuple(pods))


def test_selected_pod_leaves_with_the_floating_ip_and_gets_the_reply(clean_lab):
    lab = clean_lab
    lab.apply([seed_policy()])
    assert lab.whoami("fe1") == FIP  # worker1 -> worker2 (gateway) -> SNAT 192.0.2.100 -> reply back to fe1
    assert lab.whoami("paul1") == FIP  # the second rule (OR), on a third node
    counters = lab.datapath("worker1").counters()
    assert counters.steered["egress"].packets > 0
    assert lab.datapath("worker2").counters().translated[FIP].packets > 0


def test_unselected_traffic_is_masqueraded_to_its_node_ip(clean_lab):
    lab = clean_lab
    lab.apply([seed_policy()])
    assert lab.whoami("be1") == W1  # alice without role=frontend
    assert lab.whoami("bob1") == W1  # role=frontend, not alice/paul
    assert lab.whoami("fe1", EXT2) == W1  # selected pod, destination outside destination_cidrs


def test_pod_on_the_gateway_node(clean_lab):
    lab = clean_lab
    lab.apply([seed_policy()])
    assert lab.whoami("fe2") == FIP
    assert lab.datapath("worker2").counters().steered["egress"].packets > 0  # counted as local, not marked


def test_two_policies_with_different_source_ips_on_different_gateways(clean_lab):
    lab = clean_lab
    lab.apply([
        seed_policy(holder="worker2", pods=("fe1",)),
        LabPolicy("paul", ("198.51.100.0/24", "203.0.113.0/24"), FIP2, "worker3", ("bob1",)),
    ])
    assert lab.whoami("fe1") == FIP
    assert lab.whoami("bob1") == FIP2
    assert lab.whoami("bob1", EXT2) == FIP2
    assert lab.whoami("fe1", EXT2) == W1
    addrs = lab.run(lab.node("worker3").netns, "ip -j addr show dev eth0")
    assert FIP2 in addrs and FIP not in addrs


def test_overlapping_policies_on_one_gateway_longest_prefix_wins(clean_lab):
    """Steering and SNAT must agree: the policy with the longest matching prefix wins, then the first by name.

    Both policies select fe1 (on worker1) and fe2 (on the gateway itself) and are held by worker2. The
    source node's classifier picks "b-narrow" (/32); the gateway must translate to b-narrow's IP too,
    not to the IP of "a-wide", whose rule would come first by name.
    """
    lab = clean_lab
    lab.apply([
        LabPolicy("a-wide", ("198.51.100.0/24",), FIP, "worker2", ("fe1", "fe2")),
        LabPolicy("b-narrow", (f"{EXT}/32",), FIP2, "worker2", ("fe1", "fe2")),
    ])
    assert lab.whoami("fe1") == FIP2
    assert lab.whoami("fe2") == FIP2
    # Same prefix in both: the first policy by name wins, on both sides.
    lab.apply([
        LabPolicy("a-wide", ("198.51.100.0/24",), FIP, "worker2", ("fe1", "fe2")),
        LabPolicy("b-same", ("198.51.100.0/24",), FIP2, "worker2", ("fe1", "fe2")),
    ])
    assert lab.whoami("fe1") == FIP
    assert lab.whoami("fe2") == FIP


def _prog_ids(lab, node, pod):
    out = lab.run(lab.node(node).netns, f"tc -j filter show dev {lab.veth(pod)} ingress")
    return sorted(f["options"]["prog"]["id"] for f in json.loads(out) if "options" in f and "prog" in f["options"])


def test_changes_update_maps_only(clean_lab):
    lab = clean_lab
    lab.apply([seed_policy(cidrs=("198.51.100.0/24",))])
    before = _prog_ids(lab, "worker1", "fe1")
    assert len(before) == 1
    assert lab.whoami("fe1", EXT2) == W1
    lab.apply([seed_policy(cidrs=("198.51.100.0/24", "203.0.113.0/24"))])  # add a CIDR
    assert lab.whoami("fe1", EXT2) == FIP
    lab.apply([seed_policy(pods=("fe2", "paul1"), cidrs=("198.51.100.0/24", "203.0.113.0/24"))])  # fe1 deselected
    assert lab.whoami("fe1") == W1
    assert lab.whoami("paul1") == FIP
    lab.apply([])  # policy deleted
    assert lab.whoami("paul1") == W3
    assert _prog_ids(lab, "worker1", "fe1") == before  # same program throughout: no reload


def test_denied_destination_stays_denied(clean_lab):
    from egress_lab import pods

    lab = clean_lab
    lab.apply([seed_policy()])
    assert lab.whoami("fe1") == FIP
    translated = lab.datapath("worker2").counters().translated[FIP].packets
    pods.deny("fe1", "198.51.100.10/32")
    try:
        assert not lab.reaches("fe1")
        assert lab.datapath("worker1").counters().steered["egress"].packets > 0  # classified, then dropped by the filter
        assert lab.datapath("worker2").counters().translated[FIP].packets == translated  # never reached the gateway
    finally:
        pods.deny("fe1", "198.51.100.10/32", remove=True)
    assert lab.whoami("fe1") == FIP


def test_no_holder_fails_closed(clean_lab):
    lab = clean_lab
    lab.apply([seed_policy(holder=None)])
    assert not lab.reaches("fe1")  # never with the node IP
    assert lab.datapath("worker1").counters().steered["egress"].dropped > 0
    assert lab.whoami("be1") == W1


def _router_mac_for(lab, ip):
    from egress_lab import topology as T

    out = json.loads(lab.run(T.router_ns(), f"ip -j neigh show {ip} dev eth0"))
    return out[0]["lladdr"] if out and "lladdr" in out[0] else None


def _uplink_mac(lab, node):
    return json.loads(lab.run(lab.node(node).netns, "ip -j link show eth0"))[0]["address"]


def test_floating_ip_moves_and_gratuitous_arp_updates_the_router(clean_lab):
    from egress_lab import build

    lab = clean_lab
    lab.apply([seed_policy(holder="worker2")])
    assert lab.whoami("fe1") == FIP
    assert _router_mac_for(lab, FIP) == _uplink_mac(lab, "worker2")
    build.node_link("worker2", "down")  # worker2 dies; the floating IP is reassigned to worker3
    lab.apply([seed_policy(holder="worker3")], skip=("worker2",))
    # GARP alone moved the router's entry: no ARP probe was needed.
    assert _router_mac_for(lab, FIP) == _uplink_mac(lab, "worker3")
    assert lab.whoami("fe1") == FIP
    lab.datapath("worker2").apply(lab.node_state("worker2", [seed_policy(holder="worker3")]))  # fenced: drops the IP
    build.node_link("worker2", "up")
    assert lab.whoami("fe2") == FIP  # the gateway node's former pod now goes through worker3


def test_apply_is_idempotent_and_cleanup_removes_everything(clean_lab):

    lab = clean_lab
    policies = [seed_policy()]
    lab.apply(policies)
    ns = lab.node("worker1").netns
    first = lab.run(ns, "nft list ruleset; ip rule; ip route show table all")
    lab.datapath("worker1")._last = None  # force a full re-apply, as after an agent restart
    lab.apply(policies)
    assert lab.run(ns, "nft list ruleset; ip rule; ip route show table all") == first
    assert "table inet egress" in first
    for name in ("worker1", "worker2"):
        lab.datapath(name).cleanup()
    for name in ("worker1", "worker2"):
        nsn = lab.node(name).netns
        assert "egress" not in lab.run(nsn, "nft list tables")
        assert "fwmark" not in lab.run(nsn, "ip rule")
        assert FIP not in lab.run(nsn, "ip addr show dev eth0")
    assert "egress_steer" not in lab.run(ns, f"tc filter show dev {lab.veth('fe1')} ingress")
    assert lab.whoami("fe1") == W1
