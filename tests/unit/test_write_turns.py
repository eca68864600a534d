"""Turns between agents' writers (server.writes, TURN): two Writes on one real sqlite store play two agents.

An agent whose groups keep losing the guard claims the next turn; the other agents hold their groups until
the claimant commits (its commit deletes the claim), or until they have seen the same claim for _TURN_S by
their own clock (a claimant that died). A claim never replaces another agent's live one.
"""

from __future__ import annotations

import threading

import pytest

from egress_agent.server import writes as W
from egress_agent.server.writes import TURN, Writes
from egress_agent.store.base import META
from egress_agent.store.sqlite import SqliteStore
from egress_api import models


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "s.db"))
    yield s
    s.close()


def claim_of(store) -> str | None:
    rec = store.snapshot([META]).of(META).get(TURN)
    return rec.value["node"] if rec else None


def gateway(name: str, ip: str) -> models.Gateway:
    return models.Gateway(name=name, floating_ips=[ip])


def test_a_claim_holds_the_other_agents_until_its_holder_commits(store, monkeypatch):
    monkeypatch.setattr(W, "_TURN_S", 30.0)  # only a's commit can let b through
    a, b = Writes(store, "a"), Writes(store, "b")
    a._claim_turn(None)
    assert claim_of(store) == "a"
    done = threading.Event()
    t = threading.Thread(target=lambda: (b.create(gateway("gb", "192.0.2.101")), done.set()))
    t.start()
    try:
        assert not done.wait(0.3), "b wrote during a's turn"
        assert b.yields > 0
        a.create(gateway("ga", "192.0.2.100"))  # a's turn: its commit hands the turn back
        assert done.wait(5), "b still held after a's commit"
    finally:
        t.join(timeout=10)
    assert claim_of(store) is None
    assert {r.name for r in store.snapshot(["gateway"]).of("gateway").values()} == {"ga", "gb"}


def test_a_claim_lapses_for_the_others_after_turn_s(store, monkeypatch):
    monkeypatch.setattr(W, "_TURN_S", 0.2)
    a, b = Writes(store, "a"), Writes(store, "b")
    a._claim_turn(None)  # and then a dies
    b.create(gateway("gb", "192.0.2.101"))
    assert b.yields > 0 and claim_of(store) == "a"  # held, then went ahead; the stale claim is a's to delete


@pytest.mark.parametrize("turn_s, holder", [(30.0, "a"), (0.0, "b")], ids=["live-claim-kept", "lapsed-claim-taken"])
def test_a_claim_replaces_only_a_lapsed_one(store, monkeypatch, turn_s, holder):
    monkeypatch.setattr(W, "_TURN_S", turn_s)
    a, b = Writes(store, "a"), Writes(store, "b")
    a._claim_turn(None)
    b._claim_turn(store.snapshot([META]).of(META).get(TURN))
    assert claim_of(store) == holder


def test_one_agent_alone_never_claims(store):
    w = Writes(store, "a")
    for i in range(5):
        w.create(gateway(f"g{i}", f"192.0.2.{100 + i}"))
    assert claim_of(store) is None and w.yields == 0
