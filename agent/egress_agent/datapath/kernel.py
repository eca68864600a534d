"""`Datapath`: programs one node's kernel to a `NodeDatapathState`, and removes it all again.

Everything is done inside one network namespace: the current one (the agent
runs in its node), or a named one (tests and the lab program nodes from outside).
`apply` is idempotent and incremental: it diffs against what it wrote before
and changes only maps, set elements and the few rules that must change.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Iterable, Optional

from .conntrack import Conntrack, SnatUsage
from .floating_ip import Announcements, FloatingIPs
from .nat import EgressIPCounters, Nat
from .netlink import iproute
from .routing import Routing
from .state import NodeDatapathState
from .steering import PolicyCounters, Steering


@dataclass(frozen=True)
class DatapathCounters:
    steered: dict[str, PolicyCounters]  # policy -> packets/bytes classified on this node (eBPF)
    translated: dict[str, EgressIPCounters]  # egress IP -> packets/bytes SNATed on this node (nftables)


class Datapath:
    def __init__(self, netns: str | None = None, max_pods: int | None = None, max_dsts: int | None = None,
                 announcements: Announcements = Announcements()) -> None:
        self._netns = netns
        self._ipr = iproute(netns)
        self._routing = Routing(self._ipr)
        self._nat = Nat(netns)
        self._fips = FloatingIPs(self._ipr, netns, announcements)
        self._conntrack = Conntrack(netns)
        self._steering: Steering | None = None
        self._sizes = {k: v for k, v in (("max_pods", max_pods), ("max_dsts", max_dsts)) if v}
        self._last: NodeDatapathState | None = None

    @property
    def steering(self) -> Steering:
        if self._steering is None:
            self._steering = Steering(self._ipr, **self._sizes)  # compile + load once (bcc, ~1-2 s)
        return self._steering

    @property
    def garp_repeats_sent(self) -> int:
        return self._fips.announcer.sent

    def steered_veths(self) -> dict[str, int]:
        """veth -> ifindex of every pod interface with our steering filter (as attached)."""
        return self._steering.attached() if self._steering is not None else {}

    def reattach_missing(self, veths: Optional[Iterable[str]] = None) -> list[str]:
        """Pod veths whose steering filter had been removed and is attached again (see Steering)."""
        return self._steering.reattach_missing(veths) if self._steering is not None else []

    def _sysctl(self, settings: dict[str, int]) -> None:
        argv = (["ip", "netns", "exec", self._netns] if self._netns else []) + ["sysctl", "-qw"]
        subprocess.run(argv + [f"{k}={v}" for k, v in settings.items()], check=True, capture_output=True)

    def apply(self, state: NodeDatapathState) -> None:
        if state == self._last:
            return
        if self._last is None or self._last.uplink != state.uplink:
            # A gateway forwards steered packets back out of the interface they
            # came in on; an ICMP redirect would only confuse the pod.
            self._sysctl({"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.send_redirects": 0,
                          f"net.ipv4.conf.{state.uplink}.send_redirects": 0})
        gateways = _remote_gateways(state)
        last = self._last
        # Policy routes and floating IPs are read back from the kernel (netlink dumps, 2-25 ms each on a busy
        # node) only when what they follow changed: a pass for a new pod, the common one, needs neither.
        routes_change = last is None or last.uplink != state.uplink or _remote_gateways(last) != gateways
        fips_change = last is None or (last.uplink, last.node_ip, last.held_floating_ips) != (
            state.uplink, state.node_ip, state.held_floating_ips)
        # Add routes first (the old ones kept), move steering, then prune: no packet ever carries a mark
        # without a route.
        marks = self._routing.apply(state.uplink, gateways | set(self._routing.marks)) if routes_change \
            else self._routing.marks
        self._nat.apply(state)  # SNAT is ready before the floating IP is announced
        if fips_change:
            self._fips.apply(state.uplink, state.node_ip, set(state.held_floating_ips))
        self.steering.apply(state, marks)
        # A moved flow answers again only once its old conntrack binding is gone: forget before pruning
        # the routes nothing is steered to any more (a failover's last step on the critical path).
        self._forget_moved_flows(last, state)
        if routes_change:
            self._routing.apply(state.uplink, gateways)
        self._last = state

    def _forget_moved_flows(self, old: NodeDatapathState | None, new: NodeDatapathState) -> None:
        """After a gateway move, drop the conntrack bindings made for the old path (see conntrack.py)."""
        if old is None:
            return
        before = {p.name: p for p in old.policies}
        held_before = {p.name for p in old.held_policies()}
        held_now = {p.name for p in new.held_policies()}
        sources: set[str] = set()
        for p in new.policies:
            q = before.get(p.name)
            if q is not None and (q.gateway_node_ip != p.gateway_node_ip or (p.name in held_before) != (p.name in held_now)):
                sources |= set(new.local_pods) & (p.selected_pod_ips | q.selected_pod_ips)
        released = set(old.held_floating_ips) - set(new.held_floating_ips)
        self._conntrack.forget(sources=sources, translated_to=released)

    def counters(self) -> DatapathCounters:
        steered = self._steering.counters() if self._steering else {}
        translated = self._nat.counters() if self._last else {}
        return DatapathCounters(steered=steered, translated=translated)

    def sizes(self) -> dict[str, int]:
        """How much classifier and SNAT state this node holds (entries we wrote)."""
        return {**(self._steering.map_sizes() if self._steering else {}), **self._nat.sizes()}

    def snat_usage(self) -> dict[str, SnatUsage]:
        """Conntrack usage of every floating IP this node holds (one dump of the table)."""
        return self._conntrack.snat_usage(self._last.held_floating_ips if self._last else ())

    def cleanup(self, uplink: str | None = None, node_ip: str | None = None) -> None:
        """Remove everything this datapath installs (also what an earlier agent left behind)."""
        if self._steering is not None:
            self._steering.cleanup()
            self._steering = None
        self._routing.cleanup()
        self._nat.cleanup()
        uplink = uplink or (self._last.uplink if self._last else None)
        node_ip = node_ip or (self._last.node_ip if self._last else None)
        if uplink and node_ip:
            self._fips.cleanup(uplink, node_ip)
        self._last = None

    def close(self) -> None:
        if self._steering is not None:
            self._steering.close()
            self._steering = None
        self._fips.close()
        self._nat.close()
        self._ipr.close()


def _remote_gateways(state: NodeDatapathState) -> set[str]:
    """The other nodes this node's pods are steered to (one policy route each)."""
    me = state.node_address
    return {p.gateway_node_ip for p in state.policies if p.gateway_node_ip and p.gateway_node_ip != me}
