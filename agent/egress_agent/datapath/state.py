"""The desired datapath of one node: a plain value the agent computes from the store.

`Datapath.apply(NodeDatapathState)` converges the kernel to it. Nothing here
touches the kernel, so the reconciler that builds it is testable on its own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping, Optional

from egress_api.precedence import DEFAULT_PRIORITY, Net, Rule, resolve_group


@dataclass(frozen=True)
class PolicyPath:
    """One egress NAT policy as the datapath sees it.

    `selected_pod_ips` is cluster-wide: a source node steers its own selected
    pods; the gateway node SNATs traffic from any selected pod.
    `gateway_node_ip` is the node IP (no prefix) of the node holding
    `egress_source_ip`, or None when no node holds it: then matching traffic is
    dropped rather than leaving with a node IP (fail closed).
    """

    name: str
    destination_cidrs: frozenset[str]
    egress_source_ip: str
    gateway_node_ip: Optional[str]
    selected_pod_ips: frozenset[str] = field(default_factory=frozenset)
    excluded_cidrs: frozenset[str] = field(default_factory=frozenset)
    priority: int = DEFAULT_PRIORITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "destination_cidrs", frozenset(self.destination_cidrs))
        object.__setattr__(self, "selected_pod_ips", frozenset(self.selected_pod_ips))
        object.__setattr__(self, "excluded_cidrs", frozenset(self.excluded_cidrs))
        # Built once: every apply looks it up per selection group (hashing its CIDR sets each time cost seconds).
        object.__setattr__(self, "rule", Rule(self.name, self.destination_cidrs, self.excluded_cidrs, self.priority))


@dataclass(frozen=True)
class NodeDatapathState:
    node: str
    uplink: str  # interface on the node network, e.g. eth0
    node_ip: str  # with prefix, e.g. 192.0.2.11/24
    pod_cidr: str
    cluster_pod_cidrs: frozenset[str]
    local_pods: Mapping[str, str]  # pod IP -> host-side veth name
    policies: tuple[PolicyPath, ...] = ()
    held_floating_ips: frozenset[str] = field(default_factory=frozenset)
    service_cidrs: frozenset[str] = field(default_factory=frozenset)  # every node's --service-cidr
    node_subnets: frozenset[str] = field(default_factory=frozenset)  # every node's uplink subnet

    def __post_init__(self) -> None:
        object.__setattr__(self, "cluster_pod_cidrs", frozenset(self.cluster_pod_cidrs))
        object.__setattr__(self, "service_cidrs", frozenset(self.service_cidrs))
        object.__setattr__(self, "node_subnets", frozenset(self.node_subnets))
        object.__setattr__(self, "held_floating_ips", frozenset(self.held_floating_ips))
        object.__setattr__(self, "policies", tuple(sorted(self.policies, key=lambda p: p.name)))
        names = [p.name for p in self.policies]
        if len(names) != len(set(names)):
            raise ValueError("policy names must be unique")
        object.__setattr__(self, "_rules", {p.name: p.rule for p in self.policies})

    @property
    def node_address(self) -> str:
        return str(ipaddress.ip_interface(self.node_ip).ip)

    @property
    def node_subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_interface(self.node_ip).network

    def in_cluster_cidrs(self) -> list[str]:
        """Destinations never steered nor SNATed by any policy: pod CIDRs, service CIDRs, node subnets."""
        nets = {ipaddress.ip_network(c) for c in self.cluster_pod_cidrs | {self.pod_cidr} | self.service_cidrs
                | self.node_subnets}
        nets.add(self.node_subnet)
        return [n.with_prefixlen for n in ipaddress.collapse_addresses(nets)]

    def selection_groups(self, pod_ips) -> dict[str, frozenset[str]]:
        """Pod IP -> names of the policies selecting it, for those of `pod_ips` some policy selects."""
        wanted = set(pod_ips)
        out: dict[str, set[str]] = {}
        for p in self.policies:
            for ip in p.selected_pod_ips & wanted:  # a set intersection walks the smaller side
                out.setdefault(ip, set()).add(p.name)
        return {ip: frozenset(names) for ip, names in out.items()}

    def group_rules(self, group: frozenset[str]) -> frozenset[Rule]:
        return frozenset(self._rules[name] for name in group)

    def group_entries(self, group: frozenset[str]) -> dict[Net, Optional[str]]:
        """The resolved LPM entries of the policies in `group` (egress_api.precedence)."""
        return resolve_group(self.group_rules(group))

    def held_policies(self) -> list[PolicyPath]:
        """Policies whose source IP this node holds: it is their gateway and SNATs for them."""
        return [p for p in self.policies if p.egress_source_ip in self.held_floating_ips]
