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
"""

from __future__ import annotations

import errno
from typing import Iterable

from pyroute2.conntrack import Conntrack as _NetlinkConntrack
from pyroute2.netlink.exceptions import NetlinkError

from .netlink import open_in

IPS_SRC_NAT = 1 << 4  # linux/netfilter/nf_conntrack_common.h


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
