"""Membership leases, leader election, the write guard, probes and fencing, on real etcd."""

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from egress_agent.cluster.detector import Detector
from egress_agent.cluster.election import Election
from egress_agent.cluster.membership import MEMBERS, Membership
from egress_agent.cluster.probe_key import Keyring
from egress_agent.cluster.runtime import Cluster, ClusterOptions
from egress_agent.store.base import ASSIGNMENT, NODE, Conflict, Put, Unavailable
from egress_agent.store.etcd import EtcdStore
from helpers.etcd import free_port, make_cluster
from helpers.store_contract import wait_for

pytestmark = pytest.mark.etcd

MEMBER_SCRIPT = Path(__file__).parent.parent / "helpers" / "cluster_member.py"


def node(name: str, probe: str = "") -> dict:
    return {"name": name, "role": "worker", "node_ip": "192.0.2.11/24", "api_address": probe or f"127.0.0.1:{free_port()}"}


class MemberProcess:
    """cluster_member.py in a subprocess; its JSON lines are collected by a thread."""

    def __init__(self, name: str, endpoints: list[str], prefix: str):
        self.probe = f"127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [sys.executable, str(MEMBER_SCRIPT), name, self.probe, ",".join(endpoints), prefix],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def saw(self, **kv) -> bool:
        return any(all(line.get(k) == v for k, v in kv.items()) for line in self.lines)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)


@pytest.fixture
def processes():
    started: list[MemberProcess] = []
    yield started
    for p in started:
        p.kill()


@pytest.fixture
def started():
    """Things with .stop(); stopped at teardown in reverse order."""
    things = []
    yield things
    for t in reversed(things):
        try:
            t.stop()
        except Exception:
            pass


# -- membership ------------------------------------------------------------------------


def test_register_writes_node_and_live_member_and_leave_removes_liveness(etcd, prefix, started):
    store = EtcdStore(etcd.endpoints, prefix)
    m = Membership(store, node("worker1"), ttl=2)
    m.start()
    started.append(m)
    assert set(store.snapshot([MEMBERS]).of(MEMBERS)) == {"worker1"}
    assert store.get(NODE, "worker1").value["node_ip"] == "192.0.2.11/24"
    time.sleep(2.5)  # longer than the TTL: the keepalives hold it
    assert store.get(MEMBERS, "worker1") is not None and m.session_ok()
    m.stop(leave=True)
    assert store.get(MEMBERS, "worker1") is None
    assert store.get(NODE, "worker1") is not None  # a node that left is still listed (as Down)


def test_killed_member_lease_expires(etcd, prefix, processes):
    store = EtcdStore(etcd.endpoints, prefix)
    p = MemberProcess("worker2", etcd.endpoints, prefix)
    processes.append(p)
    wait_for(lambda: any("registered" in line for line in p.lines), timeout=10, what="registration")
    assert store.get(MEMBERS, "worker2") is not None
    p.kill()
    t0 = time.monotonic()
    wait_for(lambda: store.get(MEMBERS, "worker2") is None, timeout=6, what="the lease to expire")
    took = time.monotonic() - t0
    assert took < 4, f"lease expiry took {took:.2f}s"
    assert store.get(NODE, "worker2") is not None


def test_unreachable_etcd_at_start_is_retried_with_reason_and_nothing_half_written(tmp_path, caplog, started):
    cluster = make_cluster(tmp_path, size=1)
    try:
        store = EtcdStore(cluster.endpoints, "/egress", timeout=0.5)
        m = Membership(store, node("worker1"))
        caplog.set_level(logging.WARNING)
        with pytest.raises(Unavailable):
            m.register(max_wait=1.0)
        assert "cannot register node worker1 in etcd" in caplog.text and "connection refused" in caplog.text
        # etcd appears while the agent is retrying: registration completes.
        threading.Timer(0.5, cluster.start).start()
        m.start(max_wait=20)
        started.append(m)
        assert store.get(MEMBERS, "worker1") is not None
    finally:
        cluster.close()


# -- election --------------------------------------------------------------------------------


def _candidate(store, name, started):
    m = Membership(store, node(name), ttl=2)
    m.start()
    e = Election(store, m)
    e.start()
    started.extend([m, e])
    return m, e


def test_one_leader_and_everyone_agrees_who(etcd, prefix, started):
    store = EtcdStore(etcd.endpoints, prefix)
    _, a = _candidate(store, "a", started)
    wait_for(a.is_leader, what="a to lead")
    _, b = _candidate(store, "b", started)
    time.sleep(0.3)
    assert a.is_leader() and not b.is_leader()
    assert a.leader() == b.leader() == "a"
    with pytest.raises(Conflict, match="not the controller leader"):
        b.guard()
    # A guarded write by the leader goes through.
    store.commit([*a.guard(), Put(ASSIGNMENT, "192.0.2.100", {"node": "a"})])
    # The leader steps down cleanly: the follower takes over at once.
    t0 = time.monotonic()
    a.stop()
    wait_for(b.is_leader, timeout=3, what="b to lead")
    assert time.monotonic() - t0 < 1.0
    wait_for(lambda: b.leader() == "b", what="b's view")


def test_leader_killed_minus_9_follower_takes_over(etcd, prefix, started, processes):
    store = EtcdStore(etcd.endpoints, prefix)
    p = MemberProcess("first", etcd.endpoints, prefix)
    processes.append(p)
    wait_for(lambda: p.saw(leader=True), timeout=10, what="the subprocess to lead")
    _, follower = _candidate(store, "second", started)
    time.sleep(0.3)
    assert follower.leader() == "first" and not follower.is_leader()
    p.kill()
    t0 = time.monotonic()
    wait_for(follower.is_leader, timeout=6, what="the follower to lead")
    took = time.monotonic() - t0
    assert took < 4, f"takeover took {took:.2f}s"
    wait_for(lambda: follower.leader() == "second", what="the view to follow")


def test_deposed_leader_cannot_write(etcd, prefix, started):
    store = EtcdStore(etcd.endpoints, prefix)
    ma, a = _candidate(store, "a", started)
    wait_for(a.is_leader, what="a to lead")
    _, b = _candidate(store, "b", started)
    stale_guard = a.guard()
    # a's lease is revoked behind its back (what expiry does when a is cut off).
    requests.post(etcd.endpoints[0] + "/v3/kv/lease/revoke", json={"ID": str(ma.lease_id)}, timeout=5).raise_for_status()
    wait_for(b.is_leader, timeout=5, what="b to lead")
    with pytest.raises(Conflict) as err:
        store.commit([*stale_guard, Put(ASSIGNMENT, "192.0.2.100", {"node": "a"})])
    assert err.value.kind == "election"
    assert store.get(ASSIGNMENT, "192.0.2.100") is None
    store.commit([*b.guard(), Put(ASSIGNMENT, "192.0.2.100", {"node": "b"})])
    # a notices, registers again, and queues behind b.
    wait_for(lambda: not a.is_leader(), timeout=5, what="a to step down")
    wait_for(lambda: store.get(MEMBERS, "a") is not None, timeout=5, what="a to re-register")


def test_election_survives_one_of_three_etcd_members_stopped(etcd3, started):
    store = EtcdStore(etcd3.endpoints, "/egress", timeout=5)
    _, a = _candidate(store, "a", started)
    wait_for(a.is_leader, what="a to lead")
    _, b = _candidate(store, "b", started)
    etcd3.raft_leader().kill()  # the hardest member to lose: etcd must elect a new raft leader
    time.sleep(3.0)  # longer than the TTL: keepalives must have gone to the other members
    wait_for(a.is_leader, timeout=3, what="a to lead again with a fresh keepalive")
    assert a.is_leader() and not b.is_leader()
    store.commit([*a.guard(), Put(ASSIGNMENT, "192.0.2.100", {"node": "a"})])
    a.stop()
    wait_for(b.is_leader, timeout=5, what="b to lead with a member down")


# -- probes ------------------------------------------------------------------------------------------


def test_detector_sees_a_dead_peer_within_its_window():
    key = os.urandom(32)
    a = Detector("a", f"127.0.0.1:{free_port()}", keyring=Keyring(key, source="test"))
    b = Detector("b", f"127.0.0.1:{free_port()}", session_age=lambda: 1.5, keyring=Keyring(key, source="test"))
    downs = []
    a.on_change = lambda name, up: downs.append((name, up, time.monotonic()))
    try:
        a.set_peers({"b": b.address})
        b.set_peers({"a": a.address})
        a.start()
        b.start()
        time.sleep(0.5)
        assert a.is_up("b") and b.is_up("a") and downs == []
        reachable, age = a.peers()["b"]
        assert reachable and 1.5 <= age < 1.6  # b's session age as b reported it, aged since
        t0 = time.monotonic()
        b.stop()
        wait_for(lambda: not a.is_up("b"), timeout=2, what="b Down")
        took = time.monotonic() - t0
        assert a.window - a.interval <= took < a.window + 0.15, took
        wait_for(lambda: downs, what="the Down callback")
        assert downs[0][:2] == ("b", False)
    finally:
        a.stop()


# -- fencing --------------------------------------------------------------------------------------------


def test_node_cut_off_from_etcd_releases_its_ips_but_a_full_etcd_outage_fails_static(etcd3, started):
    m0 = etcd3.follower()
    others = [m.url for m in etcd3.members if m is not m0]
    isolated = Cluster(EtcdStore([m0.url], "/egress", timeout=0.5), node("x"), ClusterOptions())
    peer = Cluster(EtcdStore(others, "/egress", timeout=0.5), node("y"), ClusterOptions())
    for c in (isolated, peer):
        c.start()
        started.append(c)
    events = []
    isolated.fencing.subscribe(lambda ip, held, why: events.append((ip, held, why)))
    admin = EtcdStore(others, "/egress", timeout=5)
    admin.commit([Put(ASSIGNMENT, "192.0.2.100", {"node": "x"}), Put(ASSIGNMENT, "192.0.2.101", {"node": "y"})])
    wait_for(lambda: isolated.fencing.held() == {"192.0.2.100"}, what="x to hold its IP")
    wait_for(lambda: peer.fencing.held() == {"192.0.2.101"}, what="y to hold its IP")

    m0.kill()  # only x loses etcd; y still renews and says when in its probe replies
    t0 = time.monotonic()
    wait_for(lambda: not isolated.fencing.held(), timeout=6, what="x to release its IP")
    # Counted from the last renewal before the cut, so at most a TTL (plus a check interval) after it.
    assert time.monotonic() - t0 < isolated.membership.ttl + 0.5
    assert isolated.membership.session_age() > isolated.membership.ttl
    # Fencing updates held() first and tells its subscribers right after: wait for the event itself.
    release = wait_for(lambda: events[-1] if events[-1][:2] == ("192.0.2.100", False) else None, timeout=2,
                       what="the release event")
    assert "peer y renewed its own" in release[2]
    assert peer.fencing.held() == {"192.0.2.101"}

    # Now etcd goes away for everyone: y keeps its IP (fail static).
    etcd3.stop_all()
    time.sleep(peer.membership.ttl + 1.0)
    assert peer.fencing.held() == {"192.0.2.101"} and peer.fencing.fenced() == ""
    assert not peer.health()[0] and "etcd unavailable" in peer.health()[1]

    # etcd returns: x re-registers and holds its IP again.
    etcd3.start_all()
    wait_for(lambda: isolated.fencing.held() == {"192.0.2.100"}, timeout=10, what="x to hold its IP again")
    assert peer.fencing.held() == {"192.0.2.101"}
    wait_for(lambda: isolated.health() == (True, ""), timeout=5, what="x healthy")
