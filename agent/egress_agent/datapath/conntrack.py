"""Forget connection-tracking NAT bindings that a gateway move made wrong.

NAT rules run once per connection; conntrack replays the first decision for
every later packet. When a policy's gateway changes, a flow that is already
tracked keeps its old binding: e.g. on a source node that becomes the
gateway, the flow's "keep the pod source" binding (it used to be steered)
would send it out un-NATed; on a node that stops holding an IP, flows keep
being translated to an IP it no longer has. Deleting those entries makes the
next packet a new connection to conntrack (TCP is picked up mid-stream), so
it gets the new treatment and established connections survive the move.

One netlink dump (pyroute2) serves every address of a move, however many
pods it touches, instead of one `conntrack -D` process per address.

`snat_usage` reads the same table for metrics: connections translated to each
egress IP, and how close the busiest destination is to running out of source
ports (an SNAT connection is unique by egress IP, source port and destination
address, port and protocol, so it is per destination that the ports run out).
"""

from __future__ import annotations

import errno
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from pyroute2.conntrack import Conntrack as _NetlinkConntrack
from pyroute2.netlink.exceptions import NetlinkError

from .netlink import open_in

IPS_SRC_NAT = 1 << 4  # linux/netfilter/nf_conntrack_common.h
#: Source ports SNAT picks from for an unprivileged source port (1024-65535): what the busiest destination shares.
SNAT_PORTS = 65536 - 1024


@dataclass(frozen=True)
class SnatUsage:
    connections: int  # tracked connections translated to the egress IP
    busiest_destination: int  # of them, to the single (protocol, address, port) with the most


class Conntrack:
    def __init__(self, netns: str | None) -> None:
        self._netns = netns

    def forget(self, sources: Iterable[str] = (), translated_to: Iterable[str] = ()) -> int:
        """Delete entries of connections from `sources` (pod addresses) or SNATed to
        `translated_to` (egress addresses this node released). Returns how many."""
        sources, translated_to = set(sources), set(translated_to)
        if not sources and not translated_to:
            return 0
        ct = open_in(self._netns, _NetlinkConntrack)
        deleted = 0
        try:
            for entry in list(ct.dump_entries()):
                from_pod = entry.tuple_orig.saddr in sources
                to_released = entry.status & IPS_SRC_NAT and entry.tuple_reply.daddr in translated_to
                if not (from_pod or to_released):
                    continue
                try:
                    ct.delete(entry)
                    deleted += 1
                except NetlinkError as err:
                    if err.code != errno.ENOENT:  # it expired between the dump and the delete
                        raise
        finally:
            ct.close()
        return deleted

    def snat_usage(self, egress_ips: Iterable[str]) -> dict[str, SnatUsage]:
        """Per egress IP (translated to on this node): its connections, and those of its busiest destination."""
        wanted = set(egress_ips)
        if not wanted:
            return {}
        per_destination: dict[str, Counter] = {ip: Counter() for ip in wanted}
        ct = open_in(self._netns, _NetlinkConntrack)
        try:
            for entry in ct.dump_entries():
                ip = entry.tuple_reply.daddr
                if entry.status & IPS_SRC_NAT and ip in wanted:
                    orig = entry.tuple_orig
                    per_destination[ip][(orig.proto, orig.daddr, orig.dport)] += 1
        finally:
            ct.close()
        return {ip: SnatUsage(sum(c.values()), max(c.values(), default=0)) for ip, c in per_destination.items()}
