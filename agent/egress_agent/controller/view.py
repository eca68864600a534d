"""Observed state computed from store records: the seed's `status` blocks.

Pure functions, shared by the API server (GetGatewayStatus, GetNode, ListNodes,
DescribePolicy) so every agent answers the same from the same records.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from egress_agent.controller.assignment import DOWN, UP, NodeInfo
from egress_agent.store.base import Record

PENDING = "not assigned yet: waiting for the controller"


@dataclass(frozen=True)
class GatewayView:
    name: str
    nodes: dict[str, str]
    floating_ips: dict[str, str]
    unassigned_reasons: dict[str, str]


@dataclass(frozen=True)
class NodeView:
    name: str
    role: str
    state: str
    node_ip: str
    floating_ips: list[str]
    pod_cidr: str
    api_address: str


def node_states(node_records: dict[str, Record], nodes: list[NodeInfo]) -> dict[str, str]:
    """Every known node (registered or reported by the node source) -> Up | Down."""
    up = {n.name: n.up for n in nodes}
    return {name: UP if up.get(name, False) else DOWN for name in sorted(set(node_records) | set(up))}


def holder_of(ip: str, assignments: dict[str, Record]) -> str:
    rec = assignments.get(ip)
    return rec.value.get("node", "") if rec else ""


def gateway_view(
    gateway: Record, assignments: dict[str, Record], node_records: dict[str, Record], nodes: list[NodeInfo]
) -> GatewayView:
    ips: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for ip in gateway.value.get("floating_ips", []):
        rec = assignments.get(ip)
        ips[ip] = rec.value.get("node", "") if rec else ""
        if not ips[ip]:
            reasons[ip] = (rec.value.get("reason") if rec else "") or PENDING
    return GatewayView(gateway.name, node_states(node_records, nodes), ips, reasons)


def node_views(node_records: dict[str, Record], assignments: dict[str, Record], nodes: list[NodeInfo]) -> list[NodeView]:
    infos = {n.name: n for n in nodes}
    out = []
    for name, state in node_states(node_records, nodes).items():
        rec = node_records.get(name)
        info = infos.get(name)
        value = rec.value if rec else {}
        held = sorted(
            (ip for ip, a in assignments.items() if a.value.get("node") == name), key=ipaddress.ip_address
        )
        out.append(
            NodeView(
                name=name,
                role=value.get("role") or (info.role if info else ""),
                state=state,
                node_ip=value.get("node_ip") or (info.node_ip if info else ""),
                floating_ips=held,
                pod_cidr=value.get("pod_cidr", ""),
                api_address=value.get("api_address", ""),
            )
        )
    return out
