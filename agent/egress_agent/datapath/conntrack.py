"""Forget connection-tracking NAT bindings that a gateway move made wrong.

NAT rules run once per connection; conntrack replays the first decision for
every later packet. When a policy's gateway changes, a flow that is already
tracked keeps its old binding: e.g. on a source node that becomes the
gateway, the flow's "keep the pod source" binding (it used to be steered)
would send it out un-NATed; on a node that stops holding an IP, flows keep
being translated to an IP it no longer has. Deleting those entries makes the
next packet a new connection to conntrack (TCP is picked up mid-stream), so
it gets the new treatment and established connections survive the move.
"""

from __future__ import annotations

import subprocess
from typing import Iterable


class Conntrack:
    def __init__(self, netns: str | None) -> None:
        self._netns = netns

    def _delete(self, *args: str) -> None:
        argv = (["ip", "netns", "exec", self._netns] if self._netns else []) + ["conntrack", "-D", *args]
        # Exit status 1 with "0 flow entries" is the common case: nothing to forget.
        subprocess.run(argv, capture_output=True, timeout=10)

    def forget_sources(self, ips: Iterable[str]) -> None:
        """Entries of connections from these (pod) addresses."""
        for ip in sorted(set(ips)):
            self._delete("-f", "ipv4", "--orig-src", ip)

    def forget_translated_to(self, ips: Iterable[str]) -> None:
        """Entries of connections SNATed to these (egress) addresses."""
        for ip in sorted(set(ips)):
            self._delete("-f", "ipv4", "--reply-dst", ip, "--src-nat")
