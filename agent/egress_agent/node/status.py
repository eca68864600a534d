"""The per-node `datapath` record, and what the API derives from it.

Each node running the kernel datapath keeps one record, `datapath/<node>`: a
`node.record.DatapathRecord` (the revision its kernel reflects, the pods it could not
program, its last error, its eBPF and SNAT counters).

A node without the record runs no datapath (`--datapath off`): nothing waits for it.

- `ProgrammedWaiter.wait` is "UpsertPod returns once the pod's node has
  programmed it": it blocks until the pod's node reports a revision at least
  the pod write's, and fails clearly when the node does not within the timeout
  or reports the pod as pending.
- `ClusterCounters` answers DescribePolicy's counters for the whole cluster:
  the sum of every node's published counters (this node's read live), from
  the records the waiter already keeps in memory: no store read per call.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Callable, Optional

from egress_agent.store import base
from egress_agent.node.record import DatapathRecord
from egress_agent.store.base import DATAPATH, Put

DEFAULT_WAIT = 10.0


class PodNotProgrammed(Exception):
    """The pod's node did not program it: `timed_out` (node silent) or the node reported why."""

    def __init__(self, message: str, timed_out: bool):
        super().__init__(message)
        self.timed_out = timed_out


def publish(store: base.Store, node: str, record: DatapathRecord) -> int:
    return store.commit([Put(DATAPATH, node, record.to_value())])


def forget(store: base.Store, node: str) -> None:
    """Remove the node's record (it runs no datapath now): nobody waits for it any more."""
    if store.get(DATAPATH, node) is not None:
        store.commit([base.Delete(DATAPATH, node)])


class ProgrammedWaiter:
    """Keeps every node's datapath record in memory (one watch) and lets API calls wait on them."""

    def __init__(self, store: base.Store, timeout: float = DEFAULT_WAIT):
        self.store = store
        self.timeout = timeout
        self._records: dict[str, DatapathRecord] = {}
        self._cond = threading.Condition()
        self._cancel: Optional[Callable[[], None]] = None

    def start(self) -> None:
        snap = self.store.snapshot([DATAPATH])
        with self._cond:
            for n, r in snap.of(DATAPATH).items():
                self._merge(n, DatapathRecord.from_value(r.value))
        self._cancel = self.store.watch([DATAPATH], self._on_change, start_revision=snap.revision)

    def stop(self) -> None:
        if self._cancel:
            self._cancel()

    def records(self) -> dict[str, DatapathRecord]:
        """Every node's datapath record, as last seen by the watch."""
        with self._cond:
            return dict(self._records)

    def observe_local(self, node: str, revision: int, pending: dict[str, str]) -> None:
        """This agent's own node has applied `revision` (`pending`: pods it cannot program): its waiters need not
        wait for the record's round trip through the store (a commit, then the watch), which was most of the
        time a CNI ADD spent waiting. The record's counters stay as last published."""
        with self._cond:
            held = self._records.get(node, DatapathRecord())
            self._merge(node, replace(held, applied_revision=revision, pending=dict(pending), error=""))
            self._cond.notify_all()

    def _on_change(self, rev: int, changes) -> None:
        with self._cond:
            for c in changes:
                if c.deleted:
                    self._records.pop(c.record.name, None)
                else:
                    self._merge(c.record.name, DatapathRecord.from_value(c.record.value))
            self._cond.notify_all()

    def _merge(self, node: str, record: DatapathRecord) -> None:
        """Keep the newer of two records of `node`: the watch may deliver what observe_local has already seen."""
        held = self._records.get(node)
        if held is None or record.applied_revision >= held.applied_revision:
            self._records[node] = record

    def wait(self, node: str, pod_key: str, revision: int, timeout: Optional[float] = None) -> None:
        """Return once `node` has applied `revision` with `pod_key` programmed; raise PodNotProgrammed otherwise."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                rec = self._records.get(node)
                if rec is None:
                    return  # that node runs no datapath: nothing to wait for
                applied = rec.applied_revision
                if applied >= revision:
                    why = rec.pending.get(pod_key)
                    if why:
                        raise PodNotProgrammed(f"node {node} cannot program pod {pod_key}: {why}", timed_out=False)
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    detail = f"; its last error: {rec.error}" if rec.error else ""
                    raise PodNotProgrammed(
                        f"node {node} has not programmed pod {pod_key} within {timeout:g}s "
                        f"(it has applied store revision {applied}, the pod was written at {revision}){detail}: "
                        f"is the egress-agent on {node} running?",
                        timed_out=True,
                    )
                self._cond.wait(left)


Counters = dict[str, int]


class ClusterCounters:
    """DescribePolicy counters for the whole cluster: every node's published counters, summed.

    `local()` returns this node's live counters in the record's shape
    ({"steered": ..., "translated": ...}); they replace this node's published ones.
    """

    def __init__(self, records: Callable[[], dict[str, DatapathRecord]], node: str,
                 local: Optional[Callable[[], dict]] = None):
        self.records = records  # node -> published datapath record (ProgrammedWaiter.records)
        self.node = node
        self.local = local

    def __call__(self, policy: str, egress_source_ip: str) -> Counters:
        ip = egress_source_ip
        per_node = self.records()
        if self.local is not None:
            try:
                per_node[self.node] = DatapathRecord.from_value(self.local())
            except Exception:
                pass  # the published copy is a fine fallback
        out = {"steered_packets": 0, "steered_bytes": 0, "translated_packets": 0, "translated_bytes": 0}
        for value in per_node.values():
            s = value.steered.get(policy)
            if s:
                out["steered_packets"] += int(s[0])
                out["steered_bytes"] += int(s[1])
            t = value.translated.get(ip)
            if t:
                out["translated_packets"] += int(t[0])
                out["translated_bytes"] += int(t[1])
        return out
