"""A node that pauses (GC, VM steal, SIGSTOP) must not act on its stale view when it resumes.

Four real agents on a real 3-member etcd; the workers hold the floating
IPs. A master that holds none and does not lead is frozen with SIGSTOP for
1 s (five probe windows) and then for 5 s (more than two lease TTLs: its
lease expires and it must register again). When it resumes, its detector
sees every peer silent for the whole pause; it must notice that the
silence was its own and re-observe instead of declaring them Down and
deposing the healthy leader. Expected: zero floating-IP moves, zero new
leader terms, the same holders.
"""

from __future__ import annotations

import time

import pytest

from egress_api import models
from helpers.agent import wait_for
from helpers.agent_group import agreed_status, leader_of, leader_terms, moves

pytestmark = pytest.mark.etcd

IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103"]
PROBE_WINDOW = 0.2  # 20 ms x 10 misses, the agents' default
LEASE_TTL = 2.0


def test_a_paused_non_holder_moves_nothing_and_deposes_nobody(group):
    group.add("master2", "master", "192.0.2.22/24")
    agents = group.running()
    group["worker1"].client.create_gateway(models.Gateway(name="default", floating_ips=IPS))
    before = agreed_status(agents, lambda s: all(s.floating_ips.get(ip) for ip in IPS), "the first assignment",
                           timeout=15).floating_ips
    leader = wait_for(lambda: leader_of(agents), what="one leader")
    target = next(n for n in ("master2", "master1") if n != leader)
    assert target not in before.values()
    moves0, terms0 = moves(group[leader]), leader_terms(agents)

    for pause in (1.0, 2 * LEASE_TTL + 1.0):
        group[target].pause()
        time.sleep(pause)
        group[target].resume()
        # Up again in everyone's view (after 5 s it re-registers with a new lease), then a few windows more.
        agreed_status(agents, lambda s: s.nodes.get(target) == "Up", f"{target} Up after a {pause:g}s pause", timeout=15)
        time.sleep(10 * PROBE_WINDOW)

    assert moves(group[leader]) == moves0, "a floating IP moved"
    assert leader_terms(agents) == terms0, "the leader changed"
    assert leader_of(agents) == leader
    assert agreed_status(agents, lambda s: True, "a stable status").floating_ips == before
    assert "paused or starved" in group[target].log()  # it noticed its own pause


def test_a_paused_holder_loses_exactly_its_ips_once_and_does_not_take_them_back(group):
    agents = group.running()
    group["worker1"].client.create_gateway(models.Gateway(name="default", floating_ips=IPS))
    before = agreed_status(agents, lambda s: all(s.floating_ips.get(ip) for ip in IPS), "the first assignment").floating_ips
    leader = wait_for(lambda: leader_of(agents), what="one leader")
    target = "worker2" if leader != "worker2" else "worker1"
    its_ips = sorted(ip for ip, n in before.items() if n == target)
    assert its_ips
    moves0, terms0 = moves(group[leader]), leader_terms(agents)

    group[target].pause()
    time.sleep(5 * PROBE_WINDOW)  # well past the detection window, within the lease TTL
    others = [a for a in agents if a.node != target]
    moved = agreed_status(others, lambda s: target not in s.floating_ips.values(), "its IPs to move", timeout=5).floating_ips
    group[target].resume()
    agreed_status(agents, lambda s: s.nodes.get(target) == "Up", f"{target} Up again", timeout=10)
    time.sleep(10 * PROBE_WINDOW)

    after = agreed_status(agents, lambda s: True, "a stable status").floating_ips
    assert after == moved  # nothing moved back when it resumed
    assert {ip: n for ip, n in after.items() if n != before[ip]}.keys() == set(its_ips)  # exactly its IPs moved
    assert moves(group[leader]) - moves0 == len(its_ips)  # each once
    assert leader_terms(agents) == terms0 and leader_of(agents) == leader
