"""Where the controller learns which nodes exist and which are Up, and who leads.

Both are pluggable: standalone, the agent is the only node (always Up) and
always the leader; in a cluster, etcd leases decide node liveness and an etcd
election decides the leader (see `egress_agent.cluster`).
"""

from __future__ import annotations

from typing import Callable, Protocol

from egress_api import models
from egress_agent.node_info import NodeInfo

#: Returns the current node view; called on every reconcile, so it must be cheap.
NodeSource = Callable[[], list[NodeInfo]]


def node_info(node: models.Node, up: bool = True) -> NodeInfo:
    return NodeInfo(name=node.name, role=node.role, node_ip=node.node_ip, up=up, routers=tuple(node.routers),
                    labels=dict(node.labels))


class StandaloneNodes:
    """The agent is the sole node, and Up while it runs (a NodeSource). `set` after a relabel."""

    def __init__(self, node: models.Node):
        self.set(node)

    def set(self, node: models.Node) -> None:
        # One assignment: a reader sees the old view or the new one.
        self.node, self._view = node, [node_info(node)]

    def __call__(self) -> list[NodeInfo]:
        return list(self._view)


class Leadership(Protocol):
    def is_leader(self) -> bool:
        """True while this agent may write assignments and events."""

    def leader(self) -> str:
        """Name of the current leader, "" when none (or standalone)."""


class Standalone:
    """The only agent is always the leader; Health reports no elected leader."""

    def is_leader(self) -> bool:
        return True

    def leader(self) -> str:
        return ""
