"""Observed state computed from store records: the seed's `status` blocks.

Pure functions, shared by the API server (GetGatewayStatus, GetNode, ListNodes,
DescribePolicy) so every agent answers the same from the same records.
"""

from __future__ import annotations

import ipaddress
from egress_agent.node_info import DOWN, NodeInfo
from egress_agent.store.assignment import AssignmentRecord, held_by, holder_of
from egress_agent.store.base import Record
from egress_api.status import GatewayStatus, NodeStatus

PENDING = "not assigned yet: waiting for the controller"


def node_states(node_records: dict[str, Record], nodes: list[NodeInfo]) -> dict[str, str]:
    """Every known node (registered or reported by the node source) -> Up | Restarting | Down."""
    state = {n.name: n.state for n in nodes}
    return {name: state.get(name, DOWN) for name in sorted(set(node_records) | set(state))}


def gateway_view(
    gateway: Record, assignments: dict[str, Record], node_records: dict[str, Record], nodes: list[NodeInfo]
) -> GatewayStatus:
    ips: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for ip in gateway.value.get("floating_ips", []):
        ips[ip] = holder_of(ip, assignments)
        if not ips[ip]:
            reasons[ip] = AssignmentRecord.of(assignments.get(ip)).reason or PENDING
    return GatewayStatus(gateway.name, node_states(node_records, nodes), ips, reasons)


def node_views(node_records: dict[str, Record], assignments: dict[str, Record], nodes: list[NodeInfo]) -> list[NodeStatus]:
    infos = {n.name: n for n in nodes}
    out = []
    for name, state in node_states(node_records, nodes).items():
        rec = node_records.get(name)
        info = infos.get(name)
        value = rec.value if rec else {}
        held = sorted(held_by(assignments, name), key=ipaddress.ip_address)
        out.append(
            NodeStatus(
                name=name,
                role=value.get("role") or (info.role if info else ""),
                state=state,
                node_ip=value.get("node_ip") or (info.node_ip if info else ""),
                floating_ips=held,
                pod_cidr=value.get("pod_cidr", ""),
                api_address=value.get("api_address", ""),
                labels=dict(value.get("labels") or (info.labels if info else {})),
                service_cidrs=list(value.get("service_cidrs") or ()),
            )
        )
    return out
