"""Gateway SNAT and the steered-traffic exemption, in the nftables table `inet egress`.

On every node:
  * steered packets (fwmark from steering) leave the source node with the
    pod's own address: an identity SNAT binding at `srcnat - 10` stops the
    node's default masquerade (a later NAT chain) from touching them;
On a gateway node, per policy whose egress_source_ip it holds, and per
prefix length among its destination CIDRs:
  * `ip saddr @pods_<policy> ip daddr @dsts_<policy>_<len> snat to <egress_source_ip>`
    -- sets, not rules, per pod and CIDR, so a pod or CIDR change is a set
    element change. Rules run longest prefix first, then by policy name: the
    same precedence as the steering classifier's LPM trie, so when one
    gateway holds two policies with overlapping CIDRs it translates to the
    IP of the policy the source node chose. NAT rules run once per
    connection; conntrack de-NATs the replies.
  * steered traffic that arrives for a policy this node does not hold (the IP
    just moved) is dropped, never masqueraded to the node IP;
  * a filter chain after NAT counts packets/bytes per egress IP (named
    counters `snat_<ip>`, found by one map lookup), shown by `nft list counters table inet egress`.
Changes are applied as one nft transaction each (atomic).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass

from .routing import MARK_BASE
from .state import NodeDatapathState

TABLE = "egress"
STRAY_MARK = MARK_BASE | 0xFFFFF  # never a gateway mark: those end in the gateway IP's low 16 bits
FAMILY = "inet"


def set_suffix(policy: str) -> str:
    # Policy names are DNS labels (no '_'), so this is one-to-one.
    return policy.replace("-", "_")


def counter_name(ip: str) -> str:
    return "snat_" + ip.replace(".", "_")


def collapse(cidrs) -> list[str]:
    return [n.with_prefixlen for n in ipaddress.collapse_addresses(ipaddress.ip_network(c) for c in cidrs)]


def by_prefix_length(cidrs) -> dict[int, frozenset[str]]:
    """CIDRs grouped by prefix length. Not collapsed: precedence depends on each CIDR's own length,
    and CIDRs of one length never overlap, as an interval set requires."""
    out: dict[int, set[str]] = {}
    for c in cidrs:
        net = ipaddress.ip_network(c)
        out.setdefault(net.prefixlen, set()).add(net.with_prefixlen)
    return {length: frozenset(v) for length, v in out.items()}


def dsts_set(policy: str, length: int) -> str:
    return f"dsts_{set_suffix(policy)}_{length}"


@dataclass(frozen=True)
class HeldPolicy:
    name: str
    egress_source_ip: str
    pods: frozenset[str]
    dsts: dict[int, frozenset[str]]  # prefix length -> CIDRs of that length


@dataclass(frozen=True)
class EgressIPCounters:
    packets: int
    bytes: int


class Nat:
    def __init__(self, netns: str | None) -> None:
        self._netns = netns
        self._applied: dict[str, HeldPolicy] | None = None  # None: table not built by us yet
        self._applied_rules: tuple | None = None
        self._applied_incluster: frozenset[str] = frozenset()
        self._applied_podcidrs: frozenset[str] = frozenset()

    def nft(self, script: str, *args: str) -> str:
        argv = (["ip", "netns", "exec", self._netns] if self._netns else []) + ["nft", *args]
        res = subprocess.run(argv, input=script, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"nft {' '.join(args)} failed: {res.stderr.strip()}\n--- script ---\n{script}")
        return res.stdout

    # --- desired state -------------------------------------------------------

    @staticmethod
    def _held(state: NodeDatapathState) -> dict[str, HeldPolicy]:
        return {
            p.name: HeldPolicy(p.name, p.egress_source_ip, frozenset(p.selected_pod_ips),
                               by_prefix_length(p.destination_cidrs))
            for p in state.held_policies()
        }

    @staticmethod
    def _snat_rules(held: dict[str, HeldPolicy]) -> list[tuple[int, str, str]]:
        """(prefix length, policy, egress IP) in evaluation order: longest prefix, then policy name."""
        return sorted(
            ((length, h.name, h.egress_source_ip) for h in held.values() for length in h.dsts),
            key=lambda r: (-r[0], r[1]),
        )

    def _rules(self, uplink: str, held: dict[str, HeldPolicy]) -> tuple:
        return (uplink, tuple(self._snat_rules(held)))

    def _chains(self, uplink: str, held: dict[str, HeldPolicy]) -> list[str]:
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
        for length, name, ip in self._snat_rules(held):
            lines.append(
                f'add rule {t} postrouting oifname "{uplink}" ip saddr @pods_{set_suffix(name)} '
                f'ip daddr @{dsts_set(name, length)} counter snat ip to {ip} comment "policy {name} /{length}"'
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
            old: dict[str, HeldPolicy] = {}
            old_rules = None
            old_incluster: frozenset[str] = frozenset()
            old_podcidrs: frozenset[str] = frozenset()
        else:
            old, old_rules, old_incluster = self._applied, self._applied_rules, self._applied_incluster
            old_podcidrs = self._applied_podcidrs

        lines += _element_diff(t, "incluster", old_incluster, incluster)
        lines += _element_diff(t, "podcidrs", old_podcidrs, podcidrs)
        for name, h in held.items():
            s = set_suffix(name)
            prev = old.get(name)
            if prev is None:
                lines.append(f"add set {t} pods_{s} {{ type ipv4_addr; }}")
            lines += _element_diff(t, f"pods_{s}", prev.pods if prev else frozenset(), h.pods)
            prev_dsts = prev.dsts if prev else {}
            for length, cidrs in h.dsts.items():
                if length not in prev_dsts:
                    lines.append(f"add set {t} {dsts_set(name, length)} {{ type ipv4_addr; flags interval; }}")
                lines += _element_diff(t, dsts_set(name, length), prev_dsts.get(length, frozenset()), cidrs)
        old_ips = {h.egress_source_ip for h in old.values()}
        new_ips = {h.egress_source_ip for h in held.values()}
        for ip in sorted(new_ips - old_ips, key=ipaddress.ip_address):
            lines.append(f"add counter {t} {counter_name(ip)}")
            lines.append(f'add element {t} snat_counters {{ {ip} : "{counter_name(ip)}" }}')
        rules = self._rules(state.uplink, held)
        if rules != old_rules:
            lines += self._chains(state.uplink, held)
        for name, prev in sorted(old.items()):
            gone = set(prev.dsts) - set(held[name].dsts if name in held else ())
            lines += [f"delete set {t} {dsts_set(name, length)}" for length in sorted(gone)]
            if name not in held:
                lines.append(f"delete set {t} pods_{set_suffix(name)}")
        for ip in sorted(old_ips - new_ips, key=ipaddress.ip_address):
            lines.append(f"delete element {t} snat_counters {{ {ip} }}")
            lines.append(f"delete counter {t} {counter_name(ip)}")
        if lines:
            self.nft("\n".join(lines) + "\n", "-f", "-")
        self._applied, self._applied_rules, self._applied_incluster = held, rules, incluster
        self._applied_podcidrs = podcidrs

    def cleanup(self) -> None:
        self.nft(f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n", "-f", "-")
        self._applied = None
        self._applied_rules = None
        self._applied_incluster = frozenset()

    def counters(self) -> dict[str, EgressIPCounters]:
        """Packets/bytes that left translated, per egress IP held here."""
        out = self.nft("", "-j", "list", "counters", "table", FAMILY, TABLE)
        result = {}
        for obj in json.loads(out)["nftables"]:
            c = obj.get("counter")
            if c and c["name"].startswith("snat_"):
                ip = c["name"][len("snat_") :].replace("_", ".")
                result[ip] = EgressIPCounters(packets=c["packets"], bytes=c["bytes"])
        return result


def _element_diff(table: str, set_name: str, old: frozenset[str], new: frozenset[str]) -> list[str]:
    lines = []
    removed = sorted(old - new)
    added = sorted(new - old)
    # Delete first: an interval set rejects an overlapping element still present.
    if removed:
        lines.append(f"delete element {table} {set_name} {{ {', '.join(removed)} }}")
    if added:
        lines.append(f"add element {table} {set_name} {{ {', '.join(added)} }}")
    return lines
