"""The cluster store: `base.Store` on etcd v3.

Layout: a record (kind, name) is the key `<prefix>/<kind>/<name>` holding its
value as JSON; `Record.version` is the key's mod_revision, so the API's
resource_version is an etcd revision and every commit bumps the one global
revision counter, as the interface says.

`commit` is one etcd transaction: a compare for every expected version and
`Check` (version 0 = "absent" = create_revision 0), then the puts and
deletes. When a compare fails, the transaction's failure branch reads every
involved key at the same revision, which tells exactly which operation failed
and why (NotFound / AlreadyExists / Conflict) with no second round trip.

`watch` reads etcd's watch stream: changes arrive in revision order, one
callback per revision (a transaction's events share it). After a lost
connection it resumes from the revision after the last one delivered, on
whichever endpoint answers; when that revision has been compacted away it
re-lists the watched kinds and delivers the difference, so a watcher never
misses a delete.

A transaction carries at most `max_commit_ops` operations (etcd's
`--max-txn-ops`, 128 by default): a larger commit is refused here with a
clear error before etcd sees it; writers of many independent records cut
them with `base.batches`.

Reads are linearizable unless `serializable=True` (then a member may answer
from its local, possibly stale, copy without a quorum round trip).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Optional, Sequence

from egress_agent.store.etcd_client import (
    GRPC_OUT_OF_RANGE,
    EtcdClient,
    EtcdError,
    b64,
    prefix_end,
    unb64,
)
from egress_agent.store.base import (
    AlreadyExists,
    Change,
    Check,
    Conflict,
    Delete,
    NotFound,
    Op,
    Put,
    Record,
    Snapshot,
    Store,
    StoreError,
    Unavailable,
    WatchCallback,
)

log = logging.getLogger(__name__)


class EtcdStore(Store):
    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str = "/egress",
        *,
        timeout: float = 2.0,
        ca_cert: Optional[str] = None,
        cert_file: Optional[str] = None,
        key_file: Optional[str] = None,
        serializable: bool = False,
        max_txn_ops: int = 128,
    ):
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"etcd prefix {prefix!r} must start with '/' and not end with '/' (e.g. /egress)")
        self.prefix = prefix
        self.client = EtcdClient(endpoints, timeout=timeout, ca_cert=ca_cert, cert_file=cert_file, key_file=key_file)
        self.serializable = serializable
        self.max_commit_ops = max_txn_ops
        self.url = "etcd:" + ",".join(self.client.endpoints)
        self._watches: list[_Watch] = []
        self._lock = threading.Lock()

    # -- keys ------------------------------------------------------------------

    def key(self, kind: str, name: str) -> str:
        if not kind or "/" in kind:
            raise ValueError(f"record kind {kind!r} must be non-empty and contain no '/'")
        return f"{self.prefix}/{kind}/{name}"

    def put_leased(self, kind: str, name: str, value: dict[str, Any], lease: int, timeout: float = 1.0) -> None:
        """One record attached to an etcd lease (gone when the lease ends): liveness and restart markers.
        Outside the desired state's versioned commits, on purpose: its life is the lease's."""
        self.client.call("kv/put", {"key": b64(self.key(kind, name)), "value": b64(json.dumps(value, sort_keys=True)),
                                    "lease": str(lease)}, timeout=timeout, idempotent=False)

    def kind_prefix(self, kind: str) -> str:
        return f"{self.prefix}/{kind}/"

    def key_name(self, b64key: str) -> str:
        """The record name of a base64 key as etcd's JSON API returns it."""
        return self._split(unb64(b64key))[1]

    def _split(self, key: str) -> tuple[str, str]:
        kind, _, name = key[len(self.prefix) + 1 :].partition("/")
        return kind, name

    def _record(self, kv: dict[str, Any]) -> Record:
        kind, name = self._split(unb64(kv["key"]))
        value = json.loads(unb64(kv["value"])) if kv.get("value") else {}
        return Record(kind, name, value, int(kv["mod_revision"]))

    # -- reads -----------------------------------------------------------------

    def get(self, kind: str, name: str) -> Optional[Record]:
        body: dict[str, Any] = {"key": b64(self.key(kind, name))}
        if self.serializable:
            body["serializable"] = True
        res = self._call("kv/range", body)
        kvs = res.get("kvs", [])
        return self._record(kvs[0]) if kvs else None

    def snapshot(self, kinds: Sequence[str], revision: Optional[int] = None) -> Snapshot:
        """All records of `kinds` read at one revision (one read-only transaction)."""
        ranges = []
        for kind in kinds:
            rng: dict[str, Any] = {"key": b64(self.kind_prefix(kind)), "range_end": b64(prefix_end(self.kind_prefix(kind)))}
            if revision:
                rng["revision"] = revision
            if self.serializable:
                rng["serializable"] = True
            ranges.append({"request_range": rng})
        if not ranges:
            return Snapshot(revision=self.client.revision())
        res = self._call("kv/txn", {"success": ranges})
        snap = Snapshot(revision=revision or int(res["header"]["revision"]))
        for kind, resp in zip(kinds, res.get("responses", [])):
            recs = snap.records.setdefault(kind, {})
            for kv in resp["response_range"].get("kvs", []):
                r = self._record(kv)
                recs[r.name] = r
        for kind in kinds:
            snap.records.setdefault(kind, {})
        return snap

    # -- writes ----------------------------------------------------------------

    def commit(self, ops: Sequence[Op]) -> int:
        if not ops:
            return self.client.revision()
        if len(ops) > self.max_commit_ops:
            # Each op adds at most one compare, one request and one failure read.
            raise ValueError(
                f"a commit of {len(ops)} operations exceeds etcd's limit of {self.max_commit_ops} per transaction "
                "(--max-txn-ops): split independent writes with store.base.batches"
            )
        compares, success, keys = [], [], []
        for op in ops:
            key = b64(self.key(op.kind, op.name))
            keys.append(key)
            if isinstance(op, Check):
                compares.append(_version_compare(key, op.version))
            elif isinstance(op, Put):
                if op.expect_version is not None:
                    compares.append(_version_compare(key, op.expect_version))
                value = json.dumps(op.value, sort_keys=True, separators=(",", ":"))
                success.append({"request_put": {"key": key, "value": b64(value)}})
            elif isinstance(op, Delete):
                if op.expect_version is None:
                    # Deleting a missing record is NotFound whatever the expected version.
                    compares.append({"key": key, "target": "CREATE", "result": "GREATER", "create_revision": "0"})
                else:
                    compares.append(_version_compare(key, op.expect_version))
                success.append({"request_delete_range": {"key": key}})
            else:
                raise TypeError(f"unknown store operation {op!r}")
        failure = [{"request_range": {"key": k}} for k in dict.fromkeys(keys)]
        try:
            res = self._call("kv/txn", {"compare": compares, "success": success, "failure": failure}, idempotent=False)
        except EtcdError as e:
            if "duplicate key" in e.message:
                raise ValueError(f"a commit may touch each record once: {e.message}") from None
            raise
        if res.get("succeeded"):
            return int(res["header"]["revision"])
        current: dict[str, int] = {}
        for resp in res.get("responses", []):
            for kv in resp["response_range"].get("kvs", []):
                current[kv["key"]] = int(kv["mod_revision"])
        raise _failed_op(ops, keys, current)

    # -- watch -----------------------------------------------------------------

    def watch(self, kinds: Sequence[str], callback: WatchCallback, start_revision: int = 0) -> Callable[[], None]:
        w = _Watch(self, list(kinds), callback, start_revision)
        with self._lock:
            self._watches.append(w)
        w.start()

        def cancel() -> None:
            w.cancel()
            with self._lock:
                if w in self._watches:
                    self._watches.remove(w)

        return cancel

    # -- lifecycle -------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        try:
            self.client.call("kv/range", {"key": b64(self.prefix), "count_only": True}, timeout=1.0)
        except Unavailable as e:
            return False, str(e)
        except EtcdError as e:
            return False, f"etcd error: {e.message}"
        return True, ""

    def close(self) -> None:
        with self._lock:
            watches, self._watches = self._watches, []
        for w in watches:
            w.cancel()
        self.client.close()

    def _call(self, path: str, body: dict, idempotent: bool = True) -> dict:
        try:
            return self.client.call(path, body, idempotent=idempotent)
        except EtcdError as e:
            if e.code == GRPC_OUT_OF_RANGE:
                raise Compacted(e.message) from None
            raise


class Compacted(StoreError):
    """A read asked for a revision etcd has already compacted away."""


def _version_compare(key: str, version: int) -> dict:
    if version == 0:
        return {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
    return {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": str(version)}


def _failed_op(ops: Sequence[Op], keys: list[str], current: dict[str, int]) -> StoreError:
    """The error for the first operation whose precondition does not hold in `current`."""
    for op, key in zip(ops, keys):
        actual = current.get(key, 0)
        if isinstance(op, Check):
            if actual != op.version:
                return Conflict(op.kind, op.name, op.version, actual)
        elif isinstance(op, Put):
            if op.expect_version == 0 and actual:
                return AlreadyExists(op.kind, op.name)
            if op.expect_version and not actual:
                return NotFound(op.kind, op.name)
            if op.expect_version and actual != op.expect_version:
                return Conflict(op.kind, op.name, op.expect_version, actual)
        elif isinstance(op, Delete):
            if not actual:
                return NotFound(op.kind, op.name)
            if op.expect_version and actual != op.expect_version:
                return Conflict(op.kind, op.name, op.expect_version, actual)
    # Every precondition holds now: a concurrent writer changed and restored a key
    # between the compare and the read. Report it as a conflict on the first check.
    op = ops[0]
    return Conflict(op.kind, op.name, getattr(op, "expect_version", getattr(op, "version", None)), current.get(keys[0], 0))


class _Watch:
    """One watch: a thread reading etcd's watch stream, reconnecting and resyncing."""

    RETRY_MIN, RETRY_MAX = 0.05, 1.0

    def __init__(self, store: EtcdStore, kinds: list[str], callback: WatchCallback, start_revision: int):
        self.store, self.kinds, self.callback = store, set(kinds), callback
        self._cancelled = threading.Event()
        self._resp = None
        self._endpoint = 0
        self.known: dict[tuple[str, str], int] = {}  # (kind, name) -> version, for resyncs
        self.need_resync = False
        self.next_rev = 0
        try:
            self._prime(start_revision)
        except (Unavailable, Compacted):
            self.need_resync = True  # the thread re-lists once etcd answers
        self._thread = threading.Thread(target=self._run, name=f"etcd-watch-{','.join(kinds)}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancelled.set()
        resp = self._resp
        if resp is not None:
            EtcdClient.close_stream(resp)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _prime(self, start_revision: int) -> None:
        snap = self.store.snapshot(sorted(self.kinds), revision=start_revision or None)
        self.known = {(r.kind, r.name): r.version for recs in snap.records.values() for r in recs.values()}
        self.next_rev = snap.revision + 1

    def _resync(self) -> None:
        snap = self.store.snapshot(sorted(self.kinds))
        changes = []
        seen = set()
        for recs in snap.records.values():
            for r in recs.values():
                seen.add((r.kind, r.name))
                if self.known.get((r.kind, r.name)) != r.version:
                    changes.append(Change(r))
        for kind, name in self.known.keys() - seen:
            changes.append(Change(Record(kind, name, {}, snap.revision), deleted=True))
        self.known = {(r.kind, r.name): r.version for recs in snap.records.values() for r in recs.values()}
        self.next_rev = snap.revision + 1
        self.need_resync = False
        if changes:
            log.info("etcd watch %s: re-listed after compaction, %d changes", sorted(self.kinds), len(changes))
            self._deliver(snap.revision, changes)

    def _run(self) -> None:
        delay = self.RETRY_MIN
        while not self._cancelled.is_set():
            try:
                if self.need_resync:
                    self._resync()
                self._stream()
                delay = self.RETRY_MIN
            except (Unavailable, OSError, ValueError) as e:
                if self._cancelled.is_set():
                    return
                log.debug("etcd watch %s: %s; retrying in %.2fs", sorted(self.kinds), e, delay)
            except Exception as e:  # a failing step must not kill the watch
                if self._cancelled.is_set():
                    return
                log.warning("etcd watch %s: %s; retrying in %.2fs", sorted(self.kinds), e, delay)
            self._endpoint += 1
            self._cancelled.wait(delay)
            delay = min(delay * 2, self.RETRY_MAX)

    def _watch_range(self) -> tuple[str, str]:
        if len(self.kinds) == 1:
            p = self.store.kind_prefix(next(iter(self.kinds)))
        else:
            p = self.store.prefix + "/"
        return p, prefix_end(p)

    def _stream(self) -> None:
        key, end = self._watch_range()
        body = {"create_request": {"key": b64(key), "range_end": b64(end), "start_revision": str(self.next_rev)}}
        resp, idx = self.store.client.open_stream("watch", body, prefer=self._endpoint % len(self.store.client.endpoints))
        self._endpoint = idx
        self._resp = resp
        try:
            if self._cancelled.is_set():
                return
            pending_rev, pending = 0, []
            for line in resp.iter_lines():
                if self._cancelled.is_set():
                    return
                if not line.strip():
                    continue
                result = json.loads(line).get("result") or {}
                if result.get("canceled"):
                    if int(result.get("compact_revision", 0) or 0):
                        self.need_resync = True
                    raise ValueError(f"watch canceled by etcd: {result.get('cancel_reason') or 'compacted'}")
                events = result.get("events") or []
                for ev in events:
                    kv = ev["kv"]
                    rev = int(kv["mod_revision"])
                    if pending and rev != pending_rev:
                        self._deliver_changes(pending_rev, pending)
                        pending = []
                    pending_rev = rev
                    pending.append(ev)
                # A watch response never splits one revision's events (no fragmenting asked).
                if pending:
                    self._deliver_changes(pending_rev, pending)
                    pending = []
            raise ValueError("watch stream ended")
        finally:
            self._resp = None
            self.store.client.forget_stream(resp)
            resp.close()

    def _deliver_changes(self, rev: int, events: list[dict]) -> None:
        changes = []
        for ev in events:
            kv = ev["kv"]
            kind, name = self.store._split(unb64(kv["key"]))
            if kind not in self.kinds:
                continue
            if ev.get("type") == "DELETE":
                self.known.pop((kind, name), None)
                changes.append(Change(Record(kind, name, {}, rev), deleted=True))
            else:
                rec = self.store._record(kv)
                self.known[(kind, name)] = rec.version
                changes.append(Change(rec))
        self.next_rev = rev + 1
        if changes:
            self._deliver(rev, changes)

    def _deliver(self, rev: int, changes: list[Change]) -> None:
        if self._cancelled.is_set():
            return
        try:
            self.callback(rev, changes)
        except Exception:
            log.exception("watch callback failed at revision %d", rev)


__all__ = ["EtcdStore", "Compacted"]
