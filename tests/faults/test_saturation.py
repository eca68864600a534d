"""The failure detector does not cry wolf on a saturated machine or a slow etcd, and still sees a death.

Three real agents with the default detector (probes every 20 ms, Down after 10 misses) on a real
3-member etcd hold four floating IPs. Two busy processes, one per core and at the agents' own
priority, saturate the machine for SATURATED_S seconds; for the last STALLED_S of them etcd is slow
too (every member frozen STALL_S out of every STALL_PERIOD_S, as disks stalling on fsync). Expected:
no healthy peer judged Down, zero floating-IP moves, zero new leader terms. Then, under the same load,
a holder dies (kill -9): exactly its IPs move, so the quiet above is tolerance and not deafness.

Bounded for the suite; bench/false_alarms.py runs the same for ten minutes and per setting.
"""

from __future__ import annotations

import time

import pytest

from egress_api import models
from helpers.agent import wait_for
from helpers.agent_group import agreed_status, down_verdicts, leader_of, leader_terms, moves
from helpers.etcd import EtcdStalls
from helpers.load import busy_processes

pytestmark = pytest.mark.etcd

IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103"]
SATURATED_S = 75.0
STALLED_S = 30.0
STALL_S, STALL_PERIOD_S = 0.5, 2.0


@pytest.mark.timeout(240)
def test_minutes_of_saturation_and_etcd_stalls_move_nothing_and_a_death_still_moves(group, etcd3):
    agents = group.running()
    group["worker1"].client.create_gateway(models.Gateway(name="default", floating_ips=IPS))
    before = agreed_status(agents, lambda s: all(s.floating_ips.get(ip) for ip in IPS), "the first assignment",
                           timeout=15).floating_ips
    leader = wait_for(lambda: leader_of(agents), what="one leader")
    moves0, terms0, downs0 = moves(group[leader]), leader_terms(agents), down_verdicts(agents)

    with busy_processes(2):
        time.sleep(SATURATED_S - STALLED_S)
        with EtcdStalls(etcd3, STALL_S, STALL_PERIOD_S) as stalls:
            time.sleep(STALLED_S)
        assert stalls.stalls >= STALLED_S // STALL_PERIOD_S - 1

        assert down_verdicts(agents) == downs0, "a healthy peer was judged Down"
        assert moves(group[leader]) == moves0, "a floating IP moved although nobody failed"
        assert leader_terms(agents) == terms0, "the leader changed although nobody failed"
        assert agreed_status(agents, lambda s: True, "a stable status", timeout=15).floating_ips == before

        victim = next(n for n in sorted(set(before.values())) if n != leader)
        its_ips = {ip for ip, n in before.items() if n == victim}
        group[victim].kill()
        rest = [a for a in agents if a.node != victim]
        after = agreed_status(rest, lambda s: victim not in s.floating_ips.values()
                              and all(s.floating_ips.get(ip) for ip in IPS), "the dead holder's IPs moved",
                              timeout=15).floating_ips
    assert {ip for ip in IPS if after[ip] != before[ip]} == its_ips
    assert moves(group[leader]) - moves0 == len(its_ips)
