"""Leader election for the controller, with the layout of etcd's election recipe.

Every agent queues with its membership lease: one short transaction creates
`<prefix>/election/<lease hex>` (the key etcd's v3election API would create)
unless it exists. The candidate whose key has the lowest create revision
leads, so the queue order is etcd's, not ours. The leader's key vanishes with
its lease (agent died or cut off from etcd for longer than the TTL) or when it
resigns, and the next candidate leads.

Why not etcd's blocking `/v3/election/campaign`: it parks a request on one
member until the candidate leads, and a hung member (SIGSTOP, disk stall)
held it there, so no agent took over a dead leader for as long as the
member hung. Here nothing waits on a member: the turn is read from the watch
of the election keys, which fails over between members like every watch
(`store.etcd_client`'s health checks).

`guard()` is the write fence: a `Check` that the leader key still exists with
the revision we were elected at, put in the same transaction as the
assignment writes. A deposed leader's commit therefore fails with a
conflict, even if it has not noticed yet that it was deposed.

Every agent also watches the election keys to know who leads (`leader()`),
for Health and `egressctl status`.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Optional

from egress_agent.store.etcd_client import EtcdError, b64
from egress_agent.cluster.membership import Membership
from egress_agent.store.base import Check, Conflict, Unavailable
from egress_agent.store.etcd import EtcdStore

log = logging.getLogger(__name__)

ELECTION = "election"  # store kind of the candidates' keys


class NotLeader(Conflict):
    """A leader-only write was attempted by an agent that is not (or no longer) the leader."""

    def __init__(self, node: str):
        Exception.__init__(self, f"node {node} is not the controller leader")
        self.kind, self.name, self.expected, self.actual = ELECTION, node, None, 0


@dataclass(frozen=True)
class LeaderKey:
    name: str  # record name under the election kind (the lease in hex)
    rev: int  # create revision of the key = its mod revision (we never proclaim)
    lease: int


class Election:
    def __init__(
        self,
        store: EtcdStore,
        membership: Membership,
        *,
        on_change: Optional[Callable[[bool], None]] = None,
        on_leader: Optional[Callable[[str], None]] = None,
    ):
        self.store = store
        self.client = store.client
        self.membership = membership
        self.node = membership.name
        self.on_change = on_change  # we started or stopped leading
        self.on_leader = on_leader  # the elected leader (any node) changed: its name, "" when none (metrics)
        self._seen_leader = ""
        self._key: Optional[LeaderKey] = None
        self._candidates: dict[str, tuple[int, str]] = {}  # key name -> (create rev, node)
        self._view_rev = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._cancel_watch: Optional[Callable[[], None]] = None
        self._thread: Optional[threading.Thread] = None

    # -- public ------------------------------------------------------------------

    def start(self) -> None:
        since = self._load_view()
        self._cancel_watch = self.store.watch([ELECTION], self._on_watch, start_revision=since)
        self._thread = threading.Thread(target=self._campaign_loop, name="election", daemon=True)
        self._thread.start()

    def is_leader(self) -> bool:
        """True while we hold the leader key and our lease is certainly alive."""
        with self._lock:
            held = self._key is not None
        return held and self.membership.session_ok()

    def leader(self) -> str:
        """Name of the current leader's node, "" when there is none."""
        with self._lock:
            return self._leader_locked()

    def _leader_locked(self) -> str:
        return min(self._candidates.values())[1] if self._candidates else ""

    def leader_lease(self) -> int:
        """The current leader's lease ID (its key's name is the lease in hex), 0 when none."""
        with self._lock:
            if not self._candidates:
                return 0
            name = min(self._candidates.items(), key=lambda kv: kv[1])[0]
        try:
            return int(name, 16)
        except ValueError:
            return 0

    def depose_dead_leader(self, node: str) -> bool:
        """Revoke the lease of leader `node`, which stopped answering probes, so the next candidate leads now.

        Without this a follower waits for the dead leader's lease to expire
        (about 2 s). The probe verdict is the same one that takes a dead
        node's IPs away; if it was wrong, the old leader simply registers
        again and queues as a follower. Returns True when a lease was revoked.
        """
        if self.leader() != node or node == self.node:
            return False
        if not self.membership.session_ok():
            # Our own view is stale (we were paused or cut off): a verdict from it must not depose anyone.
            return False
        lease = self.leader_lease()
        if not lease:
            return False
        log.warning("controller leader %s stopped answering probes: revoking its lease %x so another agent leads", node, lease)
        try:
            self.client.call("kv/lease/revoke", {"ID": str(lease)}, timeout=1.0)
        except (Unavailable, EtcdError) as e:
            log.info("could not revoke lease %x (%s); it expires on its own", lease, e)
            return False
        return True

    def guard(self) -> list[Check]:
        """Operations that make a commit fail unless we still lead (see module docstring)."""
        with self._lock:
            key = self._key
        if key is None or not self.membership.session_ok():
            raise NotLeader(self.node)
        return [Check(ELECTION, key.name, key.rev)]

    def stop(self, *, resign: bool = True) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        key = self._key
        if resign and key is not None:
            try:
                self.client.call("kv/deleterange", {"key": b64(self.store.key(ELECTION, key.name))}, timeout=1.0)
            except (Unavailable, EtcdError) as e:
                log.info("resign failed (%s); the key goes with the lease", e)
        if self._cancel_watch:
            self._cancel_watch()
        self._set_key(None)

    # -- view of the candidates -----------------------------------------------------

    def _load_view(self) -> int:
        """Read the candidates; returns the revision read at (0 when etcd did not answer)."""
        try:
            snap = self.store.snapshot([ELECTION])
        except Unavailable:
            return 0
        with self._changed:
            for name, rec in snap.of(ELECTION).items():
                self._candidates[name] = (rec.version, rec.value.get("node", ""))
            self._view_rev = max(self._view_rev, snap.revision)
            self._changed.notify_all()
            leader = self._leader_locked()
        self._saw_leader(leader)
        return snap.revision

    def _on_watch(self, rev: int, changes) -> None:
        with self._changed:
            for c in changes:
                if c.deleted:
                    self._candidates.pop(c.record.name, None)
                else:
                    self._candidates[c.record.name] = (c.record.version, c.record.value.get("node", ""))
            self._view_rev = max(self._view_rev, rev)
            self._changed.notify_all()
            leader = self._leader_locked()
        self._saw_leader(leader)

    def _saw_leader(self, leader: str) -> None:
        """Report a change of the elected leader. "No leader for a moment" between two is not a change,
        nor is the first leader this agent sees (it was elected before we looked)."""
        if not leader or leader == self._seen_leader:
            return
        first, self._seen_leader = not self._seen_leader, leader
        log.info("the controller leader is %s", leader)
        if self.on_leader and not first:
            try:
                self.on_leader(leader)
            except Exception:
                log.exception("leader change callback failed")

    # -- campaigning ----------------------------------------------------------------

    def _campaign_loop(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            lease = self.membership.lease_id
            if not lease or not self.membership.session_ok():
                self._stop.wait(0.05)  # membership is registering (again)
                continue
            try:
                key = self._enqueue(lease)
            except (Unavailable, EtcdError) as e:
                if self._stop.is_set():
                    return
                # e.g. "requested lease not found": membership registers again; queue with the new lease.
                log.info("node %s: cannot join the election (%s); retrying in %.1fs", self.node, e, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            if not self._wait_turn(key):
                continue
            log.info("node %s is now the controller leader (lease %x, revision %d)", self.node, key.lease, key.rev)
            self._set_key(key)
            self._hold(key)
            self._set_key(None)
            if not self._stop.is_set():
                log.warning("node %s is no longer the controller leader", self.node)

    def _enqueue(self, lease: int) -> LeaderKey:
        """Our candidate key (created unless it exists): one idempotent transaction."""
        name = f"{lease:x}"
        key = b64(self.store.key(ELECTION, name))
        res = self.client.call("kv/txn", {
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": b64(json.dumps({"node": self.node})), "lease": str(lease)}}],
            "failure": [{"request_range": {"key": key}}],
        })
        if res.get("succeeded"):
            return LeaderKey(name, int(res["header"]["revision"]), lease)
        kvs = res["responses"][0]["response_range"].get("kvs", [])
        if not kvs:  # deleted between the compare and the read: queue again
            raise Unavailable("election key vanished while joining")
        return LeaderKey(name, int(kvs[0]["create_revision"]), lease)

    def _wait_turn(self, key: LeaderKey) -> bool:
        """Block until our key is the oldest candidate (True) or is gone / our lease replaced (False)."""
        with self._changed:
            while not self._stop.is_set():
                if self.membership.lease_id != key.lease:
                    return False
                if self._view_rev >= key.rev:
                    if key.name not in self._candidates:
                        return False
                    if min(self._candidates.items(), key=lambda kv: kv[1])[0] == key.name:
                        return True
                self._changed.wait(0.2)
        return False

    def _hold(self, key: LeaderKey) -> None:
        """Return once our key is gone (lease expired/revoked) or our lease was replaced."""
        with self._changed:
            while not self._stop.is_set():
                gone = key.name not in self._candidates and self._view_rev >= key.rev
                if gone or self.membership.lease_id != key.lease:
                    return
                self._changed.wait(0.2)

    def _set_key(self, key: Optional[LeaderKey]) -> None:
        with self._lock:
            changed = (self._key is None) != (key is None)
            self._key = key
        if changed and self.on_change:
            try:
                self.on_change(key is not None)
            except Exception:
                log.exception("leadership change callback failed")
