"""node.desired: a store snapshot -> one node's NodeDatapathState (pure)."""

from __future__ import annotations

import pytest

from egress_agent.node.desired import DesiredMemo, desired_state, selections
from egress_agent.node.naming import host_veth_name
from egress_agent.store.base import ASSIGNMENT, NAMESPACE, NODE, POD, POLICY, Record, Snapshot
from egress_api import models

W1 = models.Node(name="worker1", node_ip="192.0.2.11/24", pod_cidr="10.244.1.0/24", interface="eth0")


def snapshot(pods=(), namespaces=None, policies=(), assignments=None, nodes=None) -> Snapshot:
    rev = iter(range(1, 10_000))
    recs = {POD: {}, NAMESPACE: {}, POLICY: {}, ASSIGNMENT: {}, NODE: {}}
    for p in pods:
        recs[POD][f"{p['namespace']}/{p['name']}"] = Record(POD, f"{p['namespace']}/{p['name']}", p, next(rev))
    for name, labels in (namespaces or {}).items():
        recs[NAMESPACE][name] = Record(NAMESPACE, name, {"name": name, "labels": labels}, next(rev))
    for p in policies:
        recs[POLICY][p["name"]] = Record(POLICY, p["name"], p, next(rev))
    for ip, node in (assignments or {}).items():
        recs[ASSIGNMENT][ip] = Record(ASSIGNMENT, ip, {"node": node, "gateway": "default", "reason": ""}, next(rev))
    default_nodes = {
        "worker1": ("192.0.2.11/24", "10.244.1.0/24"),
        "worker2": ("192.0.2.12/24", "10.244.2.0/24"),
        "master1": ("192.0.2.13/24", "10.244.3.0/24"),
    }
    for name, (ip, cidr) in (default_nodes if nodes is None else nodes).items():
        recs[NODE][name] = Record(NODE, name, {"name": name, "node_ip": ip, "pod_cidr": cidr}, next(rev))
    return Snapshot(revision=100, records=recs)


def pod(name, ns, node, ip, **labels):
    return {"name": name, "namespace": ns, "node": node, "ip": ip, "labels": labels}


SEED_POLICY = {
    "name": "egress",
    "egress": [
        {"namespace_selector": {"match_labels": {"user": "alice"}}, "pod_selector": {"match_labels": {"role": "frontend"}}},
        {"namespace_selector": {"match_labels": {"user": "paul"}}, "pod_selector": {"match_labels": {"role": "frontend"}}},
    ],
    "destination_cidrs": ["198.51.100.0/24"],
    "egress_source_ip": "192.0.2.100",
}

SEED_PODS = [
    pod("fe1", "alice", "worker1", "10.244.1.2", role="frontend"),
    pod("be1", "alice", "worker1", "10.244.1.3", role="backend"),
    pod("bob1", "bob", "worker1", "10.244.1.4", role="frontend"),
    pod("fe2", "alice", "worker2", "10.244.2.2", role="frontend"),
    pod("paul1", "paul", "master1", "10.244.3.2", role="frontend"),
    pod("anon", "nolabels", "worker1", "10.244.1.5", role="frontend"),
]
SEED_NS = {"alice": {"user": "alice"}, "bob": {"user": "bob"}, "paul": {"user": "paul"}}


def test_seed_selection_is_rule_or_and_selector_and():
    snap = snapshot(SEED_PODS, SEED_NS, [SEED_POLICY], {"192.0.2.100": "worker2"})
    sel = selections(snap, [models.Policy.model_validate(SEED_POLICY)])
    # alice+frontend and paul+frontend (OR of rules); not alice's backend, bob, or a namespace with no record.
    assert sel == {"egress": {"10.244.1.2", "10.244.2.2", "10.244.3.2"}}


def test_source_node_state_steers_to_the_holder():
    snap = snapshot(SEED_PODS, SEED_NS, [SEED_POLICY], {"192.0.2.100": "worker2"})
    st = desired_state(snap, W1, "eth0")
    assert st.node == "worker1" and st.uplink == "eth0" and st.node_ip == "192.0.2.11/24"
    assert st.local_pods == {
        "10.244.1.2": host_veth_name("alice", "fe1"),
        "10.244.1.3": host_veth_name("alice", "be1"),
        "10.244.1.4": host_veth_name("bob", "bob1"),
        "10.244.1.5": host_veth_name("nolabels", "anon"),
    }
    (p,) = st.policies
    assert p.gateway_node_ip == "192.0.2.12"
    assert p.destination_cidrs == frozenset({"198.51.100.0/24"})
    assert p.selected_pod_ips == frozenset({"10.244.1.2", "10.244.2.2", "10.244.3.2"})
    assert st.held_floating_ips == frozenset()
    assert st.cluster_pod_cidrs == frozenset({"10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"})


def test_holder_state_holds_the_ip_from_assignments_or_fencing():
    snap = snapshot(SEED_PODS, SEED_NS, [SEED_POLICY], {"192.0.2.100": "worker1"})
    st = desired_state(snap, W1, "eth0")
    assert st.held_floating_ips == {"192.0.2.100"}
    assert st.policies[0].gateway_node_ip == "192.0.2.11"
    assert [p.name for p in st.held_policies()] == ["egress"]
    # Fencing says: do not hold it. Then its own pods' traffic is dropped, never masqueraded.
    fenced = desired_state(snap, W1, "eth0", held=set())
    assert fenced.held_floating_ips == frozenset()
    assert fenced.policies[0].gateway_node_ip is None


def test_an_ip_fencing_granted_ahead_of_the_snapshot_makes_this_node_the_gateway():
    # Fencing's watch saw the takeover commit before the reconciler's mirror did: the snapshot still names
    # the dead holder. Steering this node's pods there while it holds the IP would lose them for a pass.
    snap = snapshot(SEED_PODS, SEED_NS, [SEED_POLICY], {"192.0.2.100": "worker2"})
    st = desired_state(snap, W1, "eth0", held={"192.0.2.100"})
    assert st.held_floating_ips == {"192.0.2.100"}
    assert st.policies[0].gateway_node_ip == "192.0.2.11"
    assert [p.name for p in st.held_policies()] == ["egress"]


@pytest.mark.parametrize("assignments", [{}, {"192.0.2.100": ""}, {"192.0.2.100": "gone-node"}])
def test_no_holder_fails_closed(assignments):
    st = desired_state(snapshot(SEED_PODS, SEED_NS, [SEED_POLICY], assignments), W1, "eth0")
    assert st.policies[0].gateway_node_ip is None


def test_label_and_cidr_changes_show_up():
    changed = dict(SEED_POLICY, destination_cidrs=["198.51.100.0/24", "203.0.113.0/24"])
    ns = dict(SEED_NS, bob={"user": "alice"})  # bob's namespace relabelled: bob1 is now selected
    st = desired_state(snapshot(SEED_PODS, ns, [changed], {"192.0.2.100": "worker2"}), W1, "eth0")
    assert st.policies[0].destination_cidrs == {"198.51.100.0/24", "203.0.113.0/24"}
    assert "10.244.1.4" in st.policies[0].selected_pod_ips


def test_two_policies_two_holders_and_empty_store():
    second = dict(SEED_POLICY, name="bob-egress", egress_source_ip="192.0.2.101",
                  egress=[{"namespace_selector": {"match_labels": {"user": "bob"}}}])
    st = desired_state(
        snapshot(SEED_PODS, SEED_NS, [SEED_POLICY, second], {"192.0.2.100": "worker2", "192.0.2.101": "master1"}),
        W1, "eth0",
    )
    gw = {p.name: p.gateway_node_ip for p in st.policies}
    assert gw == {"egress": "192.0.2.12", "bob-egress": "192.0.2.13"}
    empty = desired_state(snapshot(nodes={}), W1, "eth0")
    assert empty.policies == () and dict(empty.local_pods) == {} and empty.cluster_pod_cidrs == {"10.244.1.0/24"}


def test_node_without_pod_cidr_is_refused():
    with pytest.raises(ValueError, match="--pod-cidr"):
        desired_state(snapshot(), models.Node(name="worker1", node_ip="192.0.2.11/24"), "eth0")


def test_veth_names_are_stable_short_and_distinct():
    a, b = host_veth_name("alice", "fe1"), host_veth_name("bob", "fe1")
    assert a == host_veth_name("alice", "fe1") and a != b
    assert a.startswith("egv") and len(a) <= 15


def test_a_memo_between_passes_changes_no_output():
    """The reconciler keeps a DesiredMemo between passes: every pass must equal a pass without it."""
    memo = DesiredMemo()
    assignments = {"192.0.2.100": "worker2"}
    passes = [
        snapshot(SEED_PODS, SEED_NS, [SEED_POLICY], assignments),
        # a new pod in a label set seen before, and one in a new label set
        snapshot(SEED_PODS + [pod("fe3", "alice", "worker1", "10.244.1.9", role="frontend"),
                              pod("x1", "bob", "worker1", "10.244.1.10", role="x")], SEED_NS, [SEED_POLICY], assignments),
        # the policy changes under the same name: bob's frontends are selected now
        snapshot(SEED_PODS, SEED_NS, [{**SEED_POLICY, "egress": [{"pod_selector": {"match_labels": {"role": "frontend"}}}]}],
                 assignments),
        # a namespace relabel re-selects its pods
        snapshot(SEED_PODS, {**SEED_NS, "bob": {"user": "alice"}}, [SEED_POLICY], assignments),
        # the policy is gone
        snapshot(SEED_PODS, SEED_NS, [], assignments),
    ]
    for snap in passes:
        assert desired_state(snap, W1, "eth0", memo=memo) == desired_state(snap, W1, "eth0")


def test_a_memo_follows_random_pod_and_namespace_changes_exactly():
    """Pods come, go, change labels or IP (two may share an IP), namespaces are relabelled, floating IPs
    move between nodes, policies change: at every pass the memo's answer equals a pass computed from
    scratch (versions as a store gives them: every write a new one)."""
    import random

    from egress_agent.store.base import ASSIGNMENT, NAMESPACE, NODE, POD, POLICY, Record, Snapshot

    rng = random.Random(7)
    version = iter(range(1, 1_000_000))
    recs = {k: {} for k in (POD, NAMESPACE, POLICY, ASSIGNMENT, NODE)}
    for name, ip in (("worker1", "192.0.2.11/24"), ("worker2", "192.0.2.12/24")):
        recs[NODE][name] = Record(NODE, name, {"name": name, "node_ip": ip}, next(version))
    for ns in ("alice", "bob", "paul"):
        recs[NAMESPACE][ns] = Record(NAMESPACE, ns, {"name": ns, "labels": {"user": ns}}, next(version))
    policies = [
        SEED_POLICY,
        {**SEED_POLICY, "name": "backends", "egress_source_ip": "192.0.2.101",
         "egress": [{"pod_selector": {"match_labels": {"role": "backend"}}}]},
        {**SEED_POLICY, "name": "all-of-bob", "egress_source_ip": "192.0.2.102",
         "egress": [{"namespace_selector": {"match_labels": {"user": "bob"}}}]},
    ]
    for p in policies:
        recs[POLICY][p["name"]] = Record(POLICY, p["name"], p, next(version))
    memo = DesiredMemo()
    for step in range(300):
        action = rng.random()
        if action < 0.6 or not recs[POD]:  # a pod starts, or is re-created with other labels or IP
            ns, name = rng.choice(["alice", "bob", "paul"]), f"p{rng.randrange(40)}"
            value = pod(name, ns, rng.choice(["worker1", "worker2"]), f"10.244.1.{rng.randrange(2, 30)}",
                        role=rng.choice(["frontend", "backend", "db"]))
            recs[POD][f"{ns}/{name}"] = Record(POD, f"{ns}/{name}", value, next(version))
        elif action < 0.8:  # a pod goes
            del recs[POD][rng.choice(sorted(recs[POD]))]
        elif action < 0.87:  # a floating IP moves to another node, or loses its holder
            ip, holder = rng.choice(["192.0.2.100", "192.0.2.101", "192.0.2.102"]), rng.choice(["worker1", "worker2", ""])
            recs[ASSIGNMENT][ip] = Record(ASSIGNMENT, ip, {"node": holder, "gateway": "default", "reason": ""},
                                          next(version))
        elif action < 0.95:  # a namespace is relabelled
            ns = rng.choice(["alice", "bob", "paul"])
            recs[NAMESPACE][ns] = Record(NAMESPACE, ns, {"name": ns, "labels": {"user": rng.choice(["alice", "bob"])}},
                                         next(version))
        else:  # a policy changes
            p = {**rng.choice(policies), "destination_cidrs": [rng.choice(["198.51.100.0/24", "203.0.113.0/24"])]}
            recs[POLICY][p["name"]] = Record(POLICY, p["name"], p, next(version))
        snap = Snapshot(revision=step, records={k: dict(v) for k, v in recs.items()})
        assert desired_state(snap, W1, "eth0", memo=memo) == desired_state(snap, W1, "eth0"), step


def test_a_memo_reuses_the_paths_of_policies_whose_inputs_did_not_change():
    """A pod start rebuilds only the paths of the policies selecting it; a moved floating IP only its
    policy's. Reused paths are the same objects, so comparing with the applied state is cheap."""
    others = {**SEED_POLICY, "name": "backends", "egress_source_ip": "192.0.2.101",
              "egress": [{"pod_selector": {"match_labels": {"role": "backend"}}}]}
    memo = DesiredMemo()
    assignments = {"192.0.2.100": "worker1", "192.0.2.101": "worker2"}
    first = desired_state(snapshot(SEED_PODS, SEED_NS, [SEED_POLICY, others], assignments), W1, "eth0", memo=memo)
    started = [*SEED_PODS, pod("fe3", "alice", "worker1", "10.244.1.9", role="frontend")]
    second = desired_state(snapshot(started, SEED_NS, [SEED_POLICY, others], assignments), W1, "eth0", memo=memo)
    assert second.policies[0] is first.policies[0]  # backends: not selecting fe3
    assert second.policies[1] is not first.policies[1] and "10.244.1.9" in second.policies[1].selected_pod_ips
    moved = desired_state(snapshot(started, SEED_NS, [SEED_POLICY, others], {**assignments, "192.0.2.101": "worker1"}),
                          W1, "eth0", memo=memo)
    assert moved.policies[0].gateway_node_ip == "192.0.2.11" and moved.policies[1] is second.policies[1]
