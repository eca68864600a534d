"""Floating-IP assignment: each of the seed's rules, table-driven, plus properties (hypothesis)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egress_agent.controller.assignment import assign
from egress_agent.node_info import NodeInfo
from egress_api.models import reserved_addresses


def w(name, ip="192.0.2.11/24", up=True):
    return NodeInfo(name, "worker", ip, up)


def m(name, ip="192.0.2.2/24", up=True):
    return NodeInfo(name, "master", ip, up)


def restarting(name, ip="192.0.2.11/24"):
    return NodeInfo(name, "worker", ip, up=False, restarting=True)


SEED_IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102"]

CASES = [
    pytest.param(
        SEED_IPS, [w("worker1"), w("worker2", "192.0.2.12/24")], {},
        {"192.0.2.100": "worker1", "192.0.2.101": "worker2", "192.0.2.102": "worker1"},
        id="seed-example-3-ips-2-workers",
    ),
    pytest.param(
        SEED_IPS, [w("worker2", "192.0.2.12/24"), w("worker1")], {},
        {"192.0.2.100": "worker1", "192.0.2.101": "worker2", "192.0.2.102": "worker1"},
        id="node-order-does-not-matter",
    ),
    pytest.param(
        ["192.0.2.100"], [m("master1"), w("worker1")], {}, {"192.0.2.100": "worker1"},
        id="worker-before-master",
    ),
    pytest.param(
        ["192.0.2.100"], [m("master1"), w("worker1", up=False)], {}, {"192.0.2.100": "master1"},
        id="master-when-no-worker-up",
    ),
    pytest.param(
        ["192.0.2.100"], [m("master1"), w("worker1", "198.51.100.11/24")], {}, {"192.0.2.100": "master1"},
        id="master-when-no-worker-in-subnet",
    ),
    pytest.param(
        ["192.0.2.100", "198.51.100.100"], [w("a", "192.0.2.11/24"), w("b", "198.51.100.11/24")], {},
        {"192.0.2.100": "a", "198.51.100.100": "b"},
        id="only-subnet-matching-nodes",
    ),
    pytest.param(
        ["192.0.2.100", "192.0.2.101"], [w("worker1", up=False), w("worker2", "192.0.2.12/24")], {},
        {"192.0.2.100": "worker2", "192.0.2.101": "worker2"},
        id="down-nodes-take-nothing",
    ),
    pytest.param(
        ["192.0.2.101"], [w("worker1"), w("worker2", "192.0.2.12/24")], {"192.0.2.100": "worker1"},
        {"192.0.2.101": "worker1"},
        id="previous-of-a-removed-ip-is-ignored",
    ),
    pytest.param(
        ["192.0.2.100", "192.0.2.101"], [w("worker1"), w("worker2", "192.0.2.12/24")], {"192.0.2.100": "worker1"},
        {"192.0.2.100": "worker1", "192.0.2.101": "worker2"},
        id="node-without-ip-first",
    ),
    pytest.param(
        ["192.0.2.100", "192.0.2.101", "192.0.2.102"],
        [w("worker1"), w("worker2", "192.0.2.12/24"), w("worker3", "192.0.2.13/24")],
        {"192.0.2.100": "worker1", "192.0.2.101": "worker1"},
        {"192.0.2.100": "worker1", "192.0.2.101": "worker1", "192.0.2.102": "worker2"},
        id="no-move-while-up-and-fewest-first",
    ),
    pytest.param(
        SEED_IPS, [w("worker1"), w("worker2", "192.0.2.12/24")],
        {"192.0.2.100": "worker2", "192.0.2.101": "worker2", "192.0.2.102": "worker2"},
        {"192.0.2.100": "worker2", "192.0.2.101": "worker2", "192.0.2.102": "worker2"},
        id="joining-node-takes-nothing-away",
    ),
    pytest.param(
        SEED_IPS, [w("worker1"), w("worker2", "192.0.2.12/24", up=False), w("worker3", "192.0.2.13/24")],
        {"192.0.2.100": "worker1", "192.0.2.101": "worker2", "192.0.2.102": "worker1"},
        {"192.0.2.100": "worker1", "192.0.2.101": "worker3", "192.0.2.102": "worker1"},
        id="failover-to-least-loaded-up-node",
    ),
    pytest.param(
        ["192.0.2.100"], [m("master1"), w("worker1")], {"192.0.2.100": "master1"}, {"192.0.2.100": "master1"},
        id="sticky-even-on-master",
    ),
    pytest.param(
        SEED_IPS, [w("worker1"), restarting("worker2", "192.0.2.12/24"), w("worker3", "192.0.2.13/24")],
        {"192.0.2.100": "worker1", "192.0.2.101": "worker2"},
        {"192.0.2.100": "worker1", "192.0.2.101": "worker2", "192.0.2.102": "worker3"},
        id="restarting-node-keeps-its-ips-and-takes-no-new-one",
    ),
    pytest.param(
        ["192.0.2.100"], [restarting("worker1")], {}, {"192.0.2.100": ""},
        id="restarting-node-alone-takes-nothing-new",
    ),
    pytest.param(
        ["192.0.2.100"], [restarting("worker1", "198.51.100.11/24"), w("worker2", "192.0.2.12/24")],
        {"192.0.2.100": "worker1"}, {"192.0.2.100": "worker2"},
        id="restarting-node-outside-the-subnet-loses-it",
    ),
    pytest.param(
        ["192.0.2.100"], [w("worker1", "198.51.100.11/24")], {"192.0.2.100": "worker1"}, {"192.0.2.100": ""},
        id="previous-holder-outside-subnet-loses-it",
    ),
    pytest.param(
        ["192.0.2.100", "192.0.2.101"], [w("b", "192.0.2.12/24"), w("a", "192.0.2.13/24")], {},
        {"192.0.2.100": "a", "192.0.2.101": "b"},
        id="ties-broken-by-name",
    ),
]


@pytest.mark.parametrize("ips, nodes, previous, expected", CASES)
def test_rules(ips, nodes, previous, expected):
    result = assign(ips, nodes, previous)
    assert result.holders == expected
    assert set(result.reasons) == {ip for ip, n in expected.items() if not n}


def test_seed_example_per_node_view():
    result = assign(SEED_IPS, [w("worker1"), w("worker2", "192.0.2.12/24")], {})
    assert result.held_by("worker1") == ["192.0.2.100", "192.0.2.102"]
    assert result.held_by("worker2") == ["192.0.2.101"]


@pytest.mark.parametrize(
    "nodes, reason",
    [
        ([w("worker1", "198.51.100.11/24")], "no node's subnet contains 192.0.2.100"),
        ([], "no node's subnet contains 192.0.2.100"),
        ([w("worker1", up=False), m("master1", up=False)], "every node in 192.0.2.100's subnet is Down (master1, worker1)"),
        ([restarting("worker1"), m("master1", up=False)],
         "every node in 192.0.2.100's subnet is Down or Restarting (master1 Down, worker1 Restarting)"),
    ],
)
def test_unassignable_reason(nodes, reason):
    result = assign(["192.0.2.100"], nodes, {})
    assert result.holders == {"192.0.2.100": ""}
    assert result.reasons == {"192.0.2.100": reason}


@pytest.mark.parametrize(
    "ip, reason",
    [
        ("192.0.2.12", "192.0.2.12 is the address of node 'worker2', which can never float"),
        ("192.0.2.0", "192.0.2.0 is the network address of node 'worker1''s subnet 192.0.2.0/24, which can never float"),
        ("192.0.2.255", "192.0.2.255 is the broadcast address of node 'worker1''s subnet 192.0.2.0/24, which can never float"),
        ("192.0.2.1", "192.0.2.1 is a router of node 'worker1' (a gateway of its routes), which can never float"),
    ],
)
def test_cluster_addresses_are_never_assigned(ip, reason):
    nodes = [NodeInfo("worker1", "worker", "192.0.2.11/24", routers=("192.0.2.1",)), w("worker2", "192.0.2.12/24")]
    result = assign([ip, "192.0.2.100"], nodes, {})
    assert result.holders == {ip: "", "192.0.2.100": "worker1"}
    assert result.reasons == {ip: reason}


def test_a_node_joining_with_a_floating_ip_as_its_address_releases_it():
    """The stored gateway became invalid: its holder lets the IP go (rule 5 does not keep it), with a reason."""
    held = {"192.0.2.100": "worker1"}
    joined = [w("worker1", "192.0.2.11/24"), w("worker3", "192.0.2.100/24")]
    result = assign(["192.0.2.100"], joined, held)
    assert result.holders == {"192.0.2.100": ""}
    assert result.reasons["192.0.2.100"] == "192.0.2.100 is the address of node 'worker3', which can never float"


def test_duplicate_ips_are_assigned_once():
    result = assign(["192.0.2.100", "192.0.2.100"], [w("worker1")], {})
    assert result.holders == {"192.0.2.100": "worker1"}


# --- properties ----------------------------------------------------------------------

SUBNETS = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]


@st.composite
def clusters(draw):
    n = draw(st.integers(0, 6))
    nodes = []
    for i in range(n):
        net = ipaddress.ip_network(draw(st.sampled_from(SUBNETS)))
        prefix = draw(st.sampled_from([24, 25]))
        host = draw(st.integers(1, 120))
        nodes.append(NodeInfo(f"n{i}", draw(st.sampled_from(["worker", "master"])), f"{net[host]}/{prefix}", draw(st.booleans())))
    ips = draw(st.lists(st.sampled_from([str(ipaddress.ip_network(s)[h]) for s in SUBNETS for h in (100, 101, 102, 200)]), max_size=8))
    names = [n.name for n in nodes] + ["gone"]
    previous = draw(st.dictionaries(st.sampled_from(ips or ["192.0.2.1"]), st.sampled_from(names)))
    return ips, nodes, previous


def _eligible(node: NodeInfo, ip: str) -> bool:
    return node.up and ipaddress.ip_address(ip) in ipaddress.ip_interface(node.node_ip).network


def _reserved(nodes: list[NodeInfo]) -> dict[str, str]:
    return reserved_addresses((n.name, n.node_ip, n.routers) for n in nodes)


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_every_assignable_ip_assigned_exactly_once_to_an_eligible_node(cluster):
    ips, nodes, previous = cluster
    result = assign(ips, nodes, previous)
    by_name = {n.name: n for n in nodes}
    assert set(result.holders) == set(ips)  # each IP exactly once (a dict key), none invented
    reserved = _reserved(nodes)
    for ip, holder in result.holders.items():
        assignable = ip not in reserved and any(_eligible(n, ip) for n in nodes)
        if not assignable:
            assert holder == "" and result.reasons[ip]
            continue
        assert holder, f"{ip} is assignable but unassigned"
        assert _eligible(by_name[holder], ip)
        if previous.get(ip) != holder:  # a fresh placement obeys the role rule
            workers_up = [n for n in nodes if n.role == "worker" and _eligible(n, ip)]
            assert by_name[holder].role == "worker" or not workers_up
        else:
            assert ip not in result.reasons


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_no_move_while_holder_is_up_and_eligible_and_deterministic(cluster):
    ips, nodes, previous = cluster
    result = assign(ips, nodes, previous)
    by_name = {n.name: n for n in nodes}
    reserved = _reserved(nodes)
    for ip in ips:
        before = previous.get(ip)
        if before in by_name and _eligible(by_name[before], ip) and ip not in reserved:
            assert result.holders[ip] == before
    assert assign(ips, list(reversed(nodes)), previous).holders == result.holders
    # Re-running on its own output changes nothing (no flapping).
    assert assign(ips, nodes, result.holders).holders == result.holders


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5), st.integers(0, 12))
def test_fresh_assignment_is_balanced_across_workers(n_workers, n_ips):
    nodes = [w(f"worker{i}", f"192.0.2.{10 + i}/24") for i in range(n_workers)] + [m("master1")]
    ips = [f"192.0.2.{100 + i}" for i in range(n_ips)]
    result = assign(ips, nodes, {})
    loads = [len(result.held_by(n.name)) for n in nodes if n.role == "worker"]
    assert max(loads) - min(loads) <= 1
    assert result.held_by("master1") == []
