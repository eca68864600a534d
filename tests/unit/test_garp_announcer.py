"""The repeated gratuitous ARP of a takeover: how many, how far apart, and never for an IP given up."""

from __future__ import annotations

import time

from egress_agent.datapath.floating_ip import Announcements, Announcer


def test_repeats_then_stops_and_forgets_released_ips():
    sent: list[tuple[float, str]] = []
    a = Announcer(lambda uplink, ip: sent.append((time.monotonic(), ip)), Announcements(repeats=3, interval=0.1))
    t0 = time.monotonic()
    a.schedule("eth0", "192.0.2.100")
    a.schedule("eth0", "192.0.2.101")
    a.forget("192.0.2.101")  # released before its first repeat: announcing it would steal it back
    deadline = time.monotonic() + 5
    while a._thread is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert a._thread is None  # the thread exits when nothing is due
    assert [ip for _, ip in sent] == ["192.0.2.100"] * 3 and a.sent == 3
    offsets = [t - t0 for t, _ in sent]
    assert all(0.08 <= b - a_ <= 0.5 for a_, b in zip([0.0, *offsets], offsets)), offsets


def test_zero_repeats_sends_nothing_more():
    a = Announcer(lambda uplink, ip: None, Announcements(repeats=0))
    a.schedule("eth0", "192.0.2.100")
    assert a._thread is None and a.sent == 0
