"""The reconcile loop on a real SqliteStore, with a node view that changes (failover, joins, leadership).

Passes are driven with `reconcile_once(after=<the store's revision>)` so each step is deterministic
(the controller reads a watch-fed mirror; the test's own writes must be in it); the threaded loop
itself is exercised by the agent-process tests.
"""

from __future__ import annotations

import pytest

from egress_agent.controller import view
from egress_agent.node_info import NodeInfo
from egress_agent.controller.reconcile import Controller
from egress_agent.server.writes import Writes
from egress_agent.store import base
from egress_agent.store.base import ASSIGNMENT, EVENT, NODE, Check, Put
from egress_agent.store.sqlite import SqliteStore
from egress_api import models

from seed_objects import GW, policy


class Cluster:
    """A node view the test edits, as the etcd membership layer would."""

    def __init__(self, *nodes: NodeInfo):
        self.nodes = {n.name: n for n in nodes}

    def __call__(self) -> list[NodeInfo]:
        return list(self.nodes.values())

    def set(self, name: str, up: bool) -> None:
        n = self.nodes[name]
        self.nodes[name] = NodeInfo(n.name, n.role, n.node_ip, up)


class Leader:
    def __init__(self):
        self.leading = True

    def is_leader(self) -> bool:
        return self.leading

    def leader(self) -> str:
        return "worker1" if self.leading else ""


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


def run_pass(ctl: Controller, store) -> bool:
    """One controller pass that sees every write made so far."""
    return ctl.reconcile_once(after=store.snapshot(()).revision)


def holders(store) -> dict[str, str]:
    return {r.name: r.value["node"] for r in store.list(ASSIGNMENT)}


def events(store, reason):
    return [r.value for r in store.list(EVENT) if r.value["reason"] == reason]


def test_seed_assignment_failover_and_join(store):
    cluster = Cluster(NodeInfo("worker1", "worker", "192.0.2.11/24"), NodeInfo("worker2", "worker", "192.0.2.12/24"))
    ctl = Controller(store, cluster, clock=lambda: 1000.0)
    Writes(store).create(GW)
    assert run_pass(ctl, store)
    assert holders(store) == {"192.0.2.100": "worker1", "192.0.2.101": "worker2", "192.0.2.102": "worker1"}
    assert not run_pass(ctl, store)  # nothing changed: nothing written

    cluster.set("worker2", up=False)
    run_pass(ctl, store)
    assert holders(store) == {"192.0.2.100": "worker1", "192.0.2.101": "worker1", "192.0.2.102": "worker1"}
    (moved,) = events(store, "FloatingIPMoved")
    assert moved["type"] == "Normal" and moved["kind"] == "gateway" and moved["name"] == "default"
    assert moved["message"] == "floating IP 192.0.2.101 moved from worker2 to worker1: worker2 is Down"

    cluster.set("worker2", up=True)  # back Up, and a new node joins: nothing moves (no flapping)
    cluster.nodes["worker3"] = NodeInfo("worker3", "worker", "192.0.2.13/24")
    assert not run_pass(ctl, store)
    assert set(holders(store).values()) == {"worker1"}

    snap = store.snapshot([ASSIGNMENT, NODE, "gateway"])
    gv = view.gateway_view(snap.of("gateway")["default"], snap.of(ASSIGNMENT), snap.of(NODE), cluster())
    assert gv.nodes == {"worker1": "Up", "worker2": "Up", "worker3": "Up"}


def test_master_only_when_no_worker_and_unassignable_events(store):
    cluster = Cluster(NodeInfo("master1", "master", "192.0.2.2/24"), NodeInfo("worker1", "worker", "192.0.2.11/24", up=False))
    ctl = Controller(store, cluster)
    w = Writes(store)
    w.create(models.Gateway(name="default", floating_ips=["192.0.2.100", "203.0.113.10"]))
    w.create(policy("far", source="203.0.113.10"))
    run_pass(ctl, store)
    assert holders(store) == {"192.0.2.100": "master1", "203.0.113.10": ""}
    assert store.get(ASSIGNMENT, "203.0.113.10").value["reason"] == "no node's subnet contains 203.0.113.10"
    (unassignable,) = events(store, "Unassignable")
    (unknown,) = events(store, "UnknownEgressIP")
    assert unknown["name"] == "far" and unknown["type"] == "Warning"
    run_pass(ctl, store)
    run_pass(ctl, store)
    assert events(store, "UnknownEgressIP")[0]["count"] == 1  # a persisting condition is recorded once


def test_down_holder_with_no_other_node_leaves_ip_unassigned(store):
    cluster = Cluster(NodeInfo("worker1", "worker", "192.0.2.11/24"))
    ctl = Controller(store, cluster)
    Writes(store).create(models.Gateway(name="default", floating_ips=["192.0.2.100"]))
    Writes(store).create(policy())
    run_pass(ctl, store)
    assert holders(store) == {"192.0.2.100": "worker1"}
    assert events(store, "UnknownEgressIP") == []
    cluster.set("worker1", up=False)
    run_pass(ctl, store)
    assert holders(store) == {"192.0.2.100": ""}
    assert "every node in 192.0.2.100's subnet is Down (worker1)" in events(store, "UnknownEgressIP")[0]["message"]


def test_only_the_leader_writes_and_guard_fences_commits(store):
    cluster = Cluster(NodeInfo("worker1", "worker", "192.0.2.11/24"))
    leader = Leader()
    store.commit([Put("meta", "leader", {"node": "worker1"})])
    term = store.get("meta", "leader").version
    ctl = Controller(store, cluster, leader, guard=lambda: [Check("meta", "leader", term)])
    Writes(store).create(GW)

    leader.leading = False
    assert not run_pass(ctl, store)
    assert holders(store) == {}

    leader.leading = True
    store.commit([Put("meta", "leader", {"node": "someone-else"})])  # a newer term began elsewhere
    with pytest.raises(base.Conflict):
        run_pass(ctl, store)
    assert holders(store) == {}  # the deposed leader wrote nothing

    term = store.get("meta", "leader").version
    assert run_pass(ctl, store)
    assert set(holders(store).values()) == {"worker1"}


def test_removed_ips_lose_their_assignment(store):
    cluster = Cluster(NodeInfo("worker1", "worker", "192.0.2.11/24"))
    ctl = Controller(store, cluster)
    w = Writes(store)
    w.create(GW)
    run_pass(ctl, store)
    w.update(models.Gateway(name="default", floating_ips=["192.0.2.101"]), 0)
    run_pass(ctl, store)
    assert holders(store) == {"192.0.2.101": "worker1"}


def test_live_relabel_moves_once_with_an_event_naming_the_selector(store):
    """A node view whose labels change while the node stays Up (what a relabel looks like to the controller)."""
    w1, w2 = NodeInfo("worker1", "worker", "192.0.2.11/24"), NodeInfo("worker2", "worker", "192.0.2.12/24")
    cluster = Cluster(NodeInfo(w1.name, w1.role, w1.node_ip, labels={"egress": "yes"}),
                      NodeInfo(w2.name, w2.role, w2.node_ip, labels={"egress": "yes"}))
    ctl = Controller(store, cluster, clock=lambda: 1000.0)
    Writes(store).create(models.parse("gateway", {"name": "edge", "floating_ips": ["192.0.2.100", "192.0.2.101"],
                                                  "node_selector": {"match_labels": {"egress": "yes"}}}))
    run_pass(ctl, store)
    assert holders(store) == {"192.0.2.100": "worker1", "192.0.2.101": "worker2"}

    cluster.nodes["worker1"] = NodeInfo(w1.name, w1.role, w1.node_ip, labels={"egress": "no"})
    run_pass(ctl, store)
    assert holders(store) == {"192.0.2.100": "worker2", "192.0.2.101": "worker2"}
    (moved,) = events(store, "FloatingIPMoved")
    assert moved["message"] == ("floating IP 192.0.2.100 moved from worker1 to worker2: worker1 no longer matches "
                                "gateway 'edge''s node_selector {egress=yes}")

    cluster.nodes["worker1"] = NodeInfo(w1.name, w1.role, w1.node_ip, labels={"egress": "yes"})
    assert not run_pass(ctl, store)  # labelled back: nothing moves back
    assert holders(store) == {"192.0.2.100": "worker2", "192.0.2.101": "worker2"}
