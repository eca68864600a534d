"""Policy.excluded_cidrs and Policy.priority: validated in the models, with the attribute path (issue #12)."""

from __future__ import annotations

import pytest

from egress_api import limits, models

BASE = {"name": "p", "egress": [{}], "destination_cidrs": ["0.0.0.0/0"], "egress_source_ip": "192.0.2.50"}


def violations(**extra) -> list[tuple[str, str]]:
    with pytest.raises(models.InvalidObject) as err:
        models.parse("policy", {**BASE, **extra})
    return [(v.dotted(), v.message) for v in err.value.violations]


def test_defaults_keep_old_records_valid():
    p = models.parse("policy", BASE)
    assert p.priority == 1000 and p.excluded_cidrs == []


def test_exclusions_are_sorted_and_must_lie_inside_a_destination():
    p = models.parse("policy", {**BASE, "destination_cidrs": ["198.51.100.0/24", "10.0.0.0/8"],
                                "excluded_cidrs": ["198.51.100.128/25", "10.1.0.0/16"]})
    assert p.excluded_cidrs == ["10.1.0.0/16", "198.51.100.128/25"]
    [(path, msg)] = violations(destination_cidrs=["198.51.100.0/24"], excluded_cidrs=["203.0.113.0/24"])
    assert path == "excluded_cidrs" and "203.0.113.0/24 lies inside no destination CIDR" in msg
    [(path, msg)] = violations(excluded_cidrs=["0.0.0.0/0"])
    assert path == "excluded_cidrs" and "also a destination CIDR" in msg
    [(path, msg)] = violations(excluded_cidrs=["10.0.0.0/8", "10.0.0.0/8"])
    assert path == "excluded_cidrs" and "listed twice" in msg
    [(path, msg)] = violations(excluded_cidrs=["10.0.0.1/8"])
    assert path == "excluded_cidrs.0" and "host bits" in msg


def test_priority_is_a_whole_number_in_range():
    assert models.parse("policy", {**BASE, "priority": 0}).priority == 0
    assert models.parse("policy", {**BASE, "priority": limits.MAX_PRIORITY}).priority == limits.MAX_PRIORITY
    assert violations(priority=-1) == [("priority", "must be between 0 and 65,535 (lower wins), got -1")]
    assert violations(priority=limits.MAX_PRIORITY + 1)[0][0] == "priority"
    assert violations(priority="high") == [("priority", "must be a whole number")]


def test_a_pending_destination_defers_the_exclusion_check():
    p = models.Policy.model_validate({**BASE, "destination_cidrs": [models.Pending()], "excluded_cidrs": ["10.0.0.0/8"]})
    assert p.excluded_cidrs == ["10.0.0.0/8"]


def test_equal_priority_overlaps_name_both_policies():
    a = models.parse("policy", {**BASE, "name": "a", "destination_cidrs": ["198.51.100.0/24"]})
    b = models.parse("policy", {**BASE, "name": "b", "destination_cidrs": ["198.51.100.0/28"], "egress_source_ip": "192.0.2.51"})
    c = models.parse("policy", {**BASE, "name": "c", "destination_cidrs": ["198.51.100.0/28"], "egress_source_ip": "192.0.2.52",
                                "priority": 10})
    [v] = models.equal_priority_overlaps(a, [a, b, c])
    assert v.path == ("priority",) and "'a' and 'b'" in v.message and "198.51.100.0/28" in v.message
    assert models.equal_priority_overlaps(c, [a, b]) == []


def test_many_equal_priority_overlaps_are_one_warning():
    """An estate of N policies to one partner must not print N^2 warnings: one per policy, naming five."""
    mine = models.parse("policy", {**BASE, "name": "p0", "destination_cidrs": ["198.51.100.0/24"]})
    others = [models.parse("policy", {**BASE, "name": f"p{i}", "destination_cidrs": ["198.51.100.0/24"],
                                      "egress_source_ip": f"192.0.2.{i}"}) for i in range(1, 9)]
    [v] = models.equal_priority_overlaps(mine, [mine, *others])
    assert v.path == ("priority",)
    assert "like other policies" in v.message and "'p1' (198.51.100.0/24)" in v.message and "and more" in v.message
    assert "'p5' (198.51.100.0/24)" in v.message and "'p6'" not in v.message
