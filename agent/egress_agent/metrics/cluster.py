"""Floating-IP moves, leader changes, this agent's leadership, and its failure detector's verdicts.

Moves are counted by the leader that commits them (the controller's `on_move`):
sum over agents for the cluster's count. Leader changes are counted by every
agent that sees the elected leader change (the election's `on_leader`): take
the max over agents, not the sum.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from egress_agent.cluster.probe_wire import REASONS as REJECT_REASONS

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


class FailureDetector(Collector):
    """The UDP failure detector (egress_agent.cluster.detector), read at scrape time; and its detection times.

    egress_peer_up{peer}: this agent's verdict on each peer it probes. egress_peer_agent_gone{peer}: the peer's
    node is alive but its agent is not (a crash: its IPs are held, cluster/detector.py). egress_probe_pauses_total: times this
    agent noticed it had itself been paused or starved (and re-observed its peers instead of judging them).
    egress_probe_rejected_total{kind,reason}: probe datagrams ignored (forged, replayed, stale, ...).
    """

    # Detection is interval x misses (200 ms by default) plus up to one interval.
    BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 5.0)

    def __init__(self, detector, registry: CollectorRegistry):
        self.detector = detector
        self.detection = Histogram(
            "egress_peer_down_detection_seconds",
            "Silence of a peer when this agent declared it Down (the failure detector's detection time)",
            buckets=self.BUCKETS, registry=registry,
        )
        detector.on_detected = self.detection.observe
        registry.register(self)

    def describe(self):
        return []

    def collect(self):
        up = GaugeMetricFamily("egress_peer_up", "1 while this agent's probes say the peer is Up, 0 when Down",
                               labels=["peer"])
        for peer, is_up in sorted(self.detector.states().items()):
            up.add_metric([peer], 1 if is_up else 0)
        gone = GaugeMetricFamily(
            "egress_peer_agent_gone",
            "1 while the peer's node is alive but its agent is not (its kernel refuses the probes): the leader holds "
            "its floating IPs for up to --restart-window", labels=["peer"])
        for peer, held in sorted(self.detector.held_states().items()):
            gone.add_metric([peer], 1 if held else 0)
        pauses = CounterMetricFamily(
            "egress_probe_pauses", "Times this agent noticed it had been paused or starved and re-observed its peers")
        pauses.add_metric([], self.detector.pauses)
        rejected = CounterMetricFamily(
            "egress_probe_rejected",
            "Probe datagrams this agent ignored and did not answer, by kind (probe, answer, unknown) and why",
            labels=["kind", "reason"])
        counts = self.detector.rejected_counts()
        for kind in ("probe", "answer"):
            for reason in REJECT_REASONS:
                rejected.add_metric([kind, reason], counts.pop((kind, reason), 0))
        for (kind, reason), n in sorted(counts.items()):  # e.g. ("unknown", "malformed")
            rejected.add_metric([kind, reason], n)
        yield up
        yield gone
        yield pauses
        yield rejected
