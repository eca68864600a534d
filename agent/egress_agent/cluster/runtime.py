"""One agent's cluster machinery, assembled: what `egress-agent --store etcd:...` runs.

Start order matters: etcd endpoint health checks first, then the cluster key for probes (from its file, or
read/created in etcd), then the probe socket (its address is registered), then
membership (retries until etcd answers; registered again, the node deletes
its restart marker, if it left one), then the node view, the election and
fencing. `stop()` resigns and revokes the lease, so a clean shutdown is seen
at once rather than after the TTL; before a restart, `announce_restart` first
asks the cluster to keep the node's IPs (cluster/restart.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from egress_agent.cluster.detector import DEFAULT_INTERVAL, DEFAULT_MISSES, Detector
from egress_agent.cluster.election import Election
from egress_agent.cluster.fencing import Fencing
from egress_agent.cluster.membership import DEFAULT_KEEPALIVE, DEFAULT_TTL, Membership
from egress_agent.cluster.probe_key import DEFAULT_GRACE, Keyring, etcd_key
from egress_agent.cluster.nodes import ClusterNodes
from egress_agent.cluster import restart
from egress_agent.store.etcd import EtcdStore

log = logging.getLogger(__name__)


@dataclass
class ClusterOptions:
    lease_ttl: int = DEFAULT_TTL
    keepalive_interval: float = DEFAULT_KEEPALIVE
    probe_address: str = ""  # host:port for UDP probes; "" = the API's host:port
    probe_interval: float = DEFAULT_INTERVAL
    probe_misses: int = DEFAULT_MISSES
    start_timeout: Optional[float] = None  # give up registering after this long (None = retry forever)
    depose_dead_leader: bool = True  # revoke the lease of a leader that stops answering probes (fast takeover)
    cluster_key_file: str = ""  # the probes' cluster key; "" = the key in etcd (created by the first agent)
    cluster_key_grace: float = DEFAULT_GRACE  # after the key file changes: old key signs this long, accepted twice as long
    crash_hold: float = 0.0  # seconds a peer whose agent crashed (its kernel refuses probes) keeps its IPs; 0: none


class Cluster:
    def __init__(self, store: EtcdStore, node: dict, options: ClusterOptions, on_change: Callable[[], None] = lambda: None):
        self.store = store
        self.options = options
        self._on_change = on_change
        self._stop = threading.Event()
        keyring = Keyring.from_file(options.cluster_key_file, options.cluster_key_grace) if options.cluster_key_file else None
        self.detector = Detector(
            node["name"],
            options.probe_address or node.get("api_address", ""),
            interval=options.probe_interval,
            misses=options.probe_misses,
            session_age=lambda: self.membership.session_age(),
            on_change=self._probe_verdict,
            keyring=keyring,
            crash_hold=options.crash_hold,
        )
        self.membership = Membership(
            store,
            {**node, "probe_address": self.detector.address},
            ttl=options.lease_ttl,
            keepalive_interval=options.keepalive_interval,
        )
        self.election = Election(store, self.membership, on_change=lambda leading: self.nodes.changed())
        self.nodes = ClusterNodes(
            store, self.detector, is_leader=self.election.is_leader, guard=self.election.guard, on_change=on_change
        )
        self.fencing = Fencing(store, self.membership, self.detector)

    def _probe_verdict(self, name: str, up: bool) -> None:
        if not up and self.options.depose_dead_leader and self.election.leader() == name:
            self._depose_when_corroborated(name)
        self.nodes.changed()

    def _depose_when_corroborated(self, leader: str) -> None:
        """Depose the silent `leader` once another peer shows the silence is the leader's and not ours.

        A node cut off from the network sees every peer fall silent together; deposing from there once
        revoked a healthy leader's lease (and so moved its IPs) when the cable came back. A peer that
        answers right now settles it. One that was Up at the verdict but whose last answer is a little old
        (a busy machine) gets up to one detection window to answer again; if it is judged Down instead,
        this node is the one cut off (or several died at once) and the leader's lease expires on its own.
        """
        if self.detector.hears_others_than(leader):
            self.election.depose_dead_leader(leader)
            return
        witnesses = {n for n, up in self.detector.states().items() if up and n != leader}
        if witnesses:
            threading.Thread(target=self._await_witness, args=(leader, witnesses), name="depose-witness",
                             daemon=True).start()
        else:
            self._leave_lease(leader)

    def _await_witness(self, leader: str, witnesses: set[str]) -> None:
        deadline = time.monotonic() + self.detector.window
        while not self._stop.wait(self.detector.interval):
            if self.election.leader() != leader or self.detector.is_up(leader):
                return  # another node deposed it, or it answers again
            states = self.detector.states()
            if not all(states.get(n, False) for n in witnesses) or time.monotonic() > deadline:
                break
            if self.detector.answering(witnesses):
                self.election.depose_dead_leader(leader)
                return
        if not self._stop.is_set():  # stopping: nothing was decided
            self._leave_lease(leader)

    @staticmethod
    def _leave_lease(leader: str) -> None:
        log.info("controller leader %s stopped answering probes, and so did every other peer: this node may be "
                 "the one cut off, so it leaves the leader's lease alone (it expires on its own)", leader)

    def start(self) -> None:
        self.store.client.start_health_checks()  # before anything talks to etcd: a hung member is avoided
        if self.detector.keyring is None:  # before we register: peers probe us as soon as we are a member
            key = etcd_key(self.store, self.membership.name, stop=self._stop, max_wait=self.options.start_timeout)
            self.detector.keyring = Keyring(key, source="etcd")
        log.info("probe: authenticated with the cluster key from %s (key id %s)",
                 self.detector.keyring.source, self.detector.keyring.ids()[0])
        self.detector.start()
        self.membership.start(max_wait=self.options.start_timeout)
        restart.clear(self.store, self.membership.name)  # registered: Up again, the marker's promise is kept
        self.nodes.start()
        self.election.start()
        self.fencing.start()

    def abort(self) -> None:
        """Stop a `start()` that is still waiting for etcd (e.g. on SIGTERM)."""
        self._stop.set()
        self.membership.abort()

    # -- what the controller and the API server plug in ---------------------------------

    def is_leader(self) -> bool:
        return self.election.is_leader()

    def leader(self) -> str:
        return self.election.leader()

    def guard(self):
        return self.election.guard()

    def health(self) -> tuple[bool, str]:
        """(ok, detail): etcd reachable and our session alive."""
        ok, detail = self.store.healthy()
        if not ok:
            return False, detail
        if not self.membership.session_ok():
            return False, f"etcd session lost {self.membership.session_age():.1f}s ago"
        return True, ""

    def announce_restart(self, window: int, version: str) -> bool:
        """Before a stop: the cluster keeps this node's IPs for `window` seconds. False when etcd did not take it."""
        return restart.announce(self.store, self.membership.name, window, version)

    def stop(self) -> None:
        self._stop.set()  # ends a wait for a witness (_await_witness)
        for step in (self.fencing.stop, self.election.stop, self.nodes.stop, self.membership.stop, self.detector.stop):
            try:
                step()
            except Exception:
                log.exception("cluster shutdown step failed")
