"""A takeover is announced again and again: a neighbour left with the old holder's MAC is corrected.

The router of the lab's node network is told, right after worker1 took the floating IP, that the IP
lives at worker2's MAC (as if it had missed or ignored the first gratuitous ARP), with a `reachable`
entry it would not re-check for about 30 s. The agent's repeated announcements (default: 3 more,
1 s apart) must correct it; a Linux neighbour ignores updates for `locktime` (1 s) after its entry
changed, so one repeat may pass unheeded: the bound is two intervals.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from egress_api import models
from egress_lab import agents, netns, topology as T
from helpers.agent_lab import eventually

pytestmark = pytest.mark.kernel

FIP = "192.0.2.100"


def mac(ns: str) -> str:
    return json.loads(netns.run(ns, ["ip", "-j", "link", "show", T.UPLINK]).stdout)[0]["address"]


def router_sees(ip: str) -> str:
    entries = json.loads(netns.run(T.router_ns(), ["ip", "-j", "neigh", "show", "to", ip, "dev", T.UPLINK]).stdout)
    return entries[0].get("lladdr", "") if entries else ""


def test_a_stale_arp_entry_is_corrected_by_a_repeated_announcement(clean_lab):
    with clean_lab.client() as c:
        c.create_gateway(models.Gateway(name="default", floating_ips=[FIP]))
    eventually(lambda: clean_lab.holder(FIP), "worker1")
    taken_at = time.monotonic()
    holder, old = mac(clean_lab.node("worker1").netns), mac(clean_lab.node("worker2").netns)
    try:
        make_stale(old)
        eventually(lambda: router_sees(FIP), holder, timeout=2.5)

        # The control: once the repeats are over (3 x 1 s), nothing corrects such an entry for a while,
        # so it was the repeats above, and the agent does not announce forever.
        time.sleep(max(0.0, taken_at + 3.5 - time.monotonic()))
        make_stale(old)
        time.sleep(2.5)
        assert router_sees(FIP) == old
        text = agents.metrics(clean_lab.node("worker1"))
        assert int(float(re.search(r"^egress_garp_repeats_sent_total (\S+)$", text, re.M).group(1))) >= 3
    finally:
        netns.run(T.router_ns(), ["ip", "neigh", "del", FIP, "dev", T.UPLINK], check=False)  # others' tests


def make_stale(wrong_mac: str) -> None:
    """Point the router's entry at `wrong_mac`. A repeat that lands between the write and the read-back
    corrects it at once (CI saw it once); that is the repeat doing its job, so write again."""
    for _ in range(3):
        netns.run(T.router_ns(), ["ip", "neigh", "replace", FIP, "lladdr", wrong_mac, "dev", T.UPLINK, "nud", "reachable"])
        if router_sees(FIP) == wrong_mac:
            return
    assert router_sees(FIP) == wrong_mac
