"""The reconcile loop: floating IPs -> nodes, written as ASSIGNMENT records, plus events.

On every change to gateways, policies or nodes (and on a periodic resync, so a
node source that changes without a store write is noticed) the leader, reading
a watch-fed mirror of the records it needs (`store.mirror`), not the store:

1. collects every gateway's floating IPs and the node view from the NodeSource;
2. runs the pure `assignment.assign` with the stored assignments as `previous`;
3. commits only the ASSIGNMENT records that changed, with their versions checked,
   in as many guarded commits as the store's transaction limit needs, plus events: `FloatingIPMoved` (Normal) when a holder changes nodes,
   `Unassignable` (Warning) for an IP no node can take, `UnknownEgressIP`
   (Warning) for a policy whose source IP has no holder, `FloatingIPShared`
   (Warning) for an IP two gateways list, `FloatingIPRetained` (Warning) for
   a policy whose source IP is kept although its gateway let it go.

Retained IPs (`server.write_plan.retention_ops`) are assigned like any gateway's,
so a gateway deleted or replaced under a policy changes nothing in traffic.

A condition that persists emits its event once, when it starts (or when the
object it concerns is changed again), not on every pass. Events of deleted
gateways/policies are removed with them.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional, Sequence

from egress_agent.controller import events as ev
from egress_agent.controller.assignment import Assignment, Placement, assign
from egress_agent.controller.nodes import Leadership, NodeSource, Standalone
from egress_agent.loop import Loop
from egress_agent.node_info import NodeInfo
from egress_agent.store import base, typed
from egress_agent.store.assignment import AssignmentRecord, holders
from egress_agent.store.base import ASSIGNMENT, EVENT, GATEWAY, NODE, POLICY, RETAINED, Delete, Put, Snapshot
from egress_agent.store.mirror import Mirror

log = logging.getLogger(__name__)

#: What a pass reads, and which of those changes call for a pass (its own writes are assignments and events).
READ = (GATEWAY, POLICY, ASSIGNMENT, EVENT, RETAINED, NODE)
TRIGGERS = frozenset({GATEWAY, POLICY, NODE, RETAINED})
#: How long a pass waits for the mirror to show a revision it must see before reading the store instead.
OWN_COMMIT_WAIT = 1.0

#: Extra operations prepended to every controller commit, e.g. a Check on the
#: leader key so a deposed leader's write fails (fencing).
Guard = Callable[[], Sequence[base.Op]]
#: (floating IP, reason code of move_reason) for each move, called once the move is committed (metrics).
MoveObserver = Callable[[str, str], None]


def move_reason(before: str, up: dict[str, bool], released: str = "") -> tuple[str, str]:
    """Why a floating IP left node `before`: (reason code, the words of the FloatingIPMoved event).
    `released`: why an Up holder let it go (`Assignment.released`), when known."""
    if up.get(before):
        return "ineligible", released or "can no longer hold it"
    if before in up:
        return "node_down", "is Down"
    return "node_left", "left the cluster"


class Controller:
    def __init__(
        self,
        store: base.Store,
        nodes: NodeSource,
        leadership: Leadership | None = None,
        guard: Guard = lambda: (),
        clock: Callable[[], float] = time.time,
        resync: float = 2.0,
        on_move: Optional[MoveObserver] = None,
    ):
        self.store = store
        self.on_move = on_move
        self.nodes = nodes
        self.leadership = leadership or Standalone()
        self.guard = guard
        self.clock = clock
        self._loop = Loop("controller", self._pass, resync=resync)
        # A store read per pass was 10-60 ms of every failover (700 assignments and their events: 30-60 ms on
        # 20 agents, bench/failover_scale.py); the mirror answers from memory. Every op carries its expected
        # version, so a stale mirror can only make a commit fail (Conflict: the pass is retried), never wrong.
        self._mirror = Mirror(store, READ, on_change=self._on_change)
        self._committed = 0  # revision of this controller's last commit: a pass waits until the mirror has it
        self._active: set[tuple] = set()  # conditions whose event was already recorded
        self.passes = 0  # completed reconcile passes (for tests and Health)

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._mirror.snapshot()  # primes it: its watch triggers the passes
        except base.Unavailable as err:
            log.warning("store unavailable at start (%s): the controller reads it at its first pass", err)
        self._loop.start()

    def _on_change(self, revision: int, changes) -> None:
        if any(c.record.kind in TRIGGERS for c in changes):
            self.trigger()

    def trigger(self) -> None:
        """Ask for a reconcile soon (e.g. the cluster layer saw a node's lease expire)."""
        self._loop.trigger()

    def stop(self) -> None:
        self._loop.stop()  # first: a pass still running must not prime the mirror again after it stopped
        self._mirror.stop()

    def _pass(self) -> Optional[float]:
        try:
            self.reconcile_once()
        except (base.Conflict, base.NotFound, base.AlreadyExists) as err:
            # Another writer got there first; the mirror shows its write within a few ms.
            log.info("reconcile raced with another writer (%s); retrying", err)
            return 0.01
        except base.Unavailable as err:
            log.warning("reconcile skipped: %s", err)
        return None

    # --- one pass ----------------------------------------------------------------------

    def reconcile_once(self, after: int = 0) -> bool:
        """One pass; returns True when it wrote something. `after`: a store revision the pass must see (a
        caller's own write; the passes the loop runs are triggered by the mirror, so they see what woke them)."""
        if not self.leadership.is_leader():
            self._active.clear()  # a future leader term re-announces current conditions
            return False
        snap = self._read(max(after, self._committed))
        gateway_of = claims(snap)
        nodes = list(self.nodes())
        previous = holders(snap.of(ASSIGNMENT))
        result = assign(gateway_of, nodes, previous, placements(self.store, snap, gateway_of))

        ops: list[base.Op] = self._assignment_ops(snap, gateway_of, result)
        conditions, moves = self._conditions(snap, gateway_of, nodes, previous, result)
        new = [c for c in conditions if c not in self._active]
        now = self.clock()
        pending: dict[str, Put] = {}
        for spec in [spec for _, spec in new] + [spec for _, _, spec in moves]:
            name = spec.record_name()
            existing = snap.of(EVENT).get(name)
            if name in pending:  # the same event twice in one pass folds into one write
                op = pending[name]
                pending[name] = Put(EVENT, name, {**op.value, "count": op.value["count"] + 1}, op.expect_version)
            else:
                pending[name] = ev.record_op(spec, existing, now)
        ops += pending.values()
        ops += self._garbage_events(snap)
        # Assignments first: when a large pass is cut into several commits
        # (etcd's transaction limit), the IPs move before the events are written.
        # Every record carries its own expected version, so each commit stands alone.
        if ops:
            for batch in base.batches(ops, self.store.max_commit_ops, self.guard()):
                self._committed = self.store.commit(batch)
        self._active = set(conditions)
        self.passes += 1
        for ip, reason, spec in moves:
            log.info("%s", spec.message)
            if self.on_move is not None:
                self.on_move(ip, reason)
        return bool(ops)

    def _read(self, revision: int) -> Snapshot:
        """The records a pass needs, from the mirror once it shows `revision` (at least this controller's own
        last commit: a pass on an older view would only repeat that commit's writes and fail); from the store
        if the mirror lags."""
        if self._mirror.wait_for(revision, OWN_COMMIT_WAIT):
            return self._mirror.snapshot()
        log.warning("the store watch lags %.0f s behind revision %d: reading the store", OWN_COMMIT_WAIT, revision)
        return self.store.snapshot(READ)

    @staticmethod
    def _assignment_ops(snap: Snapshot, gateway_of: dict[str, str], result: Assignment) -> list[base.Op]:
        ops: list[base.Op] = []
        stored = snap.of(ASSIGNMENT)
        for ip, holder in result.holders.items():
            value = AssignmentRecord(holder, gateway_of[ip], result.reasons.get(ip, "")).to_value()
            rec = stored.get(ip)
            if rec is None:
                ops.append(Put(ASSIGNMENT, ip, value, base.MUST_NOT_EXIST))
            elif rec.value != value:
                ops.append(Put(ASSIGNMENT, ip, value, rec.version))
        for ip, rec in stored.items():
            if ip not in result.holders:  # the IP left every gateway
                ops.append(Delete(ASSIGNMENT, ip, rec.version))
        return ops

    @staticmethod
    def _conditions(
        snap: Snapshot,
        gateway_of: dict[str, str],
        nodes: list[NodeInfo],
        previous: dict[str, str],
        result: Assignment,
    ) -> tuple[list[tuple[tuple, ev.EventSpec]], list[tuple[str, str, ev.EventSpec]]]:
        """(persistent conditions keyed for de-duplication, one-shot moves as (ip, reason code, event))."""
        conditions: list[tuple[tuple, ev.EventSpec]] = []
        for ip, reason in sorted(result.reasons.items()):
            gw = gateway_of[ip]
            spec = ev.EventSpec(
                "gateway", gw, ev.WARNING, ev.UNASSIGNABLE, f"floating IP {ip} cannot be assigned to any node: {reason}"
            )
            conditions.append(((spec, snap.of(GATEWAY)[gw].version), spec))
        for gw, rec in sorted(snap.of(GATEWAY).items()):
            for ip in rec.value.get("floating_ips", []):
                if gateway_of.get(ip, gw) != gw:
                    spec = ev.EventSpec(
                        "gateway", gw, ev.WARNING, ev.FLOATING_IP_SHARED,
                        f"floating IP {ip} is also listed by gateway {gateway_of[ip]!r}; it is assigned once, "
                        "and each policy using it leaves with it",
                    )
                    conditions.append(((spec, rec.version), spec))
        retained = snap.of(RETAINED)
        for name, rec in sorted(snap.of(POLICY).items()):
            ip = rec.value.get("egress_source_ip", "")
            if ip in retained:
                spec = ev.EventSpec(
                    "policy", name, ev.WARNING, ev.FLOATING_IP_RETAINED,
                    f"egress_source_ip {ip} is kept for this policy although gateway "
                    f"{retained[ip].value.get('gateway', '')!r} no longer lists it; it is released when no policy "
                    "uses it, or adopted when a gateway lists it again",
                )
                conditions.append(((spec, rec.version, retained[ip].version), spec))
            if result.holders.get(ip):
                continue
            if ip in result.reasons:
                msg = f"egress_source_ip {ip} is not assigned to any gateway node: {result.reasons[ip]}"
            else:
                msg = f"egress_source_ip {ip} is not a floating IP of any gateway"
            spec = ev.EventSpec("policy", name, ev.WARNING, ev.UNKNOWN_EGRESS_IP, msg)
            conditions.append(((spec, rec.version), spec))

        up = {n.name: n.up for n in nodes}
        moves = []
        for ip, holder in sorted(result.holders.items()):
            before = previous.get(ip, "")
            if before and holder and before != holder:
                reason, why = move_reason(before, up, result.released.get(ip, ""))
                spec = ev.EventSpec(
                    "gateway",
                    gateway_of[ip],
                    ev.NORMAL,
                    ev.FLOATING_IP_MOVED,
                    f"floating IP {ip} moved from {before} to {holder}: {before} {why}",
                )
                moves.append((ip, reason, spec))
        return conditions, moves

    @staticmethod
    def _garbage_events(snap: Snapshot) -> list[base.Op]:
        live = {GATEWAY: snap.of(GATEWAY), POLICY: snap.of(POLICY)}
        ops: list[base.Op] = []
        for name, rec in snap.of(EVENT).items():
            kind, obj = ev.object_of(rec)
            if kind in live and obj not in live[kind]:
                ops.append(Delete(EVENT, name, rec.version))
        return ops


def claims(snap: Snapshot) -> dict[str, str]:
    """Floating IP -> the gateway it is assigned for: listed by a gateway (the first by name when two
    list it), or retained for a policy after its gateway let it go."""
    gateway_of: dict[str, str] = {}
    for name, rec in sorted(snap.of(GATEWAY).items()):
        for ip in rec.value.get("floating_ips", []):
            gateway_of.setdefault(ip, name)
    for ip, rec in snap.of(RETAINED).items():
        gateway_of.setdefault(ip, rec.value.get("gateway", ""))
    return gateway_of


def placements(store: base.Store, snap: Snapshot, gateway_of: dict[str, str]) -> dict[str, Placement]:
    """Floating IP -> where its gateway lets it be held (node_selector, max_ips_per_node). A retained IP
    whose gateway is gone goes anywhere."""
    gateways = typed.parsed(store).all(snap, GATEWAY)
    by_gateway = {name: Placement.of(gw) for name, gw in gateways.items()}
    return {ip: by_gateway[gw] for ip, gw in gateway_of.items() if gw in by_gateway}
