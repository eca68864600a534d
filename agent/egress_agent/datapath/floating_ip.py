"""Floating IPs on the uplink: add the ones this node holds, announce them, remove the rest.

A floating IP is added as a /32 (no extra subnet route) labelled `<uplink>:egress`
when the label fits IFNAMSIZ, so `ip addr` shows what the agent put there.
Only an IP inside the node's own subnet is ever configured (the seed's rule);
any other /32 of that subnet on the uplink is treated as one we added earlier.

A takeover is announced with gratuitous ARP at once and then `repeats` more
times, `interval` seconds apart, while the node still holds the IP (`Announcer`):
one announcement can be lost, and a neighbour that just refreshed its entry
ignores updates for its `locktime` (1 s by default on Linux), so the old
holder's MAC can outlive a single announcement (ovn-kubernetes#6553,
antrea#5117 are what stale ARP costs).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from . import garp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Announcements:
    """How a takeover is announced: at once, then `repeats` more times `interval` seconds apart."""

    repeats: int = 3
    interval: float = 1.0


class Announcer:
    """Repeats gratuitous ARP for recently taken-over IPs on a thread of its own (which exits when idle).

    It never touches netlink: whether an IP is still held is what `apply` last told it.
    """

    def __init__(self, send: Callable[[str, str], None], plan: Announcements):
        self._send = send
        self.plan = plan
        self._lock = threading.Lock()
        self._due: dict[str, list] = {}  # ip -> [uplink, announcements left, monotonic time of the next]
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0  # repeated announcements sent (tests, logs)

    def schedule(self, uplink: str, ip: str) -> None:
        if self.plan.repeats <= 0:
            return
        with self._lock:
            self._due[ip] = [uplink, self.plan.repeats, time.monotonic() + self.plan.interval]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="garp-repeat", daemon=True)
                self._thread.start()
        self._wake.set()

    def forget(self, ip: str) -> None:
        """The IP is no longer ours: announcing it now would steal it back."""
        with self._lock:
            self._due.pop(ip, None)

    def cancel(self) -> None:
        """Announce nothing more (the datapath is closing); the thread exits when it wakes."""
        with self._lock:
            self._due.clear()
        self._wake.set()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._due:
                    self._thread = None
                    return
                now = time.monotonic()
                ready = [(ip, entry[0]) for ip, entry in self._due.items() if entry[2] <= now]
                for ip, _ in ready:
                    entry = self._due[ip]
                    entry[1] -= 1
                    entry[2] = now + self.plan.interval
                    if entry[1] <= 0:
                        del self._due[ip]
                wait = min((e[2] for e in self._due.values()), default=now) - now
            for ip, uplink in ready:
                try:
                    self._send(uplink, ip)
                    self.sent += 1
                except OSError as err:
                    log.warning("repeating the gratuitous ARP for %s on %s failed: %s", ip, uplink, err)
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()


class FloatingIPs:
    def __init__(self, ipr, netns: str | None, announcements: Announcements = Announcements()) -> None:
        self._ipr = ipr
        self._garp = garp.Sender(netns)
        self.announcer = Announcer(lambda uplink, ip: self.announce(uplink, ip, count=1), announcements)

    def _index(self, uplink: str) -> int:
        found = self._ipr.link_lookup(ifname=uplink)
        if not found:
            raise RuntimeError(f"uplink {uplink!r} does not exist on this node")
        return found[0]

    def current(self, uplink: str, node_ip: str) -> set[str]:
        iface = ipaddress.ip_interface(node_ip)
        out = set()
        for a in self._ipr.get_addr(index=self._index(uplink), family=2):
            addr = a.get("IFA_ADDRESS")
            if a["prefixlen"] == 32 and addr != str(iface.ip) and ipaddress.ip_address(addr) in iface.network:
                out.add(addr)
        return out

    def apply(self, uplink: str, node_ip: str, held: set[str]) -> tuple[set[str], set[str]]:
        """Returns (added, removed). IPs outside the node's subnet are never configured."""
        subnet = ipaddress.ip_interface(node_ip).network
        desired = {ip for ip in held if ipaddress.ip_address(ip) in subnet}
        idx = self._index(uplink)
        have = self.current(uplink, node_ip)
        label = f"{uplink}:egress"
        for ip in sorted(have - desired):
            self.announcer.forget(ip)
            self._ipr.addr("del", index=idx, address=ip, prefixlen=32)
        for ip in sorted(desired - have):
            kw = {"label": label} if len(label) < 16 else {}
            self._ipr.addr("add", index=idx, address=ip, prefixlen=32, **kw)
        for ip in sorted(desired - have):
            self.announce(uplink, ip)
            self.announcer.schedule(uplink, ip)
        return desired - have, have - desired

    def announce(self, uplink: str, ip: str, count: int = 2) -> None:
        self._garp.send(uplink, ip, count)

    def close(self) -> None:
        self.announcer.cancel()
        self._garp.close()

    def release_all_but(self, uplink: str, node_ip: str, keep: set[str]) -> set[str]:
        """Remove every floating IP on the uplink but `keep` (adding none); returns those removed."""
        return self.apply(uplink, node_ip, self.current(uplink, node_ip) & keep)[1]

    def cleanup(self, uplink: str, node_ip: str) -> None:
        self.apply(uplink, node_ip, set())
