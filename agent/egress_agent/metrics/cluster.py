"""Floating-IP moves, leader changes and this agent's leadership.

Moves are counted by the leader that commits them (the controller's `on_move`):
sum over agents for the cluster's count. Leader changes are counted by every
agent that sees the elected leader change (the election's `on_leader`): take
the max over agents, not the sum.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: Why a floating IP left its node (egress_agent.controller.reconcile.move_reason).
MOVE_REASONS = ("node_down", "node_left", "ineligible")


class ClusterMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.moves = Counter(
            "egress_floating_ip_moves", "Floating IPs moved from one node to another, by why the old holder lost it",
            ["reason"], registry=registry,
        )
        for reason in MOVE_REASONS:
            self.moves.labels(reason)  # every reason has a series from the start, so rate() sees the first move
        self.leader_changes = Counter(
            "egress_leader_changes", "Times this agent saw the elected controller leader change", registry=registry,
        )

    def on_move(self, ip: str, reason: str) -> None:
        self.moves.labels(reason).inc()

    def on_leader(self, leader: str) -> None:
        self.leader_changes.inc()


class Leadership(Collector):
    """egress_leader: 1 while this agent is the controller leader (always 1 standalone)."""

    def __init__(self, is_leader: Callable[[], bool]):
        self.is_leader = is_leader

    def describe(self):
        return []

    def collect(self):
        g = GaugeMetricFamily("egress_leader", "1 while this agent is the controller leader, else 0")
        g.add_metric([], 1 if self.is_leader() else 0)
        yield g
