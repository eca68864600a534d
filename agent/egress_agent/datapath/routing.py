"""Policy routing on the source node: a steered packet (fwmark) goes to its gateway node.

One fwmark, one `ip rule` and one routing table per remote gateway node (not
per policy): `ip rule fwmark M lookup M` -> `default via GATEWAY dev UPLINK`.
The packet is still routed and forwarded by the kernel, so the node's
nftables forward filter (network policy) sees it before it leaves.

Mark layout: 0x0E50 in the top 16 bits, the gateway node IP's low 16 bits below
(0x0E50020C for 192.0.2.12). The table number is the mark itself.
"""

from __future__ import annotations

import ipaddress

MARK_BASE = 0x0E500000
MARK_MASK = 0xFFFF0000
RULE_PRIORITY = 1000  # after `local` (0), before `main` (32766)


def mark_for(gateway_ip: str) -> int:
    return MARK_BASE | (int(ipaddress.ip_address(gateway_ip)) & 0xFFFF)


def marks_for(gateways: set[str]) -> dict[str, int]:
    marks = {gw: mark_for(gw) for gw in gateways}
    if len(set(marks.values())) != len(marks):
        raise ValueError(f"gateway node IPs {sorted(gateways)} collide in their low 16 bits: one fwmark each is needed")
    return marks


class Routing:
    def __init__(self, ipr) -> None:
        self._ipr = ipr
        self.marks: dict[str, int] = {}  # gateway node IP -> mark, as last applied

    def _installed(self) -> dict[int, str | None]:
        """Our rules in the kernel: mark -> gateway of its table's default route (None if missing)."""
        out: dict[int, str | None] = {}
        for rule in self._ipr.get_rules(family=2):
            mark = rule.get("FRA_FWMARK")
            if rule.get("FRA_PRIORITY") == RULE_PRIORITY and mark is not None and mark & MARK_MASK == MARK_BASE:
                out[mark] = None
        for mark in out:
            for r in self._ipr.get_routes(family=2, table=mark):
                if r.get("RTA_TABLE") == mark and r["dst_len"] == 0:
                    out[mark] = r.get("RTA_GATEWAY")
        return out

    def apply(self, uplink: str, gateways: set[str]) -> dict[str, int]:
        """Make exactly `gateways` (remote gateway node IPs) reachable by mark; return gateway -> mark."""
        marks = marks_for(gateways)
        oif = self._ipr.link_lookup(ifname=uplink)
        if not oif:
            raise RuntimeError(f"uplink {uplink!r} does not exist on this node")
        have = self._installed()
        for gw, mark in marks.items():
            if have.get(mark, "absent") != gw:
                self._ipr.route("replace", dst="0.0.0.0/0", gateway=gw, oif=oif[0], table=mark, flags=4)  # RTNH_F_ONLINK
            if mark not in have:
                self._ipr.rule("add", fwmark=mark, fwmask=0xFFFFFFFF, table=mark, priority=RULE_PRIORITY, family=2)
        for mark in set(have) - set(marks.values()):
            self._remove(mark)
        self.marks = marks
        return marks

    def _remove(self, mark: int) -> None:
        try:
            self._ipr.rule("del", fwmark=mark, fwmask=0xFFFFFFFF, table=mark, priority=RULE_PRIORITY, family=2)
        except Exception:
            pass
        try:
            self._ipr.flush_routes(table=mark)
        except Exception:
            pass

    def cleanup(self) -> None:
        for mark in self._installed():
            self._remove(mark)
        self.marks = {}
