"""The per-node reconciler: converge this node's kernel to the store, on start and on every change.

One thread. A store watch on everything the desired state depends on (pods,
namespaces, policies, gateways, assignments, nodes) wakes it; it reads one
snapshot, computes `desired.desired_state`, drops local pods whose veth does
not exist yet (reported as pending), applies, and publishes the revision it
applied in its `datapath` record (`status`), which is what UpsertPod waits
for. Bursts of changes coalesce into one pass. A periodic resync notices
veths that appear or are re-created, re-attaches a classifier someone removed
(else that pod would leak with the node's IP), and publishes counters when
they moved.

Floating IPs: with a fencing source (etcd cluster), this node holds exactly
what fencing says; "I no longer hold X" is applied at once from the last
snapshot, without reading the store (it may be the store that is gone).
Without one (one-node store), the assignments naming this node decide.

At start the node adopts the kernel as the last agent left it (a restart,
or a crash: fail static) instead of rebuilding it: the first pass diffs
against what is there, so floating IPs it still holds, SNAT, routes and
steering keep forwarding throughout (the new eBPF maps are filled before the
new program replaces the old one on each veth). Only floating IPs that the
cluster no longer gives this node are released at once, before the first
pass: a node coming back never answers for an IP another node took over
while it was away. With a fencing source that is exactly what fencing says
it holds (read from etcd at start); without one (one-node store) nobody else
can hold them, and the first pass decides.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import replace
from typing import Callable, Optional, Protocol

from egress_agent.datapath.floating_ip import FloatingIPs
from egress_agent.datapath.kernel import Datapath
from egress_agent.datapath.netlink import iproute
from egress_agent.datapath.steering import filter_attached
from egress_agent.datapath.state import NodeDatapathState
from egress_agent.loop import Loop
from egress_agent.node import status
from egress_agent.node.record import DatapathRecord
from egress_agent.node.desired import KINDS, DesiredMemo, desired_state, local_pod_keys
from egress_agent.store import base
from egress_agent.store.assignment import AssignmentRecord
from egress_agent.store.base import ASSIGNMENT, GATEWAY, Snapshot
from egress_agent.store.mirror import Mirror
from egress_api import models

log = logging.getLogger(__name__)

WATCHED = (*KINDS, GATEWAY)


class HeldSource(Protocol):
    """What fencing offers (cluster.fencing.Fencing): events 'I hold / no longer hold IP X'."""

    def subscribe(self, callback: Callable[[str, bool, str], None]) -> None: ...

    def observe(self, revision: int, changes: list) -> None: ...


class NodeReconciler:
    def __init__(
        self,
        store: base.Store,
        node: models.Node,
        uplink: str,
        datapath: Datapath,
        netns: Optional[str] = None,
        resync: float = 2.0,
        counters_interval: float = 1.0,
        on_apply: Optional[Callable[[float, bool], None]] = None,
        on_applied: Optional[Callable[[int, dict], None]] = None,
    ):
        self.store = store
        self.on_apply = on_apply  # (seconds, ok) of every kernel apply (metrics)
        self.on_applied = on_applied  # (revision, pending pods) after each applied pass: ProgrammedWaiter.observe_local
        self.node = node
        self.uplink = uplink
        self.datapath = datapath
        self.netns = netns
        self.resync = resync
        self.reattached = 0  # classifiers found removed and attached again (resync)
        self.counters_interval = counters_interval
        self._ipr = iproute(netns)
        self._apply_lock = threading.Lock()  # the loop and fencing events both apply
        self._memo = DesiredMemo()  # used under _apply_lock only
        self._held: Optional[set[str]] = None  # None: no fencing source, assignments decide
        self._held_source: Optional[HeldSource] = None
        self._snapshot: Optional[Snapshot] = None
        self._last_state: Optional[NodeDatapathState] = None
        self._ifindex: dict[str, int] = {}
        self._seen_revision = 0  # newest revision a watch delivered
        self._published: Optional[DatapathRecord] = None
        self._published_at = 0.0
        # Passes on every watched change and every `resync`; between passes, counters every `counters_interval`.
        self._loop = Loop("datapath", self._pass, resync=resync, tick=self._publish_counters,
                          tick_interval=counters_interval)
        self._stop = threading.Event()  # the classifier checker's
        self._checker: Optional[threading.Thread] = None
        # What the passes read: every watched record, kept by one watch (no store read per pass).
        self._mirror = Mirror(store, WATCHED, on_change=self._on_watch)
        self.passes = 0
        self.last_error = ""

    # --- lifecycle --------------------------------------------------------------------

    def start(self, held: Optional[HeldSource] = None, first_pass_timeout: float = 30.0) -> None:
        """Subscribe to fencing, release the floating IPs this node no longer holds, run a first pass, then
        follow the store."""
        if held is not None:
            self._held = set()
            self._held_source = held
            held.subscribe(self._on_held)
            gone = FloatingIPs(self._ipr, self.netns).release_all_but(self.uplink, self.node.node_ip, self._held)
            if gone:
                log.info("released %s at start: no longer assigned to %s", ", ".join(sorted(gone)), self.node.name)
        deadline = time.monotonic() + first_pass_timeout
        while not self.reconcile_once():
            if time.monotonic() > deadline:
                log.warning("datapath not programmed yet (%s); continuing in the background", self.last_error)
                break
            time.sleep(0.2)
        self._loop.start(now=False)
        self._checker = threading.Thread(target=self._check_classifiers, name="classifier-check", daemon=True)
        self._checker.start()

    def trigger(self) -> None:
        self._loop.trigger()

    def stop(self, release: bool = True) -> None:
        """Stop following the store. `release`: give up floating IPs (and their SNAT); steering stays (fail static)."""
        self._stop.set()
        self._mirror.stop()
        self._loop.stop(timeout=10)
        if self._checker:
            self._checker.join(timeout=10)
        with self._apply_lock:
            if release and self._last_state is not None:
                try:
                    self.datapath.apply(replace(self._last_state, held_floating_ips=frozenset()))
                except Exception:
                    log.exception("releasing floating IPs at shutdown failed")
            self.datapath.close()
        self._ipr.close()

    # --- events -------------------------------------------------------------------------

    def _on_watch(self, revision: int, changes) -> None:
        self._seen_revision = max(self._seen_revision, revision)
        assignments = [c for c in changes if c.record.kind == ASSIGNMENT]
        if assignments and self._held_source is not None:
            # Fencing decides on a new assignment before the pass below reads it, so a takeover is one pass
            # with the IP. Otherwise fencing's own watch, a few ms later, granted it after a first pass had
            # made this node the policy's gateway without the IP (50-85 ms, bench/results/failover-timeline-*).
            self._held_source.observe(revision, assignments)
        self._loop.trigger()

    def _on_held(self, ip: str, held: bool, reason: str) -> None:
        assert self._held is not None
        if held:
            self._held.add(ip)
        else:
            self._held.discard(ip)
        if held and not self._assigned_here(ip):
            # An IP newly assigned to us: the pass triggered below reads its assignment with it.
            self._loop.trigger()
            return
        # Apply from the last snapshot now: no store round trip (the store may be what failed).
        self._apply_from(self._snapshot, why=f"{'holds' if held else 'released'} {ip} ({reason})")
        self._loop.trigger()

    def _assigned_here(self, ip: str) -> bool:
        """The last applied snapshot already assigns `ip` to this node (e.g. fencing lifted after an outage)."""
        if self._snapshot is None:
            return False
        return AssignmentRecord.of(self._snapshot.of(ASSIGNMENT).get(ip)).node == self.node.name

    # --- passes ---------------------------------------------------------------------------

    def _pass(self) -> Optional[float]:
        self.reconcile_once()
        return 0.2 if self.last_error else None  # back off a failing apply a little, then retry

    def _publish_counters(self) -> None:
        """Between resyncs only the counters move: publish them from the last applied state."""
        if self._published is not None and not self.last_error:
            self._publish(self._published_applied(), dict(self._published.pending), force=False)

    def reconcile_once(self) -> bool:
        """Read the store, apply, publish. True when the kernel now reflects the snapshot."""
        try:
            snap = self._mirror.snapshot()
        except base.Unavailable as err:
            self.last_error = f"store unavailable: {err}"
            return False
        pending = self._apply_from(snap, why="store changed")
        if pending is None:
            self._publish(self._published_applied(), {}, force=True)
            return False
        self.passes += 1
        if self.on_applied is not None:
            # The kernel has it now: this agent's waiters (a CNI ADD) need not wait for the counters to be
            # read and the record to go through the store.
            self.on_applied(snap.revision, pending)
        force = self._seen_revision > self._published_applied() or self._published is None
        self._publish(snap.revision, pending, force=force)
        return True

    def _apply_from(self, snap: Optional[Snapshot], why: str) -> Optional[dict[str, str]]:
        """Apply the desired state at `snap`; returns the pods left pending, None when applying failed."""
        if snap is None:
            return {}
        with self._apply_lock:
            held = None if self._held is None else set(self._held)
            try:
                state = desired_state(snap, self.node, self.uplink, held, self._memo)
                links = self._links()
                keys = local_pod_keys(snap, self.node.name)
                missing = {veth for veth in state.local_pods.values() if veth not in links}
                pending = {
                    keys[v]: f"no interface {v} on {self.node.name}: create the pod's veth before upserting it"
                    for v in missing
                }
                state = replace(state, local_pods={ip: v for ip, v in state.local_pods.items() if v not in missing})
                self._timed_apply(state)
                for veth in state.local_pods.values():
                    # A pod re-created under the same name has a new veth: attach to it as well.
                    if self._ifindex.get(veth, links[veth]) != links[veth]:
                        self.datapath.steering.attach(veth, links[veth])
                self._ifindex = {v: links[v] for v in state.local_pods.values()}
            except Exception as err:
                self.last_error = f"applying the datapath failed: {err}"
                log.exception("applying the datapath (%s) failed", why)
                return None
            if state != self._last_state:
                log.debug("datapath applied at revision %d (%s)", snap.revision, why)
            self._snapshot, self._last_state = snap, state
            self.last_error = ""
            return pending

    def _links(self) -> dict[str, int]:
        """Interface name -> index on this node. libc's if_nameindex (C) when the agent runs in the node's own
        namespace: pyroute2 parsing every attribute of every link took 80-150 ms a pass at 250 links."""
        if self.netns is None:
            return {name: index for index, name in socket.if_nameindex()}
        return {link.get("IFLA_IFNAME"): link["index"] for link in self._ipr.get_links()}

    def _check_classifiers(self) -> None:
        """Every resync interval, check that each pod veth still has our classifier (an apply skips an unchanged
        state, so nothing else would notice one removed behind our back) and attach it again where it is gone.

        On a thread and a netlink socket of its own: one dump per pod veth is hundreds of netlink calls on a
        busy node, and a pass (a pod waiting to start) must not wait behind them. Only a re-attach takes
        the apply lock.
        """
        with iproute(self.netns) as ipr:
            while not self._stop.wait(self.resync):
                with self._apply_lock:
                    attached = self.datapath.steered_veths()
                try:
                    missing = [veth for veth, idx in attached.items() if not filter_attached(ipr, idx)]
                    if not missing:
                        continue
                    with self._apply_lock:
                        redone = self.datapath.reattach_missing(missing)
                except Exception as err:
                    log.warning("checking the pods' steering filters failed: %s", err)
                    continue
                for veth in redone:
                    self.reattached += 1
                    log.warning("the egress classifier on %s had been removed (by another tc user?): "
                                "attached it again", veth)

    def _timed_apply(self, state: NodeDatapathState) -> None:
        if self.on_apply is None:
            self.datapath.apply(state)
            return
        start, ok = time.perf_counter(), False
        try:
            self.datapath.apply(state)
            ok = True
        finally:
            self.on_apply(time.perf_counter() - start, ok)

    # --- status ------------------------------------------------------------------------

    def _published_applied(self) -> int:
        return self._published.applied_revision if self._published else 0

    def live_counters(self) -> dict:
        """This node's counters now, in the record's shape (for the API; safe from any thread)."""
        with self._apply_lock:
            return self.local_counters()

    def local_counters(self) -> dict:
        c = self.datapath.counters()
        return {
            "steered": {n: [v.packets, v.bytes, v.dropped] for n, v in sorted(c.steered.items())},
            "translated": {ip: [v.packets, v.bytes] for ip, v in sorted(c.translated.items())},
        }

    def _publish(self, applied: int, pending: dict[str, str], force: bool) -> None:
        """Write the datapath record when something a reader cares about changed.

        `force`: a watched change arrived since the last publish, so waiters need
        the new revision. Otherwise the revision number is left as it was: other
        nodes' writes move the store revision all the time, and republishing for
        them would make every node write on every resync.
        """
        prev = self._published
        if prev is not None and not force:
            applied = prev.applied_revision
        now = time.monotonic()
        steered, translated = (prev.steered, prev.translated) if prev is not None else ({}, {})
        if prev is None or force or now - self._published_at >= self.counters_interval:
            try:
                with self._apply_lock:
                    live = self.local_counters()
                steered, translated = live["steered"], live["translated"]
            except Exception as err:
                log.debug("reading counters failed: %s", err)
        value = DatapathRecord(applied, dict(pending), self.last_error,
                               {k: tuple(v) for k, v in steered.items()}, {k: tuple(v) for k, v in translated.items()})
        if value == prev:
            return
        try:
            status.publish(self.store, self.node.name, value)
        except base.StoreError as err:
            log.info("datapath status not published (%s); retrying on the next pass", err)
            return
        self._published, self._published_at = value, now
