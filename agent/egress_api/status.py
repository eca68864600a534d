"""Observed-state values, shared by the agent (which computes them) and the client (which returns them).

Plain dataclasses with no gRPC import, so the agent's pure status functions
can build them without pulling in the client.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Condition:
    """One aspect of an object's state, as Kubernetes API conventions spell it: a type, a True/False/Unknown
    status, a CamelCase reason, a sentence, and when the status last changed (RFC 3339, "" if not known)."""

    type: str  # Ready | IPAssigned | Programmed
    status: str  # True | False | Unknown
    reason: str
    message: str
    last_transition_time: str = ""


@dataclass(frozen=True)
class GatewayStatus:
    """The seed's AnthosNetworkGateway `status` block."""

    name: str
    nodes: dict[str, str]  # node -> Up | Restarting | Down
    floating_ips: dict[str, str]  # ip -> node, "" when unassigned
    unassigned_reasons: dict[str, str]  # ip -> why no node holds it
    conditions: list[Condition] = field(default_factory=list)  # Ready, IPAssigned, Programmed


@dataclass(frozen=True)
class NodeStatus:
    """The seed's anthosnetworkgatewaynode: one node and the floating IPs it holds."""

    name: str
    role: str
    state: str  # Up | Restarting | Down
    node_ip: str
    floating_ips: list[str]
    pod_cidr: str
    api_address: str
    labels: dict[str, str] = field(default_factory=dict)  # --node-label
    service_cidrs: list[str] = field(default_factory=list)  # --service-cidr
