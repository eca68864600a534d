"""This node's registration in the cluster, held by an etcd lease.

Registering is one transaction: the persistent node record (`node/<name>`, so
a node that dies stays listed, as Down) and the liveness key
`members/<name>` attached to a lease. A background thread keeps the lease
alive; when it expires (the agent died, or could not reach etcd for longer
than the TTL) etcd deletes the liveness key and the node is Down.

The lease is also this agent's etcd *session*: the leader election campaigns
with it, so a node that loses its lease loses leadership in the same instant.

At start, an unreachable etcd is retried with backoff and a log line that says
which endpoints failed and why. Since the liveness key only ever exists
attached to a live lease, a node is never left half-registered: the lease is
granted first and the keys written in one transaction with it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Optional

from egress_agent.store.etcd_client import GRPC_NOT_FOUND, EtcdError, b64
from egress_agent.store.base import NODE, Unavailable
from egress_agent.store.etcd import EtcdStore

log = logging.getLogger(__name__)

MEMBERS = "members"  # store kind of the lease-held liveness keys

#: Lease TTL in seconds. etcd rounds a smaller TTL up to 1.5 x its election
#: timeout (1 s with Debian's defaults), so 2 s is the shortest TTL honoured as
#: asked; the fast failure detector (detector.py) does not wait for it.
DEFAULT_TTL = 2
DEFAULT_KEEPALIVE = 0.5


class Membership:
    def __init__(
        self,
        store: EtcdStore,
        node: dict[str, Any],
        *,
        ttl: int = DEFAULT_TTL,
        keepalive_interval: float = DEFAULT_KEEPALIVE,
        on_session: Optional[Callable[[int], None]] = None,
    ):
        if ttl < 1:
            raise ValueError(f"lease TTL must be at least 1 second, got {ttl}")
        if not 0 < keepalive_interval < ttl:
            raise ValueError(f"keepalive interval {keepalive_interval}s must be above 0 and below the lease TTL {ttl}s")
        self.store = store
        self.client = store.client
        self.node = dict(node)
        self.name = node["name"]
        self.ttl = ttl
        self.keepalive_interval = keepalive_interval
        self.on_session = on_session  # called with the new lease ID after every (re-)registration
        self.lease_id = 0
        self.last_renewed = 0.0  # monotonic time a keepalive (or the grant) was last sent and answered
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # -- registration ------------------------------------------------------------

    def register(self, *, max_wait: Optional[float] = None) -> int:
        """Grant a lease and write this node's records; retry with backoff until etcd answers.

        Returns the lease ID. Raises Unavailable after `max_wait` seconds (None = forever).
        """
        delay, deadline = 0.2, (time.monotonic() + max_wait) if max_wait is not None else None
        while True:
            try:
                return self._register_once()
            except Unavailable as e:
                if self._stop.is_set() or (deadline is not None and time.monotonic() + delay > deadline):
                    raise
                log.warning("cannot register node %s in etcd (%s); retrying in %.1fs", self.name, e, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _register_once(self) -> int:
        sent = time.monotonic()
        grant = self.client.call("lease/grant", {"TTL": str(self.ttl)})
        lease = int(grant["ID"])
        try:
            self._write_records(self.node, lease)
        except Exception:
            self._revoke(lease)  # nothing is attached to it; do not leave it to expire
            raise
        with self._lock:
            self.lease_id, self.last_renewed = lease, sent
        log.info("node %s registered in etcd (lease %x, TTL %ss)", self.name, lease, grant.get("TTL", self.ttl))
        if self.on_session:
            self.on_session(lease)
        return lease

    def _write_records(self, node: dict[str, Any], lease: int) -> None:
        """The node record and the lease-held liveness key, with the same value, in one transaction."""
        value = b64(json.dumps(node, sort_keys=True))
        self.client.call(
            "kv/txn",
            {
                "success": [
                    {"request_put": {"key": b64(self.store.key(NODE, self.name)), "value": value}},
                    {"request_put": {"key": b64(self.store.key(MEMBERS, self.name)), "value": value,
                                     "lease": str(lease)}},
                ]
            },
            idempotent=False,
        )

    def update(self, node: dict[str, Any]) -> None:
        """Rewrite this node's records (a relabel) under the current lease, as registering writes them.

        The new value is kept first, so a re-registration after a lost lease also carries it; if the
        write fails (etcd unreachable, the lease just expired) the old value is put back and the
        error raised: the caller reports that nothing changed.
        """
        with self._lock:
            before, lease = self.node, self.lease_id
            self.node = {**node, "probe_address": before.get("probe_address", "")}
        try:
            if not lease:
                raise Unavailable("not registered yet")
            self._write_records(self.node, lease)
        except Exception:
            with self._lock:
                self.node = before
            raise

    def abort(self) -> None:
        """Stop a `register()` that is still retrying (e.g. on SIGTERM)."""
        self._stop.set()

    # -- keepalive -----------------------------------------------------------------

    def start(self, *, max_wait: Optional[float] = None) -> None:
        """Register (retrying) and keep the lease alive in the background."""
        self.register(max_wait=max_wait)
        self._thread = threading.Thread(target=self._keepalive_loop, name="etcd-lease-keepalive", daemon=True)
        self._thread.start()

    def _keepalive_loop(self) -> None:
        while not self._stop.wait(self.keepalive_interval):
            sent = time.monotonic()
            try:
                ttl = self._keepalive()
            except Unavailable as e:
                if sent - self.last_renewed > self.ttl:
                    log.warning("node %s: etcd session lost for %.1fs: %s", self.name, sent - self.last_renewed, e)
                continue
            except EtcdError as e:
                log.warning("node %s: lease keepalive failed: %s", self.name, e)
                ttl = -1 if e.code == GRPC_NOT_FOUND else 0
            if ttl > 0:
                self._renewed(sent)
            elif ttl < 0:
                # The lease expired while etcd was out of reach: our keys are gone. Register again.
                log.warning("node %s: lease %x expired; registering again", self.name, self.lease_id)
                try:
                    self._register_once()
                except Unavailable as e:
                    log.warning("node %s: re-registration failed: %s", self.name, e)

    def _keepalive(self, timeout: Optional[float] = None, deadline: Optional[float] = None) -> int:
        res = self.client.call("lease/keepalive", {"ID": str(self.lease_id)}, timeout=timeout or min(1.0, self.ttl / 2),
                               deadline=deadline)
        return int(res.get("result", {}).get("TTL", -1))

    def _renewed(self, sent: float) -> None:
        with self._lock:
            self.last_renewed = max(self.last_renewed, sent)

    def renew_now(self, timeout: float = 0.5) -> bool:
        """Re-observe the session: one keepalive now. True when etcd confirmed our lease alive.

        For decisions that must not be taken on a stale view (e.g. fencing after
        etcd came back, or after this process was paused): the periodic
        keepalive may simply not have run yet.
        """
        if not self.lease_id:
            return False
        sent = time.monotonic()
        try:  # within `timeout` in all, however many members fail to answer
            ttl = self._keepalive(timeout, deadline=sent + timeout)
        except (Unavailable, EtcdError):
            return False
        if ttl > 0:
            self._renewed(sent)
            return True
        return False

    def session_age(self) -> float:
        """Seconds since the lease was last confirmed alive (0 right after a keepalive)."""
        return time.monotonic() - self.last_renewed

    def session_ok(self) -> bool:
        """Whether our lease is certainly still alive in etcd (renewed less than a TTL ago)."""
        return self.lease_id != 0 and self.session_age() < self.ttl

    # -- leaving ---------------------------------------------------------------------

    def stop(self, *, leave: bool = True) -> None:
        """Stop the keepalives; `leave` marks the liveness key "stopping" (so no peer mistakes our silence for a
        crash and holds our IPs: detector.held) and revokes the lease, so the node is Down at once."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if leave and self.lease_id:
            try:
                self.store.put_leased(MEMBERS, self.name, {**self.node, "stopping": True}, self.lease_id)
            except (Unavailable, EtcdError) as e:
                log.info("could not mark node %s as stopping (%s)", self.name, e)
            self._revoke(self.lease_id)

    def _revoke(self, lease: int) -> None:
        try:
            self.client.call("kv/lease/revoke", {"ID": str(lease)}, timeout=1.0)
        except (Unavailable, EtcdError) as e:
            log.info("could not revoke lease %x (%s); it expires within %ss", lease, e, self.ttl)


def live_members(store: EtcdStore) -> dict[str, dict[str, Any]]:
    """Nodes whose lease is alive: name -> registration."""
    return {name: rec.value for name, rec in store.snapshot([MEMBERS]).of(MEMBERS).items()}
