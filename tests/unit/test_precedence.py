"""The precedence rule (egress_api.precedence): resolved LPM entries and ranges agree with the reference."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from egress_api.precedence import (
    OverlapIndex, Rule, equal_priority_overlaps, lookup, ranges, resolve, shadowed, winner,
)

BASE = int(ipaddress.ip_address("198.51.100.0"))  # a /24 is small enough to check every address


def _cidr(draw_bits: tuple[int, int]) -> str:
    length, offset = draw_bits
    host = 32 - length
    return str(ipaddress.ip_network((BASE + ((offset >> host) << host), length)))


cidrs = st.tuples(st.integers(24, 32), st.integers(0, 255)).map(_cidr)


@st.composite
def rule_sets(draw):
    n = draw(st.integers(1, 5))
    rules = []
    for i in range(n):
        dsts = draw(st.sets(cidrs, min_size=1, max_size=4))
        holes = draw(st.sets(cidrs, max_size=3)) - dsts
        rules.append(Rule(f"p{i}", frozenset(dsts), frozenset(holes), draw(st.sampled_from([10, 1000, 1000]))))
    return rules


@settings(max_examples=120, deadline=None)
@given(rule_sets())
def test_resolved_entries_answer_like_the_reference(rules):
    entries = resolve(rules)
    flat = ranges(entries)
    for a in range(BASE, BASE + 256):
        expected = winner(rules, ipaddress.IPv4Address(a))
        assert lookup(entries, ipaddress.IPv4Address(a)) == expected
        in_range = [name for first, last, name in flat if first <= a <= last]
        assert in_range == ([expected] if expected else [])
    # Outside every prefix: nothing.
    assert lookup(entries, "203.0.113.1") is None and winner(rules, "203.0.113.1") is None


def test_an_exclusion_carves_a_hole_and_a_destination_inside_it_fills_it():
    r = Rule("a", frozenset({"0.0.0.0/0", "10.244.1.0/24"}), frozenset({"10.244.0.0/16"}))
    assert winner([r], "198.51.100.8") == "a"
    assert winner([r], "10.244.9.9") is None
    assert winner([r], "10.244.1.3") == "a"
    assert lookup(resolve([r]), "10.244.9.9") is None


def test_a_hole_falls_to_the_next_policy_covering_it():
    a = Rule("a", frozenset({"0.0.0.0/0"}), frozenset({"198.51.100.0/24"}), priority=10)
    b = Rule("b", frozenset({"198.51.100.0/24"}), priority=1000)
    assert winner([a, b], "198.51.100.10") == "b"
    assert winner([a, b], "203.0.113.1") == "a"


def test_priority_beats_a_longer_prefix_then_prefix_then_name():
    wide = Rule("wide", frozenset({"198.51.100.0/24"}), priority=10)
    narrow = Rule("narrow", frozenset({"198.51.100.0/28"}), priority=20)
    assert lookup(resolve([wide, narrow]), "198.51.100.10") == "wide"
    assert lookup(resolve([wide, Rule("narrow", frozenset({"198.51.100.0/28"}), priority=10)]), "198.51.100.10") == "narrow"
    assert winner([Rule("b", frozenset({"198.51.100.0/24"})), Rule("a", frozenset({"198.51.100.0/24"}))],
                  "198.51.100.1") == "a"


def test_shadowing_and_equal_priority_overlaps_name_the_other_policy():
    wide = Rule("wide", frozenset({"198.51.100.0/24"}), priority=10)
    narrow = Rule("narrow", frozenset({"198.51.100.0/28"}), priority=20)
    assert shadowed([wide], narrow) == [("198.51.100.0/28", "wide")]
    assert shadowed([narrow], wide) == []
    same = Rule("same", frozenset({"198.51.100.128/25"}), priority=10)
    assert equal_priority_overlaps(wide, [narrow, same]) == [("same", "198.51.100.0/24", "198.51.100.128/25")]


@settings(max_examples=100, deadline=None)
@given(st.sets(cidrs, min_size=1, max_size=5), st.sets(cidrs, min_size=1, max_size=5))
def test_equal_priority_overlap_is_found_exactly_when_some_pair_overlaps(a, b):
    found = equal_priority_overlaps(Rule("a", frozenset(a)), [Rule("b", frozenset(b))])
    any_pair = any(ipaddress.ip_network(x).overlaps(ipaddress.ip_network(y)) for x in a for y in b)
    assert bool(found) == any_pair
    if found:
        _, x, y = found[0]
        assert x in a and y in b and ipaddress.ip_network(x).overlaps(ipaddress.ip_network(y))


# Wide and narrow prefixes, so that supernet lookups (down to /0) and nested starts are both exercised.
any_cidrs = st.one_of(cidrs, st.sampled_from(["0.0.0.0/0", "198.0.0.0/8", "198.51.0.0/16", "198.51.100.0/25",
                                              "203.0.113.0/24", "192.0.2.64/26"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "put", "drop"]), st.integers(0, 5),
                          st.sets(any_cidrs, min_size=1, max_size=4), st.sampled_from([10, 1000])), max_size=14),
       st.sets(any_cidrs, min_size=1, max_size=4), st.sampled_from([10, 1000]))
def test_the_overlap_index_finds_exactly_the_rules_a_pairwise_test_finds(ops, query_dsts, query_priority):
    index, rules = OverlapIndex(), {}
    for op, i, dsts, priority in ops:
        if op == "put":
            rules[f"p{i}"] = Rule(f"p{i}", frozenset(dsts), priority=priority)
            index.put(rules[f"p{i}"])
        else:
            rules.pop(f"p{i}", None)
            index.drop(f"p{i}")
    query = Rule("p0", frozenset(query_dsts), priority=query_priority)  # as p0's next version: itself excluded
    expected = {r.name for r in rules.values() if r.name != "p0" and r.priority == query_priority
                and any(ipaddress.ip_network(x).overlaps(ipaddress.ip_network(y))
                        for x in r.destinations for y in query.destinations)}
    assert index.overlapping(query) == expected


@settings(max_examples=80, deadline=None)
@given(rule_sets())
def test_shadowed_names_exactly_the_policies_that_win_addresses_a_policy_covers(rules):
    rule = rules[0]
    expected = set()
    for a in range(BASE, BASE + 256):
        address = ipaddress.IPv4Address(a)
        w = winner(rules, address)
        if w not in (None, rule.name) and winner([rule], address) == rule.name:
            expected.add(w)
    assert {name for _, name in shadowed(rules, rule)} == expected
