"""Which floating IPs this node may claim, as events for the datapath.

The datapath subscribes and configures exactly the IPs it is told it holds:
`callback(ip, held, reason)`, "I hold IP X" / "I no longer hold IP X".

An IP is held while the stored assignment names this node, unless the node
is *fenced*: its etcd session has been lost for longer than the lease TTL (so
etcd may have expired its lease and the leader may have given its IPs to
another node) and some evidence says the rest of the cluster can still act:

- a peer that answers our probes renewed its own etcd session *after* we last
  could (by more than one keepalive round: at the start of an outage the
  others' last renewals are that close to ours), or
- we know peers but none answers (we are the one cut off).

When no peer renewed since we last did, etcd itself is down: nobody can
move an IP, so the node keeps its IPs (fail static), as it does when it is
the only node. Before fencing, the node re-observes: it renews its lease once
right now. That keeps it from dropping IPs when etcd has just come back (a
peer renewed first) or when this process was paused and its view is stale;
only a renewal that fails fences.

After a fence the node's copy of the assignments is stale (the watch may
still be catching up with the moves made while it was cut off), so it claims
nothing until it has re-read them at a current revision: a node coming back
never takes back, even for a moment, an IP that moved away meanwhile. Watch
events older than what it holds are ignored for the same reason.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

from egress_agent.cluster.detector import Detector
from egress_agent.cluster.membership import Membership
from egress_agent.store.assignment import AssignmentRecord
from egress_agent.store.base import ASSIGNMENT, Unavailable
from egress_agent.store.etcd import EtcdStore

log = logging.getLogger(__name__)

HeldCallback = Callable[[str, bool, str], None]  # (floating IP, held, reason)

#: How much later than our last renewal a peer's must be to prove etcd worked
#: while we could not reach it: one keepalive round plus request latency.
RENEWAL_SLACK = 0.25


class Fencing:
    def __init__(
        self,
        store: EtcdStore,
        membership: Membership,
        detector: Optional[Detector] = None,
        *,
        check_interval: float = 0.1,
    ):
        self.store = store
        self.membership = membership
        self.detector = detector
        self.node = membership.name
        self.check_interval = check_interval
        self._assigned: dict[str, tuple[str, int]] = {}  # ip -> (node, record version), last known from etcd
        self._stale = False  # fenced since the assignments were last re-read
        self._held: set[str] = set()
        self._subscribers: list[HeldCallback] = []
        self._lock = threading.Lock()
        self._eval_lock = threading.Lock()  # events reach subscribers in decision order
        self._stop = threading.Event()
        self._cancel_watch: Optional[Callable[[], None]] = None
        self._thread: Optional[threading.Thread] = None
        self.fenced_reason = ""

    def subscribe(self, callback: HeldCallback) -> None:
        """Get an event for every change; the IPs held now are replayed first."""
        with self._lock:
            self._subscribers.append(callback)
            current = sorted(self._held)
        for ip in current:
            callback(ip, True, "held")

    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def start(self) -> None:
        since = 0  # watch from the snapshot's revision, so nothing between the two is missed
        try:
            snap = self.store.snapshot([ASSIGNMENT])
            since = snap.revision
            with self._lock:
                self._assigned = {ip: (AssignmentRecord.of(r).node, r.version) for ip, r in snap.of(ASSIGNMENT).items()}
        except Unavailable:
            pass  # the watch re-lists once etcd answers
        self._cancel_watch = self.store.watch([ASSIGNMENT], self.observe, start_revision=since)
        self._thread = threading.Thread(target=self._loop, name="fencing", daemon=True)
        self._thread.start()
        self.evaluate()

    def stop(self) -> None:
        self._stop.set()
        if self._cancel_watch:
            self._cancel_watch()
        if self._thread:
            self._thread.join(timeout=2)

    def observe(self, rev: int, changes) -> None:
        """Assignment changes, from our own watch or from whoever saw them first (the datapath's watch: it
        then applies the new assignment and the IP it grants in one pass). A change seen twice counts once."""
        with self._lock:
            for c in changes:
                held = self._assigned.get(c.record.name)
                if held is not None and held[1] >= c.record.version:
                    continue  # older than what a re-read gave us
                if c.deleted:
                    self._assigned.pop(c.record.name, None)
                else:
                    self._assigned[c.record.name] = (AssignmentRecord.of(c.record).node, c.record.version)
        self.evaluate()

    def _reread(self) -> None:
        """Replace our copy of the assignments with a current read (after a fence)."""
        snap = self.store.snapshot([ASSIGNMENT])
        with self._lock:
            fresh = {ip: (AssignmentRecord.of(r).node, r.version) for ip, r in snap.of(ASSIGNMENT).items()}
            for ip, (node, version) in self._assigned.items():
                if version > snap.revision:  # the watch is already past the read
                    fresh[ip] = (node, version)
            self._assigned = fresh

    def _loop(self) -> None:
        while not self._stop.wait(self.check_interval):
            self.evaluate()

    def fenced(self) -> str:
        """Why this node must not claim IPs now ("" when it may). See the module docstring."""
        lost_for = self.membership.session_age()
        if lost_for <= self.membership.ttl:
            return ""
        peers = self.detector.peers() if self.detector else {}
        reachable = {n: age for n, (ok, age) in peers.items() if ok}
        after_us = lost_for - self.membership.keepalive_interval - RENEWAL_SLACK
        newer = sorted((age, n) for n, age in reachable.items() if age < after_us)
        if newer:
            why = f"etcd session lost for {lost_for:.1f}s while peer {newer[0][1]} renewed its own {newer[0][0]:.1f}s ago"
        elif peers and not reachable:
            why = f"etcd session lost for {lost_for:.1f}s and no peer answers"
        else:
            return ""  # nobody reached etcd since we last did (or we are alone): fail static
        if self.fenced_reason:
            return why  # already fenced: the keepalive loop unfences us once it renews
        if self.membership.renew_now():
            return ""  # our view was stale (etcd is back, or we were paused): the lease is alive
        return why

    def evaluate(self) -> None:
        with self._eval_lock:
            self._evaluate()

    def _evaluate(self) -> None:
        reason = self.fenced()
        if reason:
            self._stale = True
        elif self._stale:
            try:
                self._reread()
                self._stale = False
            except Unavailable as e:
                reason = f"assignments not re-read since the fence ({e})"
        with self._lock:
            if reason:
                want: set[str] = set()
            else:
                want = {ip for ip, (node, _) in self._assigned.items() if node == self.node}
            gained, lost = want - self._held, self._held - want
            self._held = want
            subscribers = list(self._subscribers)
        if bool(reason) != bool(self.fenced_reason):  # log transitions, not every tick of a fence
            if reason:
                log.warning("node %s fenced: %s; releasing its floating IPs", self.node, reason)
            else:
                log.info("node %s no longer fenced", self.node)
            self.fenced_reason = reason
        for ip in sorted(lost):
            log.info("node %s no longer holds %s%s", self.node, ip, f" ({reason})" if reason else "")
            for cb in subscribers:
                cb(ip, False, reason or "assigned to another node")
        for ip in sorted(gained):
            log.info("node %s holds %s", self.node, ip)
            for cb in subscribers:
                cb(ip, True, "assigned to this node")
