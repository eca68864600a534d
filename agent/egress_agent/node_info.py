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
#: Its agent stopped for a restart and said so (cluster/restart.py): it keeps the floating IPs it holds, its
#: kernel still forwards for them, and it is given no new ones until it is Up again or its window runs out.
RESTARTING = "Restarting"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    role: str  # "worker" | "master"
    node_ip: str  # uplink address with prefix, e.g. "192.0.2.11/24"
    up: bool = True
    routers: tuple[str, ...] = ()  # gateways of its uplink routes: never floating IPs (models.reserved_addresses)
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)  # --node-label: what node_selector matches
    restarting: bool = False  # not Up, but its agent is restarting within its window: it keeps what it holds

    @property
    def state(self) -> str:
        return UP if self.up else RESTARTING if self.restarting else DOWN

    @property
    def keeps_holdings(self) -> bool:
        """Whether the floating IPs it holds stay with it (it may not be given new ones: `can_hold`)."""
        return self.up or self.restarting

    @cached_property
    def network(self) -> ipaddress.IPv4Network:
        # Parsed once per NodeInfo: assign() asks every node about every floating IP.
        return ipaddress.ip_interface(self.node_ip).network

    def can_hold(self, ip: ipaddress.IPv4Address) -> bool:
        """Whether it may be given `ip` now."""
        return self.up and ip in self.network

    @classmethod
    def of_state(cls, state: str, **fields) -> "NodeInfo":
        """From a published state string (Up | Restarting | Down)."""
        return cls(up=state == UP, restarting=state == RESTARTING, **fields)
