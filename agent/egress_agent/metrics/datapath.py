"""This node's datapath: packet counters and SNAT connection usage read at scrape time, and how long
applying the kernel state takes.

The counters are the ones DescribePolicy sums over the cluster (`node.status`),
but only this node's, read live from the kernel: Prometheus scrapes every agent
and sums itself, so exporting cluster sums would count every packet once per agent.
SNAT counts per egress IP (one nftables rule per IP, possibly shared by policies),
so translated traffic is labelled by `egress_ip`, not by policy.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

#: () -> {"steered": {policy: [packets, bytes, dropped]}, "translated": {egress IP: [packets, bytes]}}
LocalCounters = Callable[[], dict]

#: () -> {egress IP: datapath.conntrack.SnatUsage} for the floating IPs this node holds
SnatUsageSource = Callable[[], dict]

#: () -> {"classifier_reattached": n, "garp_repeats": n}: what the node did to keep its datapath right
RepairSource = Callable[[], dict]

# An apply is a few netlink/nft/bpf-map calls (milliseconds) up to a full rebuild under load.
APPLY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PacketCounters(Collector):
    def __init__(self, local: Optional[LocalCounters]):
        self.local = local  # None: this agent runs no datapath (the families stay empty)

    def describe(self):
        return []

    def collect(self):
        steered_packets = CounterMetricFamily(
            "egress_policy_steered_packets", "Packets of the policy's pods steered to its gateway by this node",
            labels=["policy"])
        steered_bytes = CounterMetricFamily(
            "egress_policy_steered_bytes", "Bytes of the policy's pods steered to its gateway by this node",
            labels=["policy"])
        dropped = CounterMetricFamily(
            "egress_policy_dropped_packets", "Packets of the policy's pods dropped by this node (no usable gateway)",
            labels=["policy"])
        translated_packets = CounterMetricFamily(
            "egress_snat_translated_packets", "Packets this node translated to the egress IP", labels=["egress_ip"])
        translated_bytes = CounterMetricFamily(
            "egress_snat_translated_bytes", "Bytes this node translated to the egress IP", labels=["egress_ip"])
        counters = {}
        if self.local is not None:
            try:
                counters = self.local()
            except Exception as err:  # the kernel maps may be mid-rebuild; the next scrape reads them
                log.debug("datapath counters not read: %s", err)
        for policy, (packets, nbytes, drops) in sorted(counters.get("steered", {}).items()):
            steered_packets.add_metric([policy], packets)
            steered_bytes.add_metric([policy], nbytes)
            dropped.add_metric([policy], drops)
        for ip, (packets, nbytes) in sorted(counters.get("translated", {}).items()):
            translated_packets.add_metric([ip], packets)
            translated_bytes.add_metric([ip], nbytes)
        yield from (steered_packets, steered_bytes, dropped, translated_packets, translated_bytes)


class DatapathRepairs(Collector):
    """Classifiers found removed and attached again, and gratuitous ARPs repeated after takeovers."""

    def __init__(self, source: Optional[RepairSource]):
        self.source = source

    def describe(self):
        return []

    def collect(self):
        counts = self.source() if self.source is not None else {}
        reattached = CounterMetricFamily(
            "egress_datapath_classifier_reattached",
            "Pod veths whose steering classifier had been removed by someone else and was attached again")
        reattached.add_metric([], counts.get("classifier_reattached", 0))
        repeats = CounterMetricFamily(
            "egress_garp_repeats_sent", "Gratuitous ARP announcements repeated after a takeover (beyond the first)")
        repeats.add_metric([], counts.get("garp_repeats", 0))
        yield from (reattached, repeats)


class SnatPortUsage(Collector):
    """Connections per held floating IP, and the share of source ports its busiest destination uses.

    The early warning for SNAT port exhaustion: new connections to a destination
    fail once every source port of the egress IP is taken for it. One conntrack
    dump per scrape (the cost grows with the node's conntrack table).
    """

    def __init__(self, source: Optional[SnatUsageSource]):
        self.source = source

    def describe(self):
        return []

    def collect(self):
        from egress_agent.datapath.conntrack import SNAT_PORTS  # pyroute2: only where a datapath runs

        connections = GaugeMetricFamily(
            "egress_snat_connections", "Tracked connections this node translates to the egress IP it holds",
            labels=["egress_ip"])
        ports = GaugeMetricFamily(
            "egress_snat_port_usage_ratio",
            "Share of the egress IP's source ports (1024-65535) in use towards its busiest destination "
            "(protocol, address, port); at 1 new connections there fail",
            labels=["egress_ip"])
        usage = {}
        if self.source is not None:
            try:
                usage = self.source()
            except Exception as err:
                log.debug("conntrack not read: %s", err)
        for ip, u in sorted(usage.items()):
            connections.add_metric([ip], u.connections)
            ports.add_metric([ip], u.busiest_destination / SNAT_PORTS)
        yield connections
        yield ports


class ApplyMetrics:
    """`observe(seconds, ok)` is the reconciler's `on_apply` callback."""

    def __init__(self, registry: CollectorRegistry):
        self.duration = Histogram(
            "egress_datapath_apply_duration_seconds",
            "Time to apply the desired state to this node's kernel (eBPF maps, nftables, routes, floating IPs)",
            ["result"], buckets=APPLY_BUCKETS, registry=registry,
        )
        for result in ("ok", "error"):
            self.duration.labels(result)  # both series exist from the start: rate() of a missing series is empty

    def observe(self, seconds: float, ok: bool) -> None:
        self.duration.labels("ok" if ok else "error").observe(seconds)
