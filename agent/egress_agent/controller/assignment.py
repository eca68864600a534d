"""Floating-IP assignment: which node holds which floating IP.

A pure function of (floating IPs, nodes, previous assignment), implementing the
seed's rules in this order:

1. an IP goes only to an Up node whose uplink subnet contains it;
2. role: a master takes an IP only when no Up worker in that subnet can;
3. nodes holding no floating IP first, then the fewest;
4. ties are broken by node name, so the result is deterministic;
5. an IP whose previous node is still Up (and still eligible) stays there, so
   a node joining never moves traffic (no flapping). So does an IP whose node
   is Restarting (its agent said it would be back within its restart window):
   its kernel still forwards, and moving the IP would be an outage the
   operator did not ask for. A Restarting node is given no new IP (rule 1).

Placement (`Placement`, from the gateway's `node_selector` and
`max_ips_per_node`) narrows "eligible" before these rules: only nodes the
gateway's selector matches may hold its IPs, and a node holds at most
`max_ips_per_node` of *that gateway's* IPs. A relabelled node that no longer
matches loses its IPs once; they stay where they went (rule 5), even if the
node is labelled back. When a cap is lowered, a node keeps its lowest addresses.

An IP no node can take is left unassigned with a reason. So is an IP that is
an address of the cluster itself (a node's address, its subnet's network or
broadcast address, a router of its routes: `models.reserved_addresses`): the
agent refuses such gateways, but a node joining later can make a stored
floating IP one of them, and then its holder lets it go (Unassignable event)
rather than answer ARP for a neighbour or the router.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from egress_agent.node_info import NodeInfo
from egress_api.models import Gateway, LabelSelector, reserved_addresses


@dataclass(frozen=True)
class Placement:
    """Where one gateway's floating IPs may go. The default places anywhere, uncapped."""

    gateway: str = ""
    selector: Optional[LabelSelector] = None  # None: every node
    max_per_node: Optional[int] = None  # of this gateway's IPs, on one node; None: no cap

    @classmethod
    def of(cls, gateway: Gateway) -> "Placement":
        return cls(gateway.name, gateway.node_selector, gateway.max_ips_per_node)

    def selects(self, node: NodeInfo) -> bool:
        return self.selector is None or self.selector.matches(node.labels)

    def selector_text(self) -> str:
        return f"gateway {self.gateway!r}'s node_selector {{{self.selector.text() if self.selector else '<all>'}}}"


ANYWHERE = Placement()


@dataclass
class Assignment:
    holders: dict[str, str] = field(default_factory=dict)  # ip -> node name ("" = unassigned)
    reasons: dict[str, str] = field(default_factory=dict)  # ip -> why unassigned
    # ip -> why its previous holder, still Up, let it go (a relabel, a lower cap, a subnet change).
    released: dict[str, str] = field(default_factory=dict)

    def held_by(self, node: str) -> list[str]:
        return sorted((ip for ip, n in self.holders.items() if n == node), key=ipaddress.ip_address)


def _sorted_ips(ips: Iterable[str]) -> list[str]:
    return sorted(set(ips), key=ipaddress.ip_address)


def assign(
    floating_ips: Iterable[str],
    nodes: Iterable[NodeInfo],
    previous: Mapping[str, str],
    placement: Mapping[str, Placement] = {},
) -> Assignment:
    """Assign every floating IP to at most one node. See the module docstring for the rules.

    `placement` maps a floating IP to its gateway's Placement; an IP not in it may go anywhere.
    """
    by_name = {n.name: n for n in nodes}
    ips = _sorted_ips(floating_ips)
    result = Assignment()
    load: dict[str, int] = {name: 0 for name in by_name}
    held_of_gateway: Counter[tuple[str, str]] = Counter()  # (gateway, node) -> IPs held, for max_per_node
    selected: dict[int, frozenset[str]] = {}  # id(placement) -> names of the nodes its selector matches

    def selects(where: Placement, node: NodeInfo) -> bool:
        # Matched once per placement (a gateway's IPs share one), not once per IP and node.
        if id(where) not in selected:
            selected[id(where)] = frozenset(n.name for n in by_name.values() if where.selects(n))
        return node.name in selected[id(where)]
    reserved = reserved_addresses((n.name, n.node_ip, n.routers) for n in by_name.values())
    for ip in ips:
        if ip in reserved:
            result.holders[ip] = ""
            result.reasons[ip] = f"{ip} is {reserved[ip]}, which can never float"

    def under_cap(where: Placement, node: NodeInfo) -> bool:
        return where.max_per_node is None or held_of_gateway[where.gateway, node.name] < where.max_per_node

    def take(ip: str, where: Placement, node: NodeInfo) -> None:
        result.holders[ip] = node.name
        load[node.name] += 1
        held_of_gateway[where.gateway, node.name] += 1

    # Rule 5 first: keep every assignment whose node is still Up (or restarting within its window) and eligible.
    for ip in ips:
        holder = by_name.get(previous.get(ip, ""))
        if holder is None or ip in reserved or not holder.keeps_holdings:
            continue
        where = placement.get(ip, ANYWHERE)
        if ipaddress.ip_address(ip) not in holder.network:
            result.released[ip] = "can no longer hold it (its subnet changed)"
        elif not selects(where, holder):
            result.released[ip] = f"no longer matches {where.selector_text()}"
        elif not under_cap(where, holder):
            result.released[ip] = f"holds max_ips_per_node={where.max_per_node} of gateway {where.gateway!r}'s IPs"
        else:
            take(ip, where, holder)

    for ip in ips:
        if ip in result.holders:
            continue
        addr = ipaddress.ip_address(ip)
        where = placement.get(ip, ANYWHERE)
        candidates = [n for n in by_name.values() if n.can_hold(addr) and selects(where, n) and under_cap(where, n)]
        if not candidates:
            result.holders[ip] = ""
            result.reasons[ip] = _why_unassignable(addr, by_name.values(), where)
            continue
        workers = [n for n in candidates if n.role == "worker"]
        pool = workers or candidates
        take(ip, where, min(pool, key=lambda n: (load[n.name], n.name)))
    return result


def _why_unassignable(ip: ipaddress.IPv4Address, nodes: Iterable[NodeInfo], where: Placement) -> str:
    in_subnet = [n for n in nodes if ip in ipaddress.ip_interface(n.node_ip).network]
    if not in_subnet:
        return f"no node's subnet contains {ip}"
    selected = [n for n in in_subnet if where.selects(n)]
    if not selected:
        names = ", ".join(sorted(n.name for n in in_subnet))
        return f"no node in {ip}'s subnet matches {where.selector_text()} ({names} do not)"
    if not any(n.up for n in selected):
        # A Restarting node keeps what it holds but takes nothing new: name it so, an operator waits for it.
        if any(n.restarting for n in selected):
            state, names = "Down or Restarting", ", ".join(sorted(f"{n.name} {n.state}" for n in selected))
        else:
            state, names = "Down", ", ".join(sorted(n.name for n in selected))
        if where.selector is None:
            return f"every node in {ip}'s subnet is {state} ({names})"
        return f"every node in {ip}'s subnet that {where.selector_text()} selects is {state} ({names})"
    up = ", ".join(sorted(n.name for n in selected if n.up))
    return (f"every Up node that may hold it already holds max_ips_per_node={where.max_per_node} of gateway "
            f"{where.gateway!r}'s IPs ({up})")
