"""Conditions of policies and gateways: Ready, IPAssigned, Programmed. Pure functions of store records.

As Kubernetes API conventions have it, each condition is a type, a status
(True / False / Unknown), a CamelCase reason, a sentence an operator can act
on, and the time its status last changed:

- **IPAssigned**: a policy's `egress_source_ip` has a holder; a gateway's
  floating IPs all do (else which do not, and why, from the assignment).
- **Programmed**: every Up node running the kernel datapath has applied the
  store revision that last changed the object or its assignment (its
  `datapath` record's `applied_revision`); Unknown where no node runs one.
- **Ready**: both of the above; otherwise the reason of the first that is not.

The status is computed on every read from the records the read takes, so it
is never stale. Only the transition times need memory: the leader keeps them
in `condition/<kind>:<name>` records (`ConditionWriter`), and a read takes a
stored time while the stored status still matches.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Mapping, Optional

from egress_agent.node.record import DatapathRecord
from egress_agent.store.assignment import AssignmentRecord
from egress_agent.store.base import Record
from egress_api.status import Condition

READY, IP_ASSIGNED, PROGRAMMED = "Ready", "IPAssigned", "Programmed"
TYPES = (READY, IP_ASSIGNED, PROGRAMMED)
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
SHOWN = 3  # nodes or IPs named in a message before "and N more"


def record_name(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _listed(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def programmed(revision: int, datapaths: Mapping[str, DatapathRecord], up: Iterable[str]) -> Condition:
    """Whether every Up node with a datapath has applied `revision`."""
    nodes = sorted(n for n in set(up) if n in datapaths)
    if not nodes:
        return Condition(PROGRAMMED, UNKNOWN, "NoDatapath", "no Up node runs the kernel datapath (--datapath kernel)")
    failing = [f"{n}: {datapaths[n].error}" for n in nodes if datapaths[n].error]
    if failing:
        return Condition(PROGRAMMED, FALSE, "ApplyFailed", "applying the datapath failed on " + _listed(failing))
    behind = [n for n in nodes if datapaths[n].applied_revision < revision]
    if behind:
        return Condition(PROGRAMMED, FALSE, "Pending", f"not yet applied on {_listed(behind)} "
                         f"({len(nodes) - len(behind)} of {len(nodes)} nodes have)")
    return Condition(PROGRAMMED, TRUE, "Applied", f"applied on every Up node ({len(nodes)})")


def _ready(assigned: Condition, applied: Condition) -> Condition:
    for c in (assigned, applied):
        if c.status == FALSE:
            return Condition(READY, FALSE, c.reason, c.message)
    if applied.status == UNKNOWN:
        return Condition(READY, TRUE, "AssignedNoDatapath", assigned.message + "; no node runs the kernel datapath")
    return Condition(READY, TRUE, "Ready", f"{assigned.message}; {applied.message}")


def policy_conditions(policy: Record, assignments: Mapping[str, Record], datapaths: Mapping[str, DatapathRecord],
                      up: Iterable[str]) -> list[Condition]:
    ip = policy.value.get("egress_source_ip", "")
    rec = assignments.get(ip)
    assignment = AssignmentRecord.of(rec)
    if assignment.node:
        assigned = Condition(IP_ASSIGNED, TRUE, "Assigned", f"{ip} is held by {assignment.node}")
    elif rec is None:
        assigned = Condition(IP_ASSIGNED, FALSE, "NotAFloatingIP", f"{ip} is not a floating IP of any gateway: "
                             "its traffic is dropped (fail closed)")
    else:
        why = assignment.reason or "not assigned yet: waiting for the controller"
        assigned = Condition(IP_ASSIGNED, FALSE, "Unassigned", f"no node holds {ip}: {why}")
    revision = max(policy.version, rec.version if rec is not None else 0)
    applied = programmed(revision, datapaths, up)
    return [_ready(assigned, applied), assigned, applied]


def gateway_conditions(gateway: Record, assignments: Mapping[str, Record], datapaths: Mapping[str, DatapathRecord],
                       up: Iterable[str]) -> list[Condition]:
    ips = list(gateway.value.get("floating_ips", []))
    records = [assignments.get(ip) for ip in ips]
    free = [ip for ip, rec in zip(ips, records) if not AssignmentRecord.of(rec).node]
    if not ips:
        assigned = Condition(IP_ASSIGNED, FALSE, "NoFloatingIPs", "the gateway lists no floating IP")
    elif free:
        reasons = [f"{ip} ({AssignmentRecord.of(assignments.get(ip)).reason or 'waiting for the controller'})"
                   for ip in free]
        assigned = Condition(IP_ASSIGNED, FALSE, "Unassigned",
                             f"{len(free)} of {len(ips)} floating IPs have no holder: {_listed(reasons)}")
    else:
        assigned = Condition(IP_ASSIGNED, TRUE, "Assigned", f"all {len(ips)} floating IPs have a holder")
    revision = max([gateway.version, *(r.version for r in records if r is not None)])
    applied = programmed(revision, datapaths, up)
    return [_ready(assigned, applied), assigned, applied]


def with_times(conditions: list[Condition], stored: Optional[Record], now: float) -> list[Condition]:
    """Each condition with its last transition time: the stored one while the stored status is the same,
    else `now` (its status changed, or nothing was stored yet)."""
    kept = dict(stored.value) if stored is not None else {}
    out = []
    for c in conditions:
        prev = kept.get(c.type) or {}
        same = prev.get("status") == c.status and prev.get("time")
        out.append(Condition(c.type, c.status, c.reason, c.message, prev["time"] if same else rfc3339(now)))
    return out


def stored_value(conditions: list[Condition]) -> dict:
    """What the condition record keeps: status and transition time per type (reason and message are
    computed on read, so they change without a write)."""
    return {c.type: {"status": c.status, "time": c.last_transition_time} for c in conditions}
