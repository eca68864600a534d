"""SqliteStore against the Store contract: atomic commits, Check, conflicts, persistence, watch order."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from egress_agent.store import base
from egress_agent.store.base import Check, Delete, Put
from egress_agent.store.sqlite import SqliteStore


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


def test_put_get_and_versions_are_revisions(store):
    r1 = store.commit([Put("gateway", "a", {"floating_ips": ["192.0.2.100"]})])
    r2 = store.commit([Put("gateway", "b", {"x": 1}), Put("policy", "p", {"y": [1, 2]})])
    assert (r1, r2) == (1, 2)
    assert store.get("gateway", "a") == base.Record("gateway", "a", {"floating_ips": ["192.0.2.100"]}, 1)
    assert store.get("policy", "p").version == 2
    assert store.get("gateway", "nope") is None
    assert [r.name for r in store.list("gateway")] == ["a", "b"]


def test_create_only_and_expected_versions(store):
    store.commit([Put("gateway", "a", {}, base.MUST_NOT_EXIST)])
    with pytest.raises(base.AlreadyExists):
        store.commit([Put("gateway", "a", {}, base.MUST_NOT_EXIST)])
    with pytest.raises(base.Conflict) as info:
        store.commit([Put("gateway", "a", {"v": 2}, 7)])
    assert (info.value.expected, info.value.actual) == (7, 1)
    assert "re-read it and retry" in str(info.value)
    with pytest.raises(base.NotFound):
        store.commit([Put("gateway", "missing", {}, 3)])
    rev = store.commit([Put("gateway", "a", {"v": 2}, 1)])
    assert store.get("gateway", "a").version == rev


def test_delete_semantics(store):
    store.commit([Put("policy", "p", {})])
    with pytest.raises(base.NotFound):
        store.commit([Delete("policy", "missing")])
    with pytest.raises(base.Conflict):
        store.commit([Delete("policy", "p", expect_version=99)])
    store.commit([Delete("policy", "p", expect_version=1)])
    assert store.get("policy", "p") is None


def test_check_guards_the_whole_commit(store):
    store.commit([Put("meta", "desired", {})])  # version 1
    with pytest.raises(base.Conflict) as info:
        store.commit([Check("meta", "desired", 0), Put("gateway", "a", {})])
    assert info.value.kind == "meta"
    assert store.get("gateway", "a") is None
    store.commit([Check("meta", "desired", 1), Check("gateway", "a", 0), Put("gateway", "a", {})])
    assert store.get("gateway", "a") is not None


def test_check_only_commit_writes_nothing(store):
    store.commit([Put("gateway", "a", {})])
    assert store.commit([Check("gateway", "a", 1)]) == 1
    assert store.revision() == 1


def test_failed_commit_is_atomic(store):
    store.commit([Put("gateway", "a", {"v": 1})])
    with pytest.raises(base.AlreadyExists):
        store.commit([Put("gateway", "b", {"v": 1}), Put("gateway", "a", {"v": 2}, base.MUST_NOT_EXIST)])
    assert store.get("gateway", "b") is None
    assert store.get("gateway", "a").value == {"v": 1}
    assert store.revision() == 1


def test_ops_in_one_commit_see_each_other(store):
    rev = store.commit([Put("gateway", "a", {}, base.MUST_NOT_EXIST), Delete("gateway", "a", expect_version=None)])
    assert store.get("gateway", "a") is None and rev == 1


def test_snapshot_reads_one_revision(store):
    store.commit([Put("gateway", "a", {}), Put("policy", "p", {}), Put("node", "n", {})])
    snap = store.snapshot(["gateway", "policy", "meta"])
    assert snap.revision == 1
    assert set(snap.of("gateway")) == {"a"} and set(snap.of("policy")) == {"p"}
    assert snap.of("meta") == {} and snap.of("node") == {}


def test_persists_across_reopen(tmp_path):
    path = str(tmp_path / "state.db")
    s = SqliteStore(path)
    s.commit([Put("gateway", "a", {"floating_ips": ["192.0.2.100"]})])
    s.commit([Put("policy", "p", {"k": "v"})])
    s.close()
    s = SqliteStore(path)
    try:
        assert s.get("gateway", "a").value == {"floating_ips": ["192.0.2.100"]}
        assert s.revision() == 2
        assert s.commit([Put("policy", "q", {})]) == 3  # the revision counter survives too
    finally:
        s.close()


def test_files_are_private(tmp_path):
    s = SqliteStore(str(tmp_path / "state.db"))
    s.commit([Put("gateway", "a", {})])
    try:
        for f in tmp_path.iterdir():
            assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    finally:
        s.close()


def test_concurrent_guarded_writers_serialise(store):
    """Many threads doing read-check-write on one guard: exactly one wins each round."""
    store.commit([Put("meta", "desired", {"n": 0})])
    wins = []

    def writer(i):
        for _ in range(50):
            rec = store.get("meta", "desired")
            try:
                store.commit([Check("meta", "desired", rec.version), Put("meta", "desired", {"n": rec.value["n"] + 1})])
                wins.append(i)
                return
            except base.Conflict:
                continue

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(wins) == list(range(8))
    assert store.get("meta", "desired").value == {"n": 8}  # no lost update


def test_watch_delivers_in_revision_order_filtered_by_kind(store):
    seen = []
    done = threading.Event()

    def cb(rev, changes):
        seen.append((rev, [(c.record.kind, c.record.name, c.deleted) for c in changes]))
        if rev == 4:
            done.set()

    cancel = store.watch(["gateway"], cb)
    store.commit([Put("gateway", "a", {}), Put("policy", "p", {})])
    store.commit([Put("policy", "q", {})])  # not a watched kind: no callback
    store.commit([Put("gateway", "b", {})])
    store.commit([Delete("gateway", "a")])
    assert done.wait(5)
    assert seen == [
        (1, [("gateway", "a", False)]),
        (3, [("gateway", "b", False)]),
        (4, [("gateway", "a", True)]),
    ]
    cancel()
    store.commit([Put("gateway", "c", {})])
    store.commit([Put("policy", "marker", {})])
    flushed = threading.Event()
    store.watch(["policy"], lambda rev, ch: flushed.set())
    store.commit([Put("policy", "marker2", {})])
    assert flushed.wait(5)
    assert seen[-1][0] == 4  # nothing after cancel


def test_watch_from_a_snapshot_revision_replays_the_gap(store):
    store.commit([Put("gateway", "a", {})])
    snap = store.snapshot(["gateway"])
    store.commit([Put("gateway", "b", {})])  # happens between snapshot and watch
    seen = []
    got = threading.Event()

    def cb(rev, changes):
        seen.append(rev)
        if rev == 3:
            got.set()

    store.watch(["gateway"], cb, start_revision=snap.revision)
    store.commit([Put("gateway", "c", {})])
    assert got.wait(5)
    assert seen == [2, 3]


def test_slow_watcher_does_not_block_commits(store):
    release = threading.Event()
    store.watch(["gateway"], lambda rev, ch: release.wait(5))
    for i in range(20):
        store.commit([Put("gateway", f"g{i}", {})])
    assert store.revision() == 20
    release.set()


def test_healthy(store):
    assert store.healthy() == (True, "")


from helpers.store_contract import StoreContract  # noqa: E402


class TestSqliteStoreContract(StoreContract):
    """The contract every backend passes unchanged (shared with the etcd store)."""

    @pytest.fixture
    def store(self, tmp_path):
        s = SqliteStore(str(tmp_path / "contract.db"))
        yield s
        s.close()
