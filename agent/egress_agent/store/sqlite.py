"""The embedded store: one SQLite file, for a single-node agent (the default).

One table of records plus a revision counter. Every commit is one
`BEGIN IMMEDIATE` transaction that reads the revision, applies all operations
(checking versions as it goes) and bumps the revision once, so a commit is
atomic and either fully on disk or not at all. WAL keeps readers from
blocking the writer.

Watches are in-process: committed changes are queued and delivered, in
revision order, by one background thread. A short history of recent commits
lets `watch(start_revision=R)` replay what happened after a snapshot at R.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import sqlite3
import threading
from typing import Callable, Optional, Sequence

from egress_agent.store import base
from egress_agent.store.base import (
    AlreadyExists,
    Change,
    Check,
    Conflict,
    Delete,
    NotFound,
    Put,
    Record,
    Snapshot,
    Unavailable,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    value   TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS revision (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    rev INTEGER NOT NULL
);
INSERT OR IGNORE INTO revision (id, rev) VALUES (1, 0);
"""

_HISTORY = 4096  # commits kept in memory for watch replay


class _Watch:
    def __init__(self, kinds: Sequence[str], callback: base.WatchCallback, start_revision: int):
        self.kinds = frozenset(kinds)
        self.callback = callback
        self.after = start_revision  # deliver only revisions above this
        self.active = True


class SqliteStore(base.Store):
    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.url = f"sqlite:{self.path}"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            # Created 0600 up front: SQLite gives the -wal/-shm files the database file's mode.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit the API acknowledged survives power loss too, not just a crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise Unavailable(f"cannot open sqlite store {self.path}: {err}") from None
        self._lock = threading.RLock()
        self._decoded: dict[str, dict[str, tuple[int, dict]]] = {}  # kind -> name -> (version, value): _decode
        self._snapshots: dict[frozenset[str], Snapshot] = {}  # the last snapshot of each set of kinds
        self._closed = False
        self._history: collections.deque[tuple[int, list[Change]]] = collections.deque(maxlen=_HISTORY)
        self._watches: list[_Watch] = []
        self._queue: queue.Queue = queue.Queue()
        self._dispatcher = threading.Thread(target=self._dispatch, name="sqlite-watch", daemon=True)
        self._dispatcher.start()

    # --- reads ---------------------------------------------------------------------------

    def _revision(self) -> int:
        return self._db.execute("SELECT rev FROM revision WHERE id = 1").fetchone()[0]

    def revision(self) -> int:
        with self._lock, self._errors():
            return self._revision()

    def get(self, kind: str, name: str) -> Optional[Record]:
        with self._lock, self._errors():
            row = self._db.execute(
                "SELECT value, version FROM records WHERE kind = ? AND name = ?", (kind, name)
            ).fetchone()
            return None if row is None else Record(kind, name, self._decode(kind, name, row[0], row[1]), row[1])

    def _decode(self, kind: str, name: str, value: str, version: int) -> dict:
        """The record's value, decoded once per version (a version names one value: the revision that wrote it).

        Snapshots read whole kinds; decoding every record's JSON each time made reads linear in the
        estate with a large constant (most of a 1,000-policy plan's time on the agent). Callers share
        the decoded dict, so they must not modify a Record's value (none does; writes build new values).
        """
        hit = self._decoded.get(kind, {}).get(name)
        if hit is not None and hit[0] == version:
            return hit[1]
        return json.loads(value)

    def snapshot(self, kinds: Sequence[str]) -> Snapshot:
        kinds = list(dict.fromkeys(kinds))
        with self._lock, self._errors():
            # One lock + one read transaction: every record comes from the same revision.
            self._db.execute("BEGIN")
            try:
                revision = self._revision()
                cached = self._snapshots.get(frozenset(kinds))
                if cached is not None and cached.revision == revision:
                    # Nothing was committed since (by any process: the revision row is in the file), so
                    # the same records: a run of reads (a plan refreshing every policy) costs one scan.
                    return Snapshot(revision, {k: dict(recs) for k, recs in cached.records.items()})
                snap = Snapshot(revision=revision, records={k: {} for k in kinds})
                if kinds:
                    marks = ",".join("?" * len(kinds))
                    rows = self._db.execute(
                        f"SELECT kind, name, value, version FROM records WHERE kind IN ({marks})", kinds
                    ).fetchall()
                    decoded = {k: {} for k in kinds}
                    for kind, name, value, version in rows:
                        v = self._decode(kind, name, value, version)
                        decoded[kind][name] = (version, v)
                        snap.records[kind][name] = Record(kind, name, v, version)
                    self._decoded.update(decoded)  # whole kinds: deleted records drop out
                if len(self._snapshots) >= 32:
                    self._snapshots.clear()
                self._snapshots[frozenset(kinds)] = Snapshot(revision, {k: dict(r) for k, r in snap.records.items()})
            finally:
                self._db.execute("COMMIT")
        return snap

    # --- writes ----------------------------------------------------------------------------

    def commit(self, ops: Sequence[base.Op]) -> int:
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rev = self._revision()
                new_rev = rev + 1
                changes = self._apply(ops, new_rev)
                if changes:
                    self._db.execute("UPDATE revision SET rev = ? WHERE id = 1", (new_rev,))
                    self._db.execute("COMMIT")
                else:  # only Checks: nothing to write, the revision stays
                    self._db.execute("ROLLBACK")
                    return rev
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._history.append((new_rev, changes))
            self._queue.put((None, [(new_rev, changes)]))
            return new_rev

    def _current(self, kind: str, name: str) -> Optional[tuple[str, int]]:
        return self._db.execute(
            "SELECT value, version FROM records WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()

    def _apply(self, ops: Sequence[base.Op], new_rev: int) -> list[Change]:
        changes: list[Change] = []
        for op in ops:
            row = self._current(op.kind, op.name)
            actual = row[1] if row else 0
            if isinstance(op, Check):
                if actual != op.version:
                    raise Conflict(op.kind, op.name, op.version, actual)
            elif isinstance(op, Put):
                if op.expect_version == base.MUST_NOT_EXIST and row is not None:
                    raise AlreadyExists(op.kind, op.name)
                if op.expect_version not in (base.ANY_VERSION, base.MUST_NOT_EXIST):
                    if row is None:
                        raise NotFound(op.kind, op.name)
                    if actual != op.expect_version:
                        raise Conflict(op.kind, op.name, op.expect_version, actual)
                value = json.loads(json.dumps(op.value))  # a private, JSON-clean copy
                self._db.execute(
                    "INSERT INTO records (kind, name, value, version) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (kind, name) DO UPDATE SET value = excluded.value, version = excluded.version",
                    (op.kind, op.name, json.dumps(value, sort_keys=True), new_rev),
                )
                changes.append(Change(Record(op.kind, op.name, value, new_rev)))
            elif isinstance(op, Delete):
                if row is None:
                    raise NotFound(op.kind, op.name)
                if op.expect_version is not base.ANY_VERSION and actual != op.expect_version:
                    raise Conflict(op.kind, op.name, op.expect_version, actual)
                self._db.execute("DELETE FROM records WHERE kind = ? AND name = ?", (op.kind, op.name))
                changes.append(Change(Record(op.kind, op.name, {}, new_rev), deleted=True))
            else:
                raise TypeError(f"unknown store operation {op!r}")
        return changes

    # --- watches ------------------------------------------------------------------------------

    def watch(
        self, kinds: Sequence[str], callback: base.WatchCallback, start_revision: int = 0
    ) -> Callable[[], None]:
        w = _Watch(kinds, callback, start_revision)
        with self._lock:
            current = self._revision()
            replay: list[tuple[int, list[Change]]] = []
            if 0 < start_revision < current:
                oldest = self._history[0][0] if self._history else current + 1
                if start_revision + 1 < oldest:
                    raise base.StoreError(
                        f"watch from revision {start_revision}: history starts at {oldest}; re-read a snapshot"
                    )
                replay = [(rev, changes) for rev, changes in self._history if rev > start_revision]
            # Commits up to `current` reach this watch only through the replay below, queued
            # behind anything already pending, so delivery stays in revision order.
            w.after = current
            self._watches.append(w)
            if replay:
                self._queue.put((w, replay))

        def cancel() -> None:
            w.active = False
            with self._lock:
                if w in self._watches:
                    self._watches.remove(w)

        return cancel

    def _dispatch(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            target, commits = item
            for rev, changes in commits:
                for w in [target] if target is not None else list(self._watches):
                    if not w.active or (target is None and rev <= w.after):
                        continue
                    mine = [c for c in changes if c.record.kind in w.kinds]
                    if not mine:
                        continue
                    try:
                        w.callback(rev, mine)
                    except Exception:
                        log.exception("store watch callback failed (revision %d)", rev)

    # --- lifecycle -------------------------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
            return True, ""
        except sqlite3.Error as err:
            return False, f"sqlite store {self.path}: {err}"

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._watches.clear()
            self._queue.put(None)
            self._db.close()
        if threading.current_thread() is not self._dispatcher:
            self._dispatcher.join(timeout=5)

    def _errors(self):
        return _SqliteErrors(self.path)


class _SqliteErrors:
    """Turns sqlite errors (disk full, I/O error, locked past the timeout) into Unavailable."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, sqlite3.Error):
            raise Unavailable(f"sqlite store {self.path}: {exc}") from exc
        return False
