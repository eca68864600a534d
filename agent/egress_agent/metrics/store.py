"""The store: health read at scrape time, and commit latency."""

from __future__ import annotations

import functools
import time

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from egress_agent.store import base

# SQLite commits take about a millisecond; etcd ones a round trip plus an fsync on its leader.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class StoreHealth(Collector):
    def __init__(self, store: base.Store):
        self.store = store

    def describe(self):
        return []

    def collect(self):
        ok, _ = self.store.healthy()
        g = GaugeMetricFamily("egress_store_healthy", "1 when the store (SQLite file or etcd) answers, else 0")
        g.add_metric([], 1 if ok else 0)
        yield g


def time_commits(store: base.Store, registry: CollectorRegistry) -> None:
    """Observe every `store.commit` of this agent in egress_store_commit_duration_seconds{result}.

    Wraps the one store instance the agent opened rather than subclassing each
    backend: the cluster code needs the backend's own type (an EtcdStore), and
    every part of the agent shares this instance, so all their commits are timed.
    """
    histogram = Histogram(
        "egress_store_commit_duration_seconds", "Time of one atomic store commit made by this agent",
        ["result"], buckets=COMMIT_BUCKETS, registry=registry,
    )
    for result in ("ok", "rejected", "error"):
        histogram.labels(result)
    commit = store.commit

    @functools.wraps(commit)
    def timed(ops):
        start = time.perf_counter()
        result = "error"
        try:
            revision = commit(ops)
            result = "ok"
            return revision
        except (base.Conflict, base.NotFound, base.AlreadyExists):
            result = "rejected"  # a version check failed: the store answered, the write was refused
            raise
        finally:
            histogram.labels(result).observe(time.perf_counter() - start)

    store.commit = timed  # type: ignore[method-assign]
