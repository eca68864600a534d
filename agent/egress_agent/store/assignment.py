"""The value of an `assignment/<floating IP>` record, as a type: what its one writer and its readers agree on.

The leader's controller writes one record per floating IP (controller/reconcile.py): which node holds
it (`node`, "" when no node can), for which gateway, and why it is unassigned (`reason`). Fencing, the
node's datapath pass, the effective-IP world, the views and the metrics read it. In the store it is plain
JSON (`to_value`, `of`); in memory it is this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from egress_agent.store.base import Record


@dataclass(frozen=True)
class AssignmentRecord:
    node: str = ""  # the holder; "" while no node can take the IP
    gateway: str = ""  # the gateway that lists the IP (or last listed it, for a retained IP)
    reason: str = ""  # why the IP has no holder, "" when it has one

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> "AssignmentRecord":
        return cls(node=str(value.get("node") or ""), gateway=str(value.get("gateway") or ""),
                   reason=str(value.get("reason") or ""))

    @classmethod
    def of(cls, record: Optional[Record]) -> "AssignmentRecord":
        """The assignment a stored record says (no record: unassigned, with no reason yet)."""
        return cls.from_value(record.value) if record is not None else cls()

    def to_value(self) -> dict[str, Any]:
        return {"node": self.node, "gateway": self.gateway, "reason": self.reason}


def holder_of(ip: str, records: Mapping[str, Record]) -> str:
    """The node holding `ip` per the assignment records (by IP), "" when none."""
    return AssignmentRecord.of(records.get(ip)).node


def holders(records: Mapping[str, Record]) -> dict[str, str]:
    """Floating IP -> holding node ("" when unassigned), for every assignment record."""
    return {ip: AssignmentRecord.of(r).node for ip, r in records.items()}


def held_by(records: Mapping[str, Record], node: str) -> set[str]:
    """The floating IPs the assignment records give to `node`."""
    return {ip for ip, r in records.items() if AssignmentRecord.of(r).node == node}
