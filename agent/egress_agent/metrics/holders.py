"""Floating IP -> holder, computed at scrape time from the store's assignment records.

The assignment records are the cluster's truth (the leader writes them), so
every agent exports the same series; aggregate with `max by (ip, ...)`.
"""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from egress_agent.store import base
from egress_agent.store.assignment import AssignmentRecord
from egress_agent.store.base import ASSIGNMENT

log = logging.getLogger(__name__)


class FloatingIPHolders(Collector):
    def __init__(self, store: base.Store):
        self.store = store

    def describe(self):
        return []  # do not scrape the store when the collector is registered

    def collect(self):
        holder = GaugeMetricFamily(
            "egress_floating_ip_holder", "1 for the node that holds the floating IP (one series per held IP)",
            labels=["ip", "gateway", "node"],
        )
        assigned = GaugeMetricFamily(
            "egress_floating_ip_assigned", "1 when the floating IP has a holder, 0 when no node can take it",
            labels=["ip", "gateway"],
        )
        try:
            records = self.store.snapshot([ASSIGNMENT]).of(ASSIGNMENT)
        except base.StoreError as err:
            # egress_store_healthy says the store is down; an empty family is better than a failed scrape.
            log.debug("floating IP holders not read: %s", err)
            records = {}
        for ip, rec in sorted(records.items()):
            a = AssignmentRecord.of(rec)
            node, gateway = a.node, a.gateway
            assigned.add_metric([ip, gateway], 1 if node else 0)
            if node:
                holder.add_metric([ip, gateway, node], 1)
        yield holder
        yield assigned
