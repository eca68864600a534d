"""The assignment record's value type (store/assignment.py): the controller writes what every reader reads."""

from egress_agent.store.assignment import AssignmentRecord, held_by, holder_of, holders
from egress_agent.store.base import ASSIGNMENT, Record


def rec(ip: str, **value) -> Record:
    return Record(ASSIGNMENT, ip, value, 1)


def test_round_trip_and_defaults():
    a = AssignmentRecord("worker1", "default", "")
    assert AssignmentRecord.from_value(a.to_value()) == a
    assert AssignmentRecord.of(None) == AssignmentRecord()  # no record yet: unassigned, no reason
    # Records written before a field existed (or with null) read as empty strings, never None.
    assert AssignmentRecord.from_value({"node": None}) == AssignmentRecord()


def test_lookups_by_ip_and_node():
    records = {"192.0.2.100": rec("192.0.2.100", node="worker1", gateway="default", reason=""),
               "192.0.2.101": rec("192.0.2.101", node="", gateway="default", reason="no Up node in its subnet"),
               "192.0.2.102": rec("192.0.2.102", node="worker1", gateway="other", reason="")}
    assert holder_of("192.0.2.100", records) == "worker1"
    assert holder_of("192.0.2.101", records) == "" and holder_of("192.0.2.200", records) == ""
    assert holders(records) == {"192.0.2.100": "worker1", "192.0.2.101": "", "192.0.2.102": "worker1"}
    assert held_by(records, "worker1") == {"192.0.2.100", "192.0.2.102"}
    assert AssignmentRecord.of(records["192.0.2.101"]).reason == "no Up node in its subnet"
