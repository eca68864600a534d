"""Graceful restart on real etcd with real agents: SIGTERM keeps the node's IPs within --restart-window.

A stopping agent either restarts (SIGTERM: it writes its restart marker, the
cluster reports it Restarting and keeps its IPs until it is back) or leaves
(SIGINT, or --restart-window 0: its IPs move at once). An agent not back
within its window fails over like a crashed one.
"""

from __future__ import annotations

import time

import pytest

from egress_api import models
from helpers.agent import wait_for
from helpers.agent_group import agreed_status, leader_of, moves
from helpers.etcd import free_port
from helpers.metrics import scrape

pytestmark = pytest.mark.etcd

IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103"]
GW = models.Gateway(name="default", floating_ips=IPS)


def three(group, *extra: str, metrics: dict | None = None):
    """worker1-3 on `group`; with `metrics` (a dict), each serves metrics at the address put in it."""
    extra = extra or ("--restart-window", "30")  # the product's default (the group's is 0)
    agents = []
    for i in (1, 2, 3):
        more = []
        if metrics is not None:
            metrics[f"worker{i}"] = f"127.0.0.1:{free_port()}"
            more = ["--metrics-listen", metrics[f"worker{i}"]]
        agents.append(group.add(f"worker{i}", "worker", f"192.0.2.1{i}/24", extra=[*extra, *more]))
    agents[0].client.create_gateway(GW)
    st = agreed_status(agents, lambda s: all(s.floating_ips.get(ip) for ip in IPS), "the first assignment", timeout=20)
    return agents, dict(st.floating_ips)


def test_a_restarting_leader_keeps_its_ips_and_takes_them_up_again(empty_group):
    agents, before = three(empty_group)
    # The hardest case: the holder is also the leader, so leadership moves while its IPs must not.
    victim = wait_for(lambda: leader_of(agents), what="a leader")
    if victim not in before.values():
        pytest.fail(f"the leader {victim} holds nothing in {before}")
    rest = [a for a in agents if a.node != victim]

    assert empty_group[victim].stop() == 0  # SIGTERM
    agreed_status(rest, lambda s: s.nodes[victim] == "Restarting", "the node to be Restarting", timeout=5)
    # Past the probe window (0.2 s) and the lease TTL (2 s): a stop without the marker would have moved them.
    time.sleep(3.0)
    st = agreed_status(rest, lambda s: s.nodes[victim] == "Restarting", "still Restarting")
    assert st.floating_ips == before
    assert wait_for(lambda: leader_of(rest), what="a new leader") != victim
    assert rest[0].client.get_node(victim).state == "Restarting"

    # Back as after an upgrade that changed a setting: a changed flag, the same node.
    empty_group[victim].extra_args += ["--probe-misses", "12"]
    empty_group[victim].start(timeout=30)
    agreed_status(agents, lambda s: s.nodes[victim] == "Up", "the node Up again", timeout=10)
    assert "a peer is Down after 12 misses" in empty_group[victim].log()
    time.sleep(1.0)
    st = agreed_status(agents, lambda s: True, "a stable status")
    assert st.floating_ips == before and set(st.nodes.values()) == {"Up"}
    assert moves(rest[0]) == 0
    assert "restarting; the cluster keeps its floating IPs for up to 30s" in empty_group[victim].log()


def test_not_back_within_the_window_fails_over_and_sigint_leaves_at_once(empty_group):
    agents, before = three(empty_group, "--restart-window", "2")
    holders = sorted(set(before.values()))
    late, leaver = holders[0], holders[1]
    rest = [a for a in agents if a.node not in (late, leaver)]

    t0 = time.monotonic()
    empty_group[late].stop()  # SIGTERM, and it stays away
    agreed_status([*rest, empty_group[leaver]], lambda s: s.nodes[late] == "Restarting", "Restarting", timeout=5)
    st = agreed_status([*rest, empty_group[leaver]], lambda s: late not in s.floating_ips.values(),
                       "its IPs to move once the window ran out", timeout=10)
    took = time.monotonic() - t0
    # The marker's lease (2 s) ends it: never before, and soon after (etcd checks expiry every 0.5 s or so).
    assert 2.0 <= took < 5.0, f"moved {took:.2f}s after the stop"
    assert st.nodes[late] == "Down"

    empty_group[leaver].leave()  # SIGINT: leaving for good, no window
    t1 = time.monotonic()
    st = agreed_status(rest, lambda s: leaver not in s.floating_ips.values(), "the leaver's IPs to move", timeout=10)
    assert time.monotonic() - t1 < 1.5
    assert st.nodes[leaver] == "Down" and set(st.floating_ips.values()) == {rest[0].node}


def test_restart_window_zero_makes_sigterm_leave(empty_group):
    agents, before = three(empty_group, "--restart-window", "0")
    victim = sorted(set(before.values()))[0]
    rest = [a for a in agents if a.node != victim]
    empty_group[victim].stop()
    t0 = time.monotonic()
    st = agreed_status(rest, lambda s: victim not in s.floating_ips.values(), "the IPs to move", timeout=10)
    assert time.monotonic() - t0 < 1.5
    assert st.nodes[victim] == "Down"


def test_a_crashed_agent_on_a_live_node_keeps_its_ips_a_silent_node_does_not(empty_group):
    """kill -9 leaves the kernel refusing probes (ICMP port unreachable): its agent crashed, its node is alive."""
    metrics: dict[str, str] = {}
    agents, before = three(empty_group, "--restart-window", "5", metrics=metrics)
    leader = wait_for(lambda: leader_of(agents), what="a leader")
    victim = next(n for n in sorted(set(before.values())) if n != leader)
    rest = [a for a in agents if a.node != victim]

    empty_group[victim].kill()
    agreed_status(rest, lambda s: s.nodes[victim] == "Restarting", "the crashed node Restarting", timeout=5)
    m = scrape(metrics[leader])
    assert m.value("egress_peer_agent_gone", peer=victim) == 1 and m.value("egress_peer_up", peer=victim) == 0
    time.sleep(3.0)  # past its lease (2 s): only the refusals keep it
    assert agreed_status(rest, lambda s: True, "a stable status").floating_ips == before
    assert "refuses probes (its agent is gone, its node is alive)" in empty_group[leader].log()
    empty_group[victim].start(timeout=30)
    agreed_status(agents, lambda s: s.nodes[victim] == "Up", "Up again", timeout=10)
    assert agreed_status(agents, lambda s: True, "a stable status").floating_ips == before
    assert moves(rest[0]) == 0

    # Crashed and not back: held for the window (5 s after its last answer), then Down and moved.
    empty_group[victim].kill()
    t0 = time.monotonic()
    st = agreed_status(rest, lambda s: victim not in s.floating_ips.values(), "its IPs to move", timeout=15)
    assert 4.5 <= time.monotonic() - t0 < 8.0 and st.nodes[victim] == "Down"
    empty_group[victim].start(timeout=30)
    agreed_status(agents, lambda s: s.nodes[victim] == "Up", "Up again", timeout=10)

    # A silent node (paused: its socket is bound, so its kernel sends no refusal) is not held.
    holder = next(n for n in sorted(set(st.floating_ips.values())) if n != leader)
    empty_group[holder].pause()
    try:
        t1 = time.monotonic()
        agreed_status([a for a in agents if a.node != holder], lambda s: holder not in s.floating_ips.values(),
                      "the paused holder's IPs to move", timeout=10)
        assert time.monotonic() - t1 < 1.5
    finally:
        empty_group[holder].resume()
