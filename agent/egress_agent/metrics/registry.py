"""One agent's metrics, assembled on its own CollectorRegistry; the composition root wires the parts in."""

from __future__ import annotations

from typing import Callable, Optional

from prometheus_client import CollectorRegistry, ProcessCollector

from egress_agent.metrics.api import ApiMetrics
from egress_agent.metrics.cluster import ClusterMetrics, FailureDetector, Leadership
from egress_agent.metrics.datapath import (ApplyMetrics, DatapathRepairs, LocalCounters, PacketCounters, RepairSource,
                                           SnatPortUsage, SnatUsageSource)
from egress_agent.metrics.holders import FloatingIPHolders
from egress_agent.metrics.store import StoreHealth, time_commits
from egress_agent.store import base


class AgentMetrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self.api = ApiMetrics(self.registry)
        self.cluster = ClusterMetrics(self.registry)
        self.apply = ApplyMetrics(self.registry)

    def watch_store(self, store: base.Store) -> None:
        """Store health, commit latency and floating IP holders (from the assignment records)."""
        self.registry.register(StoreHealth(store))
        self.registry.register(FloatingIPHolders(store))
        time_commits(store, self.registry)

    def watch_leadership(self, is_leader: Callable[[], bool]) -> None:
        self.registry.register(Leadership(is_leader))

    def watch_detector(self, detector) -> None:
        """A cluster's UDP failure detector (egress_agent.cluster.detector.Detector)."""
        FailureDetector(detector, self.registry)

    def watch_datapath(self, local: Optional[LocalCounters], snat: Optional[SnatUsageSource],
                       repairs: Optional[RepairSource] = None) -> None:
        """This node's packet counters, SNAT usage and repairs (None: no datapath here; the families are
        exported empty or at 0)."""
        self.registry.register(PacketCounters(local))
        self.registry.register(SnatPortUsage(snat))
        self.registry.register(DatapathRepairs(repairs))
