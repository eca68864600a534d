"""Floating IPs on the uplink: add the ones this node holds, announce them, remove the rest.

A floating IP is added as a /32 (no extra subnet route) labelled `<uplink>:egress`
when the label fits IFNAMSIZ, so `ip addr` shows what the agent put there.
Only an IP inside the node's own subnet is ever configured (the seed's rule);
any other /32 of that subnet on the uplink is treated as one we added earlier.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys

from . import garp


class FloatingIPs:
    def __init__(self, ipr, netns: str | None) -> None:
        self._ipr = ipr
        self._netns = netns

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
            self._ipr.addr("del", index=idx, address=ip, prefixlen=32)
        for ip in sorted(desired - have):
            kw = {"label": label} if len(label) < 16 else {}
            self._ipr.addr("add", index=idx, address=ip, prefixlen=32, **kw)
        for ip in sorted(desired - have):
            self.announce(uplink, ip)
        return desired - have, have - desired

    def announce(self, uplink: str, ip: str, count: int = 2) -> None:
        if self._netns is None:
            garp.send(uplink, ip, count)
            return
        subprocess.run(
            ["ip", "netns", "exec", self._netns, sys.executable, "-m", "egress_agent.datapath.garp", uplink, ip, str(count)],
            check=True, capture_output=True, timeout=10,
        )

    def cleanup(self, uplink: str, node_ip: str) -> None:
        self.apply(uplink, node_ip, set())
