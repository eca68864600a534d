"""store.base.batches: independent writes cut into commits that fit a store's transaction limit."""

import pytest

from egress_agent.store.base import Check, Put, batches

GUARD = [Check("election", "leader", 7)]


def puts(n):
    return [Put("assignment", f"192.0.2.{i}", {"node": "w1"}, 0) for i in range(n)]


def test_no_limit_or_small_enough_is_one_commit():
    assert batches(puts(300), None, GUARD) == [[*GUARD, *puts(300)]]
    assert batches(puts(127), 128, GUARD) == [[*GUARD, *puts(127)]]


def test_every_batch_carries_the_guard_and_stays_under_the_limit_in_order():
    out = batches(puts(300), 128, GUARD)
    assert [len(b) for b in out] == [128, 128, 47]
    assert all(b[0] == GUARD[0] for b in out)
    assert [op for b in out for op in b[1:]] == puts(300)


def test_a_guard_that_fills_the_limit_is_refused():
    with pytest.raises(ValueError, match="no room"):
        batches(puts(3), 1, GUARD)
