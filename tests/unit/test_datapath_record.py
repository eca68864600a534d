"""node.record.DatapathRecord: the datapath record's value, typed, and the waiter that keeps them."""

from __future__ import annotations

from egress_agent.node.record import DatapathRecord
from egress_agent.node.status import ClusterCounters, ProgrammedWaiter, publish
from egress_agent.store.sqlite import SqliteStore


def test_a_record_round_trips_through_the_stores_json():
    rec = DatapathRecord(7, {"alice/fe1": "no interface"}, "", {"egress": (3, 300, 1)}, {"192.0.2.100": (2, 200)})
    assert DatapathRecord.from_value(rec.to_value()) == rec
    assert DatapathRecord.from_value({}) == DatapathRecord()  # a record written by an older agent: all defaults


def test_the_waiter_keeps_the_newer_record_and_counters_sum_over_nodes(tmp_path):
    store = SqliteStore(str(tmp_path / "s.db"))
    try:
        publish(store, "worker2", DatapathRecord(5, {}, "", {"egress": (1, 10, 0)}, {}))
        waiter = ProgrammedWaiter(store)
        waiter.start()
        waiter.observe_local("worker1", 9, {})
        waiter.wait("worker1", "alice/fe1", 9, timeout=1)  # known at once, before any publish
        publish(store, "worker1", DatapathRecord(4, {}, "", {"egress": (2, 20, 0)}, {}))  # older than 9: kept out
        waiter.wait("worker2", "alice/fe1", 5, timeout=1)
        assert waiter.records()["worker1"].applied_revision == 9
        counters = ClusterCounters(waiter.records, "worker1", lambda: {"steered": {"egress": [4, 40, 0]},
                                                                       "translated": {}})
        assert counters("egress", "192.0.2.100")["steered_packets"] == 5  # worker2's 1 + worker1's live 4
        waiter.stop()
    finally:
        store.close()
