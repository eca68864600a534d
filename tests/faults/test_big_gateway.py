"""A gateway bigger than one etcd transaction (etcd 3.4 refuses more than 128 operations per txn).

200 floating IPs inside the nodes' subnet plus 70 that no node can take (each
an `Unassignable` event): the first assignment alone is about 340 record
writes. The controller cuts them into guarded commits under the limit, and a
dead holder's IPs still move within the normal failover time.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from egress_api import models
from helpers.agent_group import agreed_status, leader_of
from helpers.agent import wait_for

pytestmark = pytest.mark.etcd

BASE = ipaddress.ip_address("192.0.2.30")
INSIDE = [str(BASE + i) for i in range(200)]  # 192.0.2.30 .. 192.0.2.229, the nodes' subnet
OUTSIDE = [str(ipaddress.ip_address("198.51.100.10") + i) for i in range(70)]  # no node's subnet


def test_gateway_of_200_ips_assigns_and_fails_over(group):
    agents = group.running()
    group["worker1"].client.create_gateway(models.Gateway(name="default", floating_ips=INSIDE))
    group["worker1"].client.create_gateway(models.Gateway(name="outside", floating_ips=OUTSIDE))
    st = agreed_status(agents, lambda s: all(s.floating_ips.get(ip) for ip in INSIDE), "200 IPs assigned", timeout=20)
    assert sorted(set(st.floating_ips.values())) == ["worker1", "worker2"]  # workers first, balanced
    assert abs(list(st.floating_ips.values()).count("worker1") - 100) <= 1
    out = group["worker2"].client.gateway_status("outside")
    assert set(out.unassigned_reasons) == set(OUTSIDE)
    # The events follow the assignments in their own guarded commits (cut under etcd's 128-op limit), so they
    # may land a moment after the status shows every IP unassigned.
    wait_for(lambda: len([e for e in group["master1"].client.list_events("gateway", "outside")
                          if e.reason == "Unassignable"]) == len(OUTSIDE),
             timeout=10, what="an Unassignable event for each of the 70 IPs")

    leader = wait_for(lambda: leader_of(agents), what="one leader")
    victim = "worker2" if leader != "worker2" else "worker1"
    victim_ips = sorted(ip for ip, n in st.floating_ips.items() if n == victim)
    group[victim].kill()
    t0 = time.monotonic()
    others = [a for a in agents if a.node != victim]
    st = agreed_status(others, lambda s: victim not in s.floating_ips.values(), "100 IPs to move", timeout=10)
    took = time.monotonic() - t0
    # Same bound as the 4-IP failover test (tests/cluster): detection (200 ms) + one election-free commit.
    assert took < 1.5, f"failover of {len(victim_ips)} IPs took {took:.2f}s"
    assert all(st.floating_ips[ip] and st.floating_ips[ip] != victim for ip in INSIDE)
    moved = [e for e in others[0].client.list_events("gateway", "default") if e.reason == "FloatingIPMoved"]
    assert {ip for ip in victim_ips if any(f"{ip} moved from {victim} " in e.message for e in moved)} == set(victim_ips)
