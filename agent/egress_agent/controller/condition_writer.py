"""The leader remembers when each condition last changed: `condition/<kind>:<name>` records.

Conditions themselves are computed on read (controller/conditions.py); what a
read cannot compute is *when* a status last changed. So the leader follows
the same records (one Mirror) and, at most every `interval` seconds after a
change, writes the records whose statuses changed, with the time it noticed,
behind its election guard. Nothing is written while nothing changes: the
datapath records' counters move every second, but a status only moves when
an IP is assigned or released or a node applies a revision. Records of
deleted policies and gateways are deleted.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from egress_agent.controller import conditions as cond
from egress_agent.controller.nodes import Leadership, NodeSource
from egress_agent.loop import Loop
from egress_agent.node.record import DatapathRecord
from egress_agent.store import base
from egress_agent.store.base import ASSIGNMENT, CONDITION, DATAPATH, GATEWAY, POLICY, Delete, Put
from egress_agent.store.mirror import Mirror

log = logging.getLogger(__name__)

KINDS = (POLICY, GATEWAY, ASSIGNMENT, DATAPATH, CONDITION)


class ConditionWriter:
    def __init__(self, store: base.Store, nodes: NodeSource, leadership: Leadership,
                 guard: Callable[[], list] = lambda: [], clock: Callable[[], float] = time.time,
                 interval: float = 0.5):
        self.store = store
        self.nodes = nodes
        self.leadership = leadership
        self.guard = guard
        self.clock = clock
        self._mirror = Mirror(store, KINDS, on_change=self._on_change)
        self._progress: dict[str, tuple[int, str]] = {}  # node -> (applied revision, error) last seen
        # Also every 5 s without a change: leadership may have come to us without one.
        self._loop = Loop("conditions", self._pass, resync=5.0, min_interval=interval)
        self.writes = 0  # condition records written or deleted (tests)

    def start(self) -> None:
        self._loop.start()

    def _on_change(self, revision: int, changes) -> None:
        """Wake for any change but a node's counters: every node republishes those each second, and
        Programmed only reads a datapath record's applied revision and error."""
        wake = False
        for c in changes:
            if c.record.kind != DATAPATH:
                wake = True
                continue
            progress = None if c.deleted else (int(c.record.value.get("applied_revision", 0)),
                                               str(c.record.value.get("error") or ""))
            if self._progress.get(c.record.name) != progress:
                self._progress[c.record.name] = progress
                wake = True
        if wake:
            self._loop.trigger()

    def trigger(self) -> None:
        """The node view changed (a node Up or Down changes which nodes must have applied)."""
        self._loop.trigger()

    def stop(self) -> None:
        self._loop.stop()
        self._mirror.stop()

    def _pass(self) -> None:
        if self.leadership.is_leader():
            try:
                self.write_once()
            except base.StoreError as err:
                log.info("condition times not written (%s); retrying on the next change", err)

    def write_once(self) -> int:
        """Write the changed condition records; returns how many operations were committed."""
        snap = self._mirror.snapshot()
        up = [n.name for n in self.nodes() if n.up]
        datapaths = {n: DatapathRecord.from_value(r.value) for n, r in snap.of(DATAPATH).items()}
        assignments, stored = snap.of(ASSIGNMENT), snap.of(CONDITION)
        now = self.clock()
        ops: list[base.Op] = []
        live = set()
        for kind, compute in ((POLICY, cond.policy_conditions), (GATEWAY, cond.gateway_conditions)):
            for name, rec in snap.of(kind).items():
                key = cond.record_name(kind, name)
                live.add(key)
                old = stored.get(key)
                value = cond.stored_value(cond.with_times(compute(rec, assignments, datapaths, up), old, now))
                if old is None or old.value != value:
                    ops.append(Put(CONDITION, key, value, old.version if old is not None else 0))
        ops += [Delete(CONDITION, key, rec.version) for key, rec in stored.items() if key not in live]
        for batch in base.batches(ops, self.store.max_commit_ops, self.guard()):
            try:
                self.store.commit(batch)
            except (base.Conflict, base.AlreadyExists, base.NotFound):
                self._loop.trigger()  # raced with a write (a former leader's, or an object just deleted): next pass
                return 0
        self.writes += len(ops)
        return len(ops)
