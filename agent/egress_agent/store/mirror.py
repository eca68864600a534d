"""A store's records of some kinds, kept in memory by one watch: reads without a store round trip.

Primed with one snapshot, then every watched commit is applied in order. The stores' watches re-list
after a compaction or an outage and deliver the difference, so a mirror converges to the store.

`snapshot()` is what a store read would have returned at the newest revision the watch delivered,
without asking the store. That matters three times: a node's reconcile pass no longer reads every pod
and policy from etcd (at 10,000 pods that read was most of a pass); the controller's pass after a node
dies no longer reads every assignment and event (`controller.reconcile`); and while the store is
unreachable a reader keeps what it last knew instead of failing (fail static).
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Sequence

from egress_agent.store import base
from egress_agent.store.base import Change, Record, Snapshot, WatchCallback


class Mirror:
    def __init__(self, store: base.Store, kinds: Sequence[str], on_change: Optional[WatchCallback] = None):
        self.store = store
        self.kinds = tuple(kinds)
        self.on_change = on_change  # called after the mirror has applied each delivered commit
        self._lock = threading.Condition()
        self._records: dict[str, dict[str, Record]] = {k: {} for k in self.kinds}
        self._revision = 0
        self._cancel: Optional[Callable[[], None]] = None

    def snapshot(self) -> Snapshot:
        """The mirrored records at the newest revision seen; the first call reads the store
        (base.Unavailable propagates until that read succeeds)."""
        if self._cancel is None:
            self._prime()
        with self._lock:
            return Snapshot(self._revision, {k: dict(v) for k, v in self._records.items()})

    def wait_for(self, revision: int, timeout: float) -> bool:
        """Wait until the mirror has applied `revision` (e.g. the reader's own commit); False on timeout.
        Returns at once when the mirror has not been primed yet: its first snapshot reads the store."""
        with self._lock:
            return self._cancel is None or self._lock.wait_for(lambda: self._revision >= revision, timeout)

    def stop(self) -> None:
        cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()

    def _prime(self) -> None:
        snap = self.store.snapshot(self.kinds)
        with self._lock:
            self._records = {k: dict(snap.of(k)) for k in self.kinds}
            self._revision = snap.revision
        self._cancel = self.store.watch(self.kinds, self._apply, start_revision=snap.revision)

    def _apply(self, revision: int, changes: Sequence[Change]) -> None:
        with self._lock:
            for c in changes:
                recs = self._records.setdefault(c.record.kind, {})
                if c.deleted:
                    recs.pop(c.record.name, None)
                else:
                    recs[c.record.name] = c.record
            self._revision = max(self._revision, revision)
            self._lock.notify_all()
        if self.on_change is not None:
            self.on_change(revision, changes)
