"""The `store.base.Store` contract, as tests every backend runs.

A backend's test module subclasses `StoreContract` and provides a `store`
fixture returning a fresh, empty store; everything here must pass unchanged on
the embedded store and on etcd, so the layers above cannot tell them apart.
"""

from __future__ import annotations

import threading
import time

import pytest

from egress_agent.store.base import (
    MUST_NOT_EXIST,
    AlreadyExists,
    Change,
    Check,
    Conflict,
    Delete,
    NotFound,
    Put,
)


def wait_for(predicate, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Recorder:
    """A watch callback that keeps what it was given, thread-safely."""

    def __init__(self):
        self.calls: list[tuple[int, list[Change]]] = []
        self._lock = threading.Lock()

    def __call__(self, revision, changes):
        with self._lock:
            self.calls.append((revision, list(changes)))

    def flat(self) -> list[tuple[str, str, bool]]:
        with self._lock:
            return [(c.record.kind, c.record.name, c.deleted) for _, cs in self.calls for c in cs]

    def revisions(self) -> list[int]:
        with self._lock:
            return [r for r, _ in self.calls]


class StoreContract:
    # -- create / read ---------------------------------------------------------

    def test_create_then_get(self, store):
        rev = store.commit([Put("gateway", "default", {"floating_ips": ["192.0.2.100"]}, MUST_NOT_EXIST)])
        rec = store.get("gateway", "default")
        assert rec.value == {"floating_ips": ["192.0.2.100"]}
        assert rec.version == rev > 0
        assert (rec.kind, rec.name) == ("gateway", "default")
        assert store.get("gateway", "missing") is None

    def test_create_existing_is_already_exists_and_writes_nothing(self, store):
        store.commit([Put("gateway", "a", {"v": 1}, MUST_NOT_EXIST)])
        with pytest.raises(AlreadyExists) as err:
            store.commit([Put("policy", "p", {"v": 1}), Put("gateway", "a", {"v": 2}, MUST_NOT_EXIST)])
        assert (err.value.kind, err.value.name) == ("gateway", "a")
        assert store.get("gateway", "a").value == {"v": 1}
        assert store.get("policy", "p") is None

    def test_revisions_increase_and_version_is_last_write(self, store):
        r1 = store.commit([Put("gateway", "a", {"v": 1})])
        r2 = store.commit([Put("gateway", "b", {"v": 1})])
        r3 = store.commit([Put("gateway", "a", {"v": 2})])
        assert r1 < r2 < r3
        assert store.get("gateway", "a").version == r3
        assert store.get("gateway", "b").version == r2

    # -- versioned writes --------------------------------------------------------

    def test_versioned_update(self, store):
        r1 = store.commit([Put("policy", "p", {"v": 1}, MUST_NOT_EXIST)])
        r2 = store.commit([Put("policy", "p", {"v": 2}, r1)])
        assert r2 > r1
        assert store.get("policy", "p").value == {"v": 2}

    def test_stale_update_is_conflict_with_both_versions(self, store):
        r1 = store.commit([Put("policy", "p", {"v": 1}, MUST_NOT_EXIST)])
        r2 = store.commit([Put("policy", "p", {"v": 2}, r1)])
        with pytest.raises(Conflict) as err:
            store.commit([Put("policy", "p", {"v": 3}, r1)])
        assert (err.value.kind, err.value.name, err.value.expected, err.value.actual) == ("policy", "p", r1, r2)
        assert "re-read" in str(err.value)
        assert store.get("policy", "p").value == {"v": 2}

    def test_versioned_update_of_missing_is_not_found(self, store):
        with pytest.raises(NotFound):
            store.commit([Put("policy", "ghost", {"v": 1}, 7)])

    def test_unconditional_put_upserts(self, store):
        store.commit([Put("pod", "x", {"v": 1})])
        store.commit([Put("pod", "x", {"v": 2})])
        assert store.get("pod", "x").value == {"v": 2}

    # -- deletes -------------------------------------------------------------------

    def test_delete(self, store):
        r = store.commit([Put("gateway", "a", {})])
        store.commit([Delete("gateway", "a", r)])
        assert store.get("gateway", "a") is None

    def test_delete_missing_is_not_found(self, store):
        with pytest.raises(NotFound):
            store.commit([Delete("gateway", "ghost")])
        with pytest.raises(NotFound):
            store.commit([Delete("gateway", "ghost", 3)])

    def test_stale_delete_is_conflict(self, store):
        r1 = store.commit([Put("gateway", "a", {"v": 1})])
        store.commit([Put("gateway", "a", {"v": 2})])
        with pytest.raises(Conflict):
            store.commit([Delete("gateway", "a", r1)])
        assert store.get("gateway", "a").value == {"v": 2}

    # -- checks and atomicity ---------------------------------------------------------

    def test_check_guards_the_whole_commit(self, store):
        meta = store.commit([Put("meta", "desired", {})])
        store.commit([Check("meta", "desired", meta), Put("policy", "p", {"v": 1})])
        assert store.get("policy", "p") is not None
        with pytest.raises(Conflict) as err:
            store.commit([Check("meta", "desired", meta - 1), Put("policy", "q", {"v": 1})])
        assert (err.value.kind, err.value.name) == ("meta", "desired")
        assert store.get("policy", "q") is None

    def test_check_absent(self, store):
        store.commit([Check("gateway", "none", 0), Put("gateway", "x", {})])
        with pytest.raises(Conflict):
            store.commit([Check("gateway", "x", 0), Put("gateway", "y", {})])
        assert store.get("gateway", "y") is None

    def test_failure_names_the_failing_op(self, store):
        r = store.commit([Put("gateway", "a", {}), Put("policy", "p", {})])
        with pytest.raises(NotFound) as err:
            store.commit([Put("gateway", "a", {"v": 2}, r), Delete("policy", "nope"), Put("policy", "p", {"v": 2}, r)])
        assert (err.value.kind, err.value.name) == ("policy", "nope")
        assert store.get("gateway", "a").value == {}

    def test_concurrent_writers_one_wins(self, store):
        r = store.commit([Put("policy", "p", {"n": 0})])
        results: list[str] = []

        def writer(i):
            try:
                store.commit([Put("policy", "p", {"n": i}, r)])
                results.append("ok")
            except Conflict:
                results.append("conflict")

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(1, 6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["conflict"] * 4 + ["ok"]

    # -- snapshots -------------------------------------------------------------------------

    def test_snapshot_and_list(self, store):
        store.commit([Put("gateway", "b", {"i": 2}), Put("gateway", "a", {"i": 1}), Put("policy", "p", {})])
        rev = store.commit([Put("event", "policy/p/UnknownEgressIP", {"count": 1})])
        snap = store.snapshot(["gateway", "event", "node"])
        assert snap.revision >= rev
        assert sorted(snap.of("gateway")) == ["a", "b"]
        assert snap.of("event")["policy/p/UnknownEgressIP"].value == {"count": 1}
        assert snap.of("node") == {}
        assert "policy" not in snap.records
        assert [r.name for r in store.list("gateway")] == ["a", "b"]

    # -- watch -------------------------------------------------------------------------------

    def test_watch_delivers_each_commit_in_order(self, store):
        rec = Recorder()
        cancel = store.watch(["gateway", "policy"], rec)
        try:
            r1 = store.commit([Put("gateway", "a", {}), Put("policy", "p", {})])
            store.commit([Put("pod", "ignored", {})])
            r2 = store.commit([Delete("policy", "p")])
            wait_for(lambda: len(rec.calls) >= 2, what="two watch callbacks")
            assert rec.revisions() == [r1, r2]
            assert sorted(rec.flat()[:2]) == [("gateway", "a", False), ("policy", "p", False)]
            assert rec.flat()[2:] == [("policy", "p", True)]
            assert rec.calls[0][1][0].record.version == r1
        finally:
            cancel()

    def test_watch_from_revision_replays(self, store):
        r0 = store.commit([Put("gateway", "a", {"v": 0})])
        store.commit([Put("gateway", "a", {"v": 1})])
        store.commit([Put("gateway", "b", {"v": 1})])
        rec = Recorder()
        cancel = store.watch(["gateway"], rec, start_revision=r0)
        try:
            wait_for(lambda: len(rec.calls) >= 2, what="replayed changes")
            assert rec.flat() == [("gateway", "a", False), ("gateway", "b", False)]
        finally:
            cancel()

    def test_cancelled_watch_gets_nothing_more(self, store):
        rec = Recorder()
        cancel = store.watch(["gateway"], rec)
        store.commit([Put("gateway", "a", {})])
        wait_for(lambda: rec.calls, what="first change")
        cancel()
        store.commit([Put("gateway", "b", {})])
        time.sleep(0.3)
        assert rec.flat() == [("gateway", "a", False)]

    def test_healthy(self, store):
        ok, detail = store.healthy()
        assert ok, detail
