"""EtcdStore behaviour beyond the shared contract: several clients, failover, outages, compaction."""

import time

import pytest
import requests

from egress_agent.store.etcd_client import b64
from egress_agent.store.base import Delete, Put, Unavailable, batches
from egress_agent.store.etcd import EtcdStore
from helpers.etcd import make_cluster
from helpers.store_contract import Recorder, wait_for

pytestmark = pytest.mark.etcd


def compact(endpoint: str, revision: int) -> None:
    r = requests.post(endpoint + "/v3/kv/compaction", json={"revision": str(revision), "physical": True}, timeout=5)
    r.raise_for_status()


def test_watch_sees_writes_from_another_client(etcd, prefix):
    reader, writer = EtcdStore(etcd.endpoints, prefix), EtcdStore(etcd.endpoints, prefix)
    rec = Recorder()
    cancel = reader.watch(["policy"], rec)
    try:
        rev = writer.commit([Put("policy", "p", {"egress_source_ip": "192.0.2.100"})])
        wait_for(lambda: rec.calls, what="the other client's write")
        assert rec.calls[0][0] == rev
        assert rec.calls[0][1][0].record.value == {"egress_source_ip": "192.0.2.100"}
        assert reader.get("policy", "p").version == rev
    finally:
        cancel()
        reader.close()
        writer.close()


def test_a_commit_over_the_transaction_limit_is_refused_clearly_and_batches_fit(etcd, prefix):
    store = EtcdStore(etcd.endpoints, prefix)
    try:
        ops = [Put("assignment", f"192.0.2.{i}", {"node": "w1"}, 0) for i in range(200)]
        with pytest.raises(ValueError, match="exceeds etcd's limit of 128 per transaction"):
            store.commit(ops)
        assert store.list("assignment") == []  # nothing written
        guard = [Put("meta", "fence", {})]
        for batch in batches(ops, store.max_commit_ops, guard):
            store.commit(batch)  # each one full-size: etcd accepts exactly its limit
        assert len(store.list("assignment")) == 200
    finally:
        store.close()


def test_prefixes_are_isolated(etcd, prefix):
    a, b = EtcdStore(etcd.endpoints, prefix + "a"), EtcdStore(etcd.endpoints, prefix + "b")
    a.commit([Put("gateway", "default", {"x": 1})])
    assert b.get("gateway", "default") is None
    assert b.list("gateway") == []
    a.close()
    b.close()


def test_bad_prefix_and_endpoint_are_rejected_clearly():
    with pytest.raises(ValueError, match="must start with '/'"):
        EtcdStore(["http://127.0.0.1:2379"], prefix="egress")
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        EtcdStore(["127.0.0.1"])


def test_watch_resumes_after_etcd_restart_without_losing_changes(tmp_path):
    cluster = make_cluster(tmp_path, size=1).start()
    try:
        store = EtcdStore(cluster.endpoints, "/egress")
        rec = Recorder()
        cancel = store.watch(["gateway"], rec)
        r1 = store.commit([Put("gateway", "a", {})])
        wait_for(lambda: rec.calls, what="first change")
        cluster.members[0].stop()
        with pytest.raises(Unavailable):
            store.commit([Put("gateway", "b", {})])
        cluster.restart_member(cluster.members[0])
        r2 = store.commit([Put("gateway", "b", {})])
        r3 = store.commit([Delete("gateway", "a")])
        wait_for(lambda: len(rec.calls) >= 3, what="changes after the restart")
        assert rec.revisions() == [r1, r2, r3]
        assert rec.flat() == [("gateway", "a", False), ("gateway", "b", False), ("gateway", "a", True)]
        cancel()
        store.close()
    finally:
        cluster.close()


def test_watch_relists_after_its_resume_revision_was_compacted(etcd3):
    """The watcher's only endpoint goes away; meanwhile keys change and history is compacted."""
    m0 = etcd3.follower()
    watcher = EtcdStore([m0.url], "/egress")
    writer = EtcdStore([m.url for m in etcd3.members if m is not m0], "/egress")
    writer.commit([Put("policy", "keep", {"v": 1}), Put("policy", "gone", {"v": 1})])
    rec = Recorder()
    cancel = watcher.watch(["policy"], rec)
    m0.kill()
    writer.commit([Delete("policy", "gone")])
    rev = writer.commit([Put("policy", "keep", {"v": 2}), Put("policy", "new", {"v": 1})])
    compact(writer.client.endpoints[0], rev)
    etcd3.restart_member(m0)
    wait_for(lambda: len(rec.flat()) >= 3, timeout=10, what="the re-listed changes")
    assert sorted(rec.flat()) == [("policy", "gone", True), ("policy", "keep", False), ("policy", "new", False)]
    values = {c.record.name: c.record.value for _, cs in rec.calls for c in cs if not c.deleted}
    assert values == {"keep": {"v": 2}, "new": {"v": 1}}
    # ...and the watch carries on normally afterwards.
    writer.commit([Put("policy", "later", {})])
    wait_for(lambda: ("policy", "later", False) in rec.flat(), timeout=10, what="a change after the re-list")
    cancel()
    watcher.close()
    writer.close()


def test_watch_from_a_compacted_revision_relists(etcd, prefix):
    store = EtcdStore(etcd.endpoints, prefix)
    r1 = store.commit([Put("gateway", "a", {})])
    r2 = store.commit([Put("gateway", "a", {"v": 2})])
    compact(etcd.endpoints[0], r2)
    rec = Recorder()
    cancel = store.watch(["gateway"], rec, start_revision=r1)
    wait_for(lambda: rec.calls, what="re-listed state")
    assert rec.calls[0][1][0].record.value == {"v": 2}
    cancel()
    store.close()


def test_one_member_of_three_stopped_still_works(etcd3):
    victim = etcd3.follower()
    first = [victim.url] + [m.url for m in etcd3.members if m is not victim]
    store = EtcdStore(first, "/egress")
    other = EtcdStore(first[::-1], "/egress")
    rec = Recorder()
    cancel = store.watch(["gateway"], rec)
    store.commit([Put("gateway", "a", {})])
    wait_for(lambda: rec.calls, what="first change")
    victim.kill()  # the member both the store and its watch are using
    t0 = time.monotonic()
    rev = store.commit([Put("gateway", "b", {})])
    assert time.monotonic() - t0 < 1
    assert store.get("gateway", "b").version == rev
    other.commit([Put("gateway", "c", {})])
    wait_for(lambda: len(rec.calls) >= 3, timeout=10, what="changes through the other members")
    assert rec.flat() == [("gateway", "a", False), ("gateway", "b", False), ("gateway", "c", False)]
    assert store.healthy() == (True, "")
    cancel()
    store.close()
    other.close()


def test_all_members_stopped_is_unavailable_then_recovers(etcd3):
    store = EtcdStore(etcd3.endpoints, "/egress", timeout=1.0)
    rec = Recorder()
    cancel = store.watch(["gateway"], rec)
    store.commit([Put("gateway", "a", {})])
    etcd3.stop_all()
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="etcd unavailable"):
        store.get("gateway", "a")
    with pytest.raises(Unavailable):
        store.commit([Put("gateway", "b", {})])
    ok, detail = store.healthy()
    assert not ok and "etcd unavailable" in detail and etcd3.endpoints[0] in detail
    assert time.monotonic() - t0 < 1
    etcd3.start_all()
    rev = store.commit([Put("gateway", "b", {})])
    assert store.get("gateway", "b").version == rev
    assert store.healthy() == (True, "")
    wait_for(lambda: ("gateway", "b", False) in rec.flat(), timeout=10, what="a change after recovery")
    cancel()
    store.close()


def test_stored_layout_is_prefix_kind_name_json(etcd, prefix):
    """Other tools (etcdctl, backups) see plain JSON under <prefix>/<kind>/<name>."""
    store = EtcdStore(etcd.endpoints, prefix)
    rev = store.commit([Put("event", "policy/p/UnknownEgressIP", {"count": 2})])
    r = requests.post(etcd.endpoints[0] + "/v3/kv/range", json={"key": b64(f"{prefix}/event/policy/p/UnknownEgressIP")}, timeout=5)
    kv = r.json()["kvs"][0]
    import base64
    import json

    assert json.loads(base64.b64decode(kv["value"])) == {"count": 2}
    assert int(kv["mod_revision"]) == rev
    store.close()


def test_raft_leader_killed_writes_resume_after_etcd_elects_another(etcd3):
    """Killing etcd's own leader stalls writes for its election; a caller that retries gets through."""
    store = EtcdStore(etcd3.endpoints, "/egress", timeout=1.0)
    store.commit([Put("gateway", "a", {})])
    etcd3.raft_leader().kill()
    t0 = time.monotonic()
    while True:
        try:
            rev = store.commit([Put("gateway", "b", {})])
            break
        except Unavailable:
            assert time.monotonic() - t0 < 15, "no write accepted 15 s after the raft leader died"
    assert store.get("gateway", "b").version == rev
    store.close()


def test_tls_with_client_certificates(tmp_path):
    from helpers.etcd import make_tls

    tls = make_tls(tmp_path / "pki")
    cluster = make_cluster(tmp_path / "etcd", size=1, tls=tls).start()
    try:
        store = EtcdStore(cluster.endpoints, "/egress", ca_cert=tls["ca"], cert_file=tls["cert"], key_file=tls["key"])
        rec = Recorder()
        cancel = store.watch(["gateway"], rec)
        rev = store.commit([Put("gateway", "a", {"v": 1})])
        assert store.get("gateway", "a").version == rev
        wait_for(lambda: rec.calls, what="a change over TLS")
        assert store.healthy() == (True, "")
        cancel()
        store.close()
        anonymous = EtcdStore(cluster.endpoints, "/egress", ca_cert=tls["ca"], timeout=1)
        with pytest.raises(Unavailable):
            anonymous.get("gateway", "a")  # etcd requires a client certificate
        anonymous.close()
    finally:
        cluster.close()
