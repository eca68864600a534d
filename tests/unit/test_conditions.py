"""Conditions (Ready, IPAssigned, Programmed): pure functions of the records, and their transition times."""

from __future__ import annotations

from egress_agent.controller import conditions as cond
from egress_agent.node.record import DatapathRecord
from egress_agent.store.base import ASSIGNMENT, CONDITION, GATEWAY, POLICY, Record

POLICY_REC = Record(POLICY, "egress", {"egress_source_ip": "192.0.2.100"}, version=10)
GATEWAY_REC = Record(GATEWAY, "default", {"floating_ips": ["192.0.2.100", "192.0.2.101"]}, version=8)


def assignment(ip: str, node: str, version: int, reason: str = "") -> Record:
    return Record(ASSIGNMENT, ip, {"node": node, "gateway": "default", **({"reason": reason} if reason else {})},
                  version)


def by_type(conditions) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in conditions}


def test_a_policy_held_and_applied_everywhere_is_ready():
    assignments = {"192.0.2.100": assignment("192.0.2.100", "worker1", 12)}
    datapaths = {"worker1": DatapathRecord(12), "worker2": DatapathRecord(15)}
    got = cond.policy_conditions(POLICY_REC, assignments, datapaths, ["worker1", "worker2"])
    assert by_type(got) == {"Ready": ("True", "Ready"), "IPAssigned": ("True", "Assigned"),
                            "Programmed": ("True", "Applied")}
    assert got[1].message == "192.0.2.100 is held by worker1"


def test_programmed_waits_for_the_newer_of_the_policy_and_its_assignment_on_up_nodes_only():
    assignments = {"192.0.2.100": assignment("192.0.2.100", "worker1", 12)}
    datapaths = {"worker1": DatapathRecord(11), "worker2": DatapathRecord(12), "worker3": DatapathRecord(1)}
    got = cond.policy_conditions(POLICY_REC, assignments, datapaths, ["worker1", "worker2"])  # worker3 is Down
    assert by_type(got)["Programmed"] == ("False", "Pending")
    assert got[2].message == "not yet applied on worker1 (1 of 2 nodes have)"
    assert by_type(got)["Ready"] == ("False", "Pending")


def test_a_failed_apply_and_no_datapath_at_all():
    assignments = {"192.0.2.100": assignment("192.0.2.100", "worker1", 12)}
    failed = cond.policy_conditions(POLICY_REC, assignments, {"worker1": DatapathRecord(20, error="nft: boom")},
                                    ["worker1"])
    assert by_type(failed)["Programmed"] == ("False", "ApplyFailed") and "worker1: nft: boom" in failed[2].message
    none = cond.policy_conditions(POLICY_REC, assignments, {}, ["worker1"])
    assert by_type(none) == {"Ready": ("True", "AssignedNoDatapath"), "IPAssigned": ("True", "Assigned"),
                             "Programmed": ("Unknown", "NoDatapath")}


def test_unassigned_and_not_a_floating_ip_say_why():
    unassigned = {"192.0.2.100": assignment("192.0.2.100", "", 12, reason="every node in its subnet is Down")}
    got = cond.policy_conditions(POLICY_REC, unassigned, {}, [])
    assert by_type(got)["IPAssigned"] == ("False", "Unassigned")
    assert got[1].message == "no node holds 192.0.2.100: every node in its subnet is Down"
    assert by_type(got)["Ready"] == ("False", "Unassigned")
    unknown = cond.policy_conditions(POLICY_REC, {}, {}, [])
    assert by_type(unknown)["IPAssigned"] == ("False", "NotAFloatingIP")


def test_a_gateway_is_assigned_when_every_ip_has_a_holder():
    half = {"192.0.2.100": assignment("192.0.2.100", "worker1", 9),
            "192.0.2.101": assignment("192.0.2.101", "", 9, reason="no node's subnet contains 192.0.2.101")}
    got = cond.gateway_conditions(GATEWAY_REC, half, {"worker1": DatapathRecord(9)}, ["worker1"])
    assert by_type(got)["IPAssigned"] == ("False", "Unassigned")
    assert got[1].message == "1 of 2 floating IPs have no holder: 192.0.2.101 (no node's subnet contains 192.0.2.101)"
    full = {**half, "192.0.2.101": assignment("192.0.2.101", "worker1", 14)}
    got = cond.gateway_conditions(GATEWAY_REC, full, {"worker1": DatapathRecord(13)}, ["worker1"])
    assert by_type(got) == {"Ready": ("False", "Pending"), "IPAssigned": ("True", "Assigned"),
                            "Programmed": ("False", "Pending")}


def test_transition_times_are_kept_while_the_status_is_the_same():
    computed = cond.policy_conditions(POLICY_REC, {"192.0.2.100": assignment("192.0.2.100", "worker1", 12)},
                                      {"worker1": DatapathRecord(11)}, ["worker1"])
    first = cond.with_times(computed, None, 1_000_000.0)
    assert {c.last_transition_time for c in first} == {"1970-01-12T13:46:40Z"}
    stored = Record(CONDITION, "policy:egress", cond.stored_value(first), 1)
    # Later: still Pending (same status, another message would not matter), then applied.
    again = cond.with_times(computed, stored, 1_000_100.0)
    assert again == first
    applied = cond.policy_conditions(POLICY_REC, {"192.0.2.100": assignment("192.0.2.100", "worker1", 12)},
                                     {"worker1": DatapathRecord(12)}, ["worker1"])
    later = {c.type: c.last_transition_time for c in cond.with_times(applied, stored, 1_000_200.0)}
    assert later == {"Ready": "1970-01-12T13:50:00Z", "IPAssigned": "1970-01-12T13:46:40Z",
                     "Programmed": "1970-01-12T13:50:00Z"}
