"""Gateway SNAT and the steered-traffic exemption, in the nftables table `inet egress`.

On every node:
  * steered packets (fwmark from steering) leave the source node with the
    pod's own address: an identity SNAT binding at `srcnat - 10` stops the
    node's default masquerade (a later NAT chain) from touching them;
On a gateway node, per selection group (a distinct set of policies selecting
a pod, cluster-wide) in which a policy it holds wins some destination:
  * `ip saddr @g_<group>_pods snat ip to ip daddr map @g_<group>_snat`
    -- the map holds the group's destinations resolved by the one precedence
    rule (`egress_api.precedence`: priority, exclusions, longest prefix,
    name), as disjoint address ranges -> the winning policy's egress IP, only
    where that policy is held here. The source node's classifier resolves the
    same group the same way, so a packet steered for policy A is translated
    to A's IP, and an excluded destination (a hole) is never translated. A
    pod or destination change is a set element change. NAT rules run once
    per connection; conntrack de-NATs the replies.
  * steered traffic that arrives for a policy this node does not hold (the IP
    just moved) is dropped, never masqueraded to the node IP;
  * a filter chain after NAT counts packets/bytes per egress IP (named
    counters `snat_<ip>`, found by one map lookup), shown by `nft list counters table inet egress`.
Changes are applied as one nft transaction each (atomic), in process through
libnftables (`nft.py`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass

from egress_api.precedence import group_ranges

from .nft import Nft
from .routing import MARK_BASE
from .state import NodeDatapathState

TABLE = "egress"
STRAY_MARK = MARK_BASE | 0xFFFFF  # never a gateway mark: those end in the gateway IP's low 16 bits
FAMILY = "inet"


def counter_name(ip: str) -> str:
    return "snat_" + ip.replace(".", "_")


def collapse(cidrs) -> list[str]:
    return [n.with_prefixlen for n in ipaddress.collapse_addresses(ipaddress.ip_network(c) for c in cidrs)]


def group_tag(group: frozenset[str]) -> str:
    """A stable short name for a selection group (the same on every apply and every agent start)."""
    return hashlib.sha1(",".join(sorted(group)).encode()).hexdigest()[:12]


def _range(first: int, last: int) -> str:
    a, b = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
    return str(a) if first == last else f"{a}-{b}"


@dataclass(frozen=True)
class HeldGroup:
    """One selection group's SNAT: its pods, and its destination ranges -> egress IP of a policy held here."""

    tag: str
    policies: tuple[str, ...]
    pods: frozenset[str]
    snat: frozenset[str]  # nft map elements "first-last : egress_ip"


@dataclass(frozen=True)
class EgressIPCounters:
    packets: int
    bytes: int


class Nat:
    def __init__(self, netns: str | None) -> None:
        self._nft = Nft(netns)
        self._applied: dict[str, HeldGroup] | None = None  # None: table not built by us yet
        self._applied_rules: tuple | None = None
        self._applied_incluster: frozenset[str] = frozenset()
        self._applied_podcidrs: frozenset[str] = frozenset()
        self._applied_ips: set[str] = set()  # egress IPs with a counter

    def close(self) -> None:
        self._nft.close()

    # --- desired state -------------------------------------------------------

    @staticmethod
    def _held(state: NodeDatapathState) -> dict[str, HeldGroup]:
        held = {p.name: p.egress_source_ip for p in state.held_policies()}
        if not held:
            return {}
        selected = set().union(*(p.selected_pod_ips for p in state.policies if p.name in held))
        pods_of: dict[frozenset[str], set[str]] = {}
        for ip, group in state.selection_groups(selected).items():
            pods_of.setdefault(group, set()).add(ip)
        out = {}
        for group, pods in pods_of.items():
            snat = frozenset(
                f"{_range(first, last)} : {held[name]}"
                for first, last, name in group_ranges(state.group_rules(group)) if name in held
            )
            if snat:
                tag = group_tag(group)
                out[tag] = HeldGroup(tag, tuple(sorted(group)), frozenset(pods), snat)
        return out

    def _rules(self, uplink: str, held: dict[str, HeldGroup]) -> tuple:
        return (uplink, tuple(sorted((h.tag, h.policies) for h in held.values())))

    def _chains(self, uplink: str, held: dict[str, HeldGroup]) -> list[str]:
        t = f"{FAMILY} {TABLE}"
        lines = [f"flush chain {t} forward", f"flush chain {t} postrouting", f"flush chain {t} count_snat"]
        # Pod traffic that enters and leaves by the uplink towards the outside
        # was steered here by another node; if no held policy translates it
        # (e.g. the IP just moved away), drop it rather than masquerade it.
        lines.append(
            f'add rule {t} forward iifname "{uplink}" oifname "{uplink}" ip saddr @podcidrs ip daddr != @incluster '
            f'meta mark set {STRAY_MARK:#010x} comment "steered here from another node"'
        )
        lines.append(f'add rule {t} postrouting ip daddr @incluster accept comment "in-cluster: never egress NAT"')
        lines.append(
            f"add rule {t} postrouting meta mark & 0xffff0000 == {MARK_BASE:#010x} counter snat ip to ip saddr "
            f'comment "steered to a gateway node: keep the pod source, skip the default masquerade"'
        )
        # A pod is in one group only, and a group's map ranges are disjoint: at most one rule translates.
        for tag, policies in self._rules(uplink, held)[1]:
            lines.append(
                f'add rule {t} postrouting oifname "{uplink}" ip saddr @g_{tag}_pods '
                f'counter snat ip to ip daddr map @g_{tag}_snat comment "{_group_comment(policies)}"'
            )
        lines.append(
            f'add rule {t} postrouting meta mark {STRAY_MARK:#010x} counter drop '
            f'comment "steered here but no policy held here: fail closed, never the node IP"'
        )
        # One map lookup per packet, however many egress IPs this node holds.
        lines.append(f'add rule {t} count_snat oifname "{uplink}" counter name ip saddr map @snat_counters')
        return lines

    def apply(self, state: NodeDatapathState) -> None:
        held = self._held(state)
        incluster = frozenset(state.in_cluster_cidrs())
        podcidrs = frozenset(collapse(state.cluster_pod_cidrs | {state.pod_cidr}))
        t = f"{FAMILY} {TABLE}"
        lines: list[str] = []
        if self._applied is None:
            # First apply by this process: rebuild the table in one transaction
            # (conntrack keeps existing translations, so connections survive).
            lines += [
                f"table {t}",
                f"delete table {t}",
                f"add table {t}",
                f"add set {t} incluster {{ type ipv4_addr; flags interval; }}",
                f"add set {t} podcidrs {{ type ipv4_addr; flags interval; }}",
                f"add map {t} snat_counters {{ type ipv4_addr : counter; }}",
                f"add chain {t} forward {{ type filter hook forward priority filter + 10; policy accept; }}",
                f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat - 10; policy accept; }}",
                f"add chain {t} count_snat {{ type filter hook postrouting priority srcnat + 10; policy accept; }}",
            ]
            old: dict[str, HeldGroup] = {}
            old_rules = None
            old_incluster: frozenset[str] = frozenset()
            old_podcidrs: frozenset[str] = frozenset()
        else:
            old, old_rules, old_incluster = self._applied, self._applied_rules, self._applied_incluster
            old_podcidrs = self._applied_podcidrs

        lines += _element_diff(t, "incluster", old_incluster, incluster)
        lines += _element_diff(t, "podcidrs", old_podcidrs, podcidrs)
        for tag, h in held.items():
            prev = old.get(tag)
            if prev is None:
                lines.append(f"add set {t} g_{tag}_pods {{ type ipv4_addr; }}")
                lines.append(f"add map {t} g_{tag}_snat {{ type ipv4_addr : ipv4_addr; flags interval; }}")
            lines += _element_diff(t, f"g_{tag}_pods", prev.pods if prev else frozenset(), h.pods)
            lines += _element_diff(t, f"g_{tag}_snat", prev.snat if prev else frozenset(), h.snat, is_map=True)
        old_ips = self._applied_ips if self._applied is not None else set()
        new_ips = {p.egress_source_ip for p in state.held_policies()}
        for ip in sorted(new_ips - old_ips, key=ipaddress.ip_address):
            lines.append(f"add counter {t} {counter_name(ip)}")
            lines.append(f'add element {t} snat_counters {{ {ip} : "{counter_name(ip)}" }}')
        rules = self._rules(state.uplink, held)
        if rules != old_rules:
            lines += self._chains(state.uplink, held)
        for tag in sorted(set(old) - set(held)):
            lines += [f"delete map {t} g_{tag}_snat", f"delete set {t} g_{tag}_pods"]
        for ip in sorted(old_ips - new_ips, key=ipaddress.ip_address):
            lines.append(f"delete element {t} snat_counters {{ {ip} }}")
            lines.append(f"delete counter {t} {counter_name(ip)}")
        if lines:
            self._nft.run("\n".join(lines) + "\n")
        self._applied, self._applied_rules, self._applied_incluster = held, rules, incluster
        self._applied_podcidrs = podcidrs
        self._applied_ips = new_ips

    def sizes(self) -> dict[str, int]:
        """SNAT rules (one per selection group) and their pod and destination-range elements."""
        held = self._applied or {}
        return {"snat_rules": len(held), "snat_pod_elements": sum(len(h.pods) for h in held.values()),
                "snat_range_elements": sum(len(h.snat) for h in held.values())}

    def cleanup(self) -> None:
        self._nft.run(f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
        self._applied = None
        self._applied_rules = None
        self._applied_incluster = frozenset()

    def counters(self) -> dict[str, EgressIPCounters]:
        """Packets/bytes that left translated, per egress IP held here."""
        out = self._nft.run(f"list counters table {FAMILY} {TABLE}", json_output=True)
        result = {}
        for obj in json.loads(out)["nftables"]:
            c = obj.get("counter")
            if c and c["name"].startswith("snat_"):
                ip = c["name"][len("snat_") :].replace("_", ".")
                result[ip] = EgressIPCounters(packets=c["packets"], bytes=c["bytes"])
        return result


def _group_comment(policies: tuple[str, ...]) -> str:
    """Which policies a group's rule is for, within nftables' 128-character comment limit."""
    text = "policies " + ",".join(policies)
    if len(text) <= 128:
        return text
    return f"{len(policies)} policies: {policies[0]},..."[:128]


def _element_diff(table: str, set_name: str, old: frozenset[str], new: frozenset[str], is_map: bool = False) -> list[str]:
    lines = []
    removed = sorted(old - new)
    added = sorted(new - old)
    if is_map:  # a map element is deleted by its key alone
        removed = [e.split(" : ")[0] for e in removed]
    # Delete first: an interval set rejects an overlapping element still present.
    if removed:
        lines.append(f"delete element {table} {set_name} {{ {', '.join(removed)} }}")
    if added:
        lines.append(f"add element {table} {set_name} {{ {', '.join(added)} }}")
    return lines
