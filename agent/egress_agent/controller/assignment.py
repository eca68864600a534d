"""Floating-IP assignment: which node holds which floating IP.

A pure function of (floating IPs, nodes, previous assignment), implementing the
seed's rules in this order:

1. an IP goes only to an Up node whose uplink subnet contains it;
2. role: a master takes an IP only when no Up worker in that subnet can;
3. nodes holding no floating IP first, then the fewest;
4. ties are broken by node name, so the result is deterministic;
5. an IP whose previous node is still Up (and still eligible by subnet) stays
   there, so a node joining never moves traffic (no flapping).

An IP no node can take is left unassigned with a reason. So is an IP that is
an address of the cluster itself (a node's address, its subnet's network or
broadcast address, a router of its routes: `models.reserved_addresses`): the
agent refuses such gateways, but a node joining later can make a stored
floating IP one of them, and then its holder lets it go (Unassignable event)
rather than answer ARP for a neighbour or the router.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from egress_agent.node_info import NodeInfo
from egress_api.models import reserved_addresses


@dataclass
class Assignment:
    holders: dict[str, str] = field(default_factory=dict)  # ip -> node name ("" = unassigned)
    reasons: dict[str, str] = field(default_factory=dict)  # ip -> why unassigned

    def held_by(self, node: str) -> list[str]:
        return sorted((ip for ip, n in self.holders.items() if n == node), key=ipaddress.ip_address)


def _sorted_ips(ips: Iterable[str]) -> list[str]:
    return sorted(set(ips), key=ipaddress.ip_address)


def assign(floating_ips: Iterable[str], nodes: Iterable[NodeInfo], previous: Mapping[str, str]) -> Assignment:
    """Assign every floating IP to at most one node. See the module docstring for the rules."""
    by_name = {n.name: n for n in nodes}
    ips = _sorted_ips(floating_ips)
    result = Assignment()
    load: dict[str, int] = {name: 0 for name in by_name}
    reserved = reserved_addresses((n.name, n.node_ip, n.routers) for n in by_name.values())
    for ip in ips:
        if ip in reserved:
            result.holders[ip] = ""
            result.reasons[ip] = f"{ip} is {reserved[ip]}, which can never float"

    # Rule 5 first: keep every assignment whose node is still Up and eligible.
    for ip in ips:
        holder = by_name.get(previous.get(ip, ""))
        if holder is not None and ip not in reserved and holder.can_hold(ipaddress.ip_address(ip)):
            result.holders[ip] = holder.name
            load[holder.name] += 1

    for ip in ips:
        if ip in result.holders:
            continue
        addr = ipaddress.ip_address(ip)
        candidates = [n for n in by_name.values() if n.can_hold(addr)]
        if not candidates:
            result.holders[ip] = ""
            result.reasons[ip] = _why_unassignable(addr, by_name.values())
            continue
        workers = [n for n in candidates if n.role == "worker"]
        pool = workers or candidates
        chosen = min(pool, key=lambda n: (load[n.name], n.name))
        result.holders[ip] = chosen.name
        load[chosen.name] += 1
    return result


def _why_unassignable(ip: ipaddress.IPv4Address, nodes: Iterable[NodeInfo]) -> str:
    in_subnet = [n for n in nodes if ip in ipaddress.ip_interface(n.node_ip).network]
    if not in_subnet:
        return f"no node's subnet contains {ip}"
    names = ", ".join(sorted(n.name for n in in_subnet))
    return f"every node in {ip}'s subnet is Down ({names})"
