"""The cluster's node view: who exists, who is Up, as decided by the leader and published in etcd.

Inputs, kept current by one store watch:
- `node/<name>`: every node that ever registered (persistent, so a dead node stays listed);
- `members/<name>`: lease-held liveness keys (gone = lease expired = Down);
- `restarting/<name>`: lease-held restart markers (cluster/restart.py);
- the local `Detector` (fast probes), which only the leader acts on.

The leader *decides*: a node is Up when its liveness key exists and it answers
probes; otherwise Restarting while its restart marker exists, or while its
kernel refuses our probes (its agent crashed, its node is alive: the
detector's crash hold), or while its restarted agent answers before its new
lease is seen (`Detector.rejoining`), unless its agent said it stopped on
purpose; else Down. It
publishes the decision as one record, `nodestate/cluster`
({name: "Up"|"Restarting"|"Down"}), written with its election guard, and the controller
assigns from the same decision. Every agent's status reads the *published*
record, so all agents report the same Up/Down, whoever is asked.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

from egress_agent.cluster.detector import Detector
from egress_agent.cluster.membership import MEMBERS
from egress_agent.cluster.restart import RESTARTING
from egress_agent.node_info import DOWN, UP, NodeInfo
from egress_agent.store.base import NODE, AlreadyExists, Conflict, NotFound, Put, Unavailable
from egress_agent.store.etcd import EtcdStore

log = logging.getLogger(__name__)

NODESTATE = "nodestate"
PUBLISHED = "cluster"
WATCHED = [NODE, MEMBERS, RESTARTING, NODESTATE]


class ClusterNodes:
    def __init__(
        self,
        store: EtcdStore,
        detector: Optional[Detector] = None,
        *,
        is_leader: Callable[[], bool] = lambda: False,
        guard: Callable[[], list] = lambda: [],
        on_change: Optional[Callable[[], None]] = None,
    ):
        self.store = store
        self.detector = detector
        self.is_leader = is_leader
        self.guard = guard
        self.on_change = on_change
        self._nodes: dict[str, dict] = {}
        self._members: dict[str, dict] = {}
        self._restarting: set[str] = set()
        self._stopped: set[str] = set()  # members whose last record said their agent stopped on purpose (no crash)
        self._published: dict[str, str] = {}
        self._published_version = 0
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._cancel_watch: Optional[Callable[[], None]] = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        since = 0  # watch from the snapshot's revision, so nothing between the two is missed
        try:
            snap = self.store.snapshot(WATCHED)
            since = snap.revision
            with self._lock:
                self._nodes = {n: r.value for n, r in snap.of(NODE).items()}
                self._members = {n: r.value for n, r in snap.of(MEMBERS).items()}
                self._restarting = set(snap.of(RESTARTING))
                self._stopped = {n for n, r in snap.of(MEMBERS).items() if r.value.get("stopping")}
                pub = snap.of(NODESTATE).get(PUBLISHED)
                if pub:
                    self._published, self._published_version = dict(pub.value), pub.version
        except Unavailable:
            pass  # the watch re-lists once etcd answers
        self._update_detector()
        self._cancel_watch = self.store.watch(WATCHED, self._on_watch, start_revision=since)

    def stop(self) -> None:
        if self._cancel_watch:
            self._cancel_watch()

    def _on_watch(self, rev: int, changes) -> None:
        with self._lock:
            for c in changes:
                r = c.record
                if r.kind == NODESTATE:
                    if r.name == PUBLISHED:
                        self._published = {} if c.deleted else dict(r.value)
                        self._published_version = 0 if c.deleted else r.version
                    continue
                if r.kind == RESTARTING:
                    (self._restarting.discard if c.deleted else self._restarting.add)(r.name)
                    continue
                if r.kind == MEMBERS and not c.deleted:
                    (self._stopped.add if r.value.get("stopping") else self._stopped.discard)(r.name)
                table = self._nodes if r.kind == NODE else self._members
                if c.deleted:
                    table.pop(r.name, None)
                else:
                    table[r.name] = r.value
        self._update_detector()
        self.changed()

    def _update_detector(self) -> None:
        if self.detector:
            with self._lock:
                peers = {n: v.get("probe_address", "") for n, v in self._members.items()}
            self.detector.set_peers(peers)

    def changed(self) -> None:
        """Something that may change the decision happened (a watch event, a probe verdict, leadership)."""
        if self.is_leader():
            self.publish()
        if self.on_change:
            self.on_change()

    # -- the two views -------------------------------------------------------------------

    def decided(self) -> list[NodeInfo]:
        """The leader's view: registered nodes, Up iff lease alive and answering probes, else Restarting while
        its restart marker lasts."""
        with self._lock:
            nodes, members, restarting = dict(self._nodes), set(self._members), set(self._restarting)
            stopped = set(self._stopped)
        out = []
        for name, v in sorted(nodes.items()):
            up = name in members and (self.detector is None or self.detector.is_up(name))
            crashed = self.detector is not None and name not in stopped and (
                self.detector.held(name) or self.detector.rejoining(name))
            out.append(NodeInfo(name=name, role=v.get("role", "worker"), node_ip=v["node_ip"], up=up,
                                restarting=not up and (name in restarting or crashed),
                                routers=tuple(v.get("routers") or ()), labels=dict(v.get("labels") or {})))
        return out

    def published(self) -> list[NodeInfo]:
        """What every agent reports: the leader's last published decision (lease liveness before any)."""
        with self._lock:
            nodes, members, pub = dict(self._nodes), set(self._members), dict(self._published)
        return [
            NodeInfo.of_state(
                pub.get(name) or (UP if name in members else DOWN),
                name=name,
                role=v.get("role", "worker"),
                node_ip=v["node_ip"],
                routers=tuple(v.get("routers") or ()),
                labels=dict(v.get("labels") or {}),
            )
            for name, v in sorted(nodes.items())
        ]

    def publish(self) -> None:
        """Leader only: write the decided states when they differ from the published ones."""
        with self._publish_lock:
            for _ in range(3):
                states = {n.name: n.state for n in self.decided()}
                with self._lock:
                    if states == self._published:
                        return
                    version = self._published_version
                try:
                    rev = self.store.commit([*self.guard(), Put(NODESTATE, PUBLISHED, states, version)])
                except (Conflict, AlreadyExists, NotFound):
                    # Our copy of the record is behind (e.g. just elected): re-read it and retry.
                    try:
                        rec = self.store.get(NODESTATE, PUBLISHED)
                    except Unavailable:
                        return
                    with self._lock:
                        self._published = dict(rec.value) if rec else {}
                        self._published_version = rec.version if rec else 0
                    if not self.is_leader():
                        return
                    continue
                except Unavailable as e:
                    log.info("node states not published (%s); retrying on the next change", e)
                    return
                with self._lock:
                    if rev > self._published_version:
                        self._published, self._published_version = states, rev
                log.info("published node states: %s", ", ".join(f"{n}={s}" for n, s in sorted(states.items())))
                return
