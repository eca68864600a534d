"""store.mirror.Mirror: one snapshot, then the watch, gives what a store read would (SQLite and etcd)."""

from __future__ import annotations

import threading

import pytest

from egress_agent.store.base import NAMESPACE, POD, POLICY, Delete, Put
from egress_agent.store.mirror import Mirror
from egress_agent.store.sqlite import SqliteStore


def _values(snap, kind):
    return {name: r.value for name, r in snap.of(kind).items()}


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


def test_a_mirror_follows_puts_and_deletes_and_equals_a_store_read(store):
    store.commit([Put(POD, "a/p1", {"n": 1}), Put(NAMESPACE, "a", {"n": 0})])
    seen = threading.Event()
    mirror = Mirror(store, [POD, NAMESPACE], on_change=lambda rev, changes: seen.set())
    try:
        assert _values(mirror.snapshot(), POD) == {"a/p1": {"n": 1}}  # primed by the first read
        rev = store.commit([Put(POD, "a/p2", {"n": 2}), Delete(POD, "a/p1")])
        store.commit([Put(POLICY, "other", {"n": 9})])  # not mirrored: the revision stays
        assert seen.wait(5)
        snap = mirror.snapshot()
        assert snap.revision == rev
        read = store.snapshot([POD, NAMESPACE])
        for kind in (POD, NAMESPACE):
            assert _values(snap, kind) == _values(read, kind)
        assert POLICY not in snap.records
    finally:
        mirror.stop()


def test_a_snapshot_is_a_copy_a_later_commit_does_not_change(store):
    mirror = Mirror(store, [POD])
    try:
        before = mirror.snapshot()
        done = threading.Event()
        mirror.on_change = lambda rev, changes: done.set()
        store.commit([Put(POD, "a/p1", {"n": 1})])
        assert done.wait(5)
        assert before.of(POD) == {} and set(mirror.snapshot().of(POD)) == {"a/p1"}
    finally:
        mirror.stop()
