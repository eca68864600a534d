"""One node as the cluster sees it: the value the cluster layer decides and the controller assigns from.

It lives below both (`cluster/nodes.py` produces it, `controller/` consumes
it), so neither layer imports the other for it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping

UP = "Up"
DOWN = "Down"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    role: str  # "worker" | "master"
    node_ip: str  # uplink address with prefix, e.g. "192.0.2.11/24"
    up: bool = True
    routers: tuple[str, ...] = ()  # gateways of its uplink routes: never floating IPs (models.reserved_addresses)
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)  # --node-label: what node_selector matches

    @cached_property
    def network(self) -> ipaddress.IPv4Network:
        # Parsed once per NodeInfo: assign() asks every node about every floating IP.
        return ipaddress.ip_interface(self.node_ip).network

    def can_hold(self, ip: ipaddress.IPv4Address) -> bool:
        return self.up and ip in self.network
