"""Metrics of real agents on a real etcd: floating-IP moves and leader changes are counted as they happen."""

from __future__ import annotations

import pytest

from egress_agent import config as cfg
from egress_agent.cluster.election import ELECTION
from egress_api import models
from helpers.agent import wait_for
from helpers.agent_group import agreed_status, leader_of
from helpers.etcd import free_port
from helpers.metrics import scrape

pytestmark = pytest.mark.etcd

IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103"]


def test_moves_and_leader_changes_are_counted(empty_group):
    address = {}
    for name, role, ip in (("worker1", "worker", "192.0.2.11/24"), ("worker2", "worker", "192.0.2.12/24"),
                           ("master1", "master", "192.0.2.21/24")):
        address[name] = f"127.0.0.1:{free_port()}"
        empty_group.add(name, role, ip, extra=["--metrics-listen", address[name]])
    agents = empty_group.running()
    agents[0].client.create_gateway(models.Gateway(name="default", floating_ips=IPS))
    st = agreed_status(agents, lambda s: all(s.floating_ips.get(ip) for ip in IPS), "the first assignment")
    leader = wait_for(lambda: leader_of(agents), what="one leader")
    assert sum(scrape(address[a.node]).value("egress_leader") for a in agents) == 1
    assert scrape(address[leader]).value("egress_leader") == 1

    # Every agent exports the same holders, from the store's assignment records.
    for a in agents:
        m = scrape(address[a.node])
        assert {s.labels["ip"]: s.labels["node"] for s in m.samples("egress_floating_ip_holder")} == st.floating_ips

    # kill -9 a worker holding IPs that does not lead: the leader moves its IPs, reason node_down.
    victim = "worker2" if leader != "worker2" else "worker1"
    held = sum(1 for n in st.floating_ips.values() if n == victim)
    empty_group[victim].kill()
    rest = [a for a in agents if a.node != victim]
    agreed_status(rest, lambda s: victim not in s.floating_ips.values(), "the IPs to move")
    moves = lambda: sum(scrape(address[a.node]).value("egress_floating_ip_moves_total", reason="node_down")  # noqa: E731
                        for a in rest)
    wait_for(lambda: moves() == held, what=f"{held} moves counted")
    assert scrape(address[leader]).value("egress_floating_ip_moves_total") == held  # the leader counts them
    # Every survivor's detector says the victim is Down, after a silence longer than its window (200 ms).
    for a in rest:
        m = wait_for(lambda: (lambda m: m if m.value("egress_peer_up", peer=victim) == 0 else None)(
            scrape(address[a.node])), what=f"{a.node} to see {victim} Down")
        assert {s.labels["peer"]: s.value for s in m.samples("egress_peer_up")} == {
            n: (0 if n == victim else 1) for n in address if n != a.node}
        detections = m.value("egress_peer_down_detection_seconds_count")
        assert detections >= 1 and m.value("egress_peer_down_detection_seconds_sum") > 0.2 * detections
        assert "egress_probe_pauses" in m.families
    assert all(scrape(address[a.node]).value("egress_leader_changes_total") == 0 for a in rest)

    # A killed agent stays a candidate until its lease expires (about the TTL): wait for that, or the
    # election would pass through the dead worker on its way to the last agent (two real changes).
    store = cfg.open_store(empty_group.etcd.store_url)
    try:
        wait_for(lambda: len(store.snapshot([ELECTION]).of(ELECTION)) == 2, timeout=10,
                 what=f"{victim}'s election key to go with its lease")
    finally:
        store.close()

    # kill -9 the leader: the last agent sees the leader change once and leads.
    empty_group[leader].kill()
    last = next(a for a in rest if a.node != leader)
    wait_for(lambda: leader_of([last]) == last.node, timeout=10, what="the last agent to lead")
    m = wait_for(lambda: (lambda m: m if m.value("egress_leader") == 1 else None)(scrape(address[last.node])),
                 what="egress_leader on the last agent")
    assert m.value("egress_leader_changes_total") == 1
