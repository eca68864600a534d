"""Events on objects, folded like kubectl: a repeat bumps `count` and `timestamp`.

An event record is keyed by object, reason and message, so two different
problems with one object stay two lines while a repeat of the same one folds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

from egress_agent.store.base import EVENT, Put, Record

NORMAL = "Normal"
WARNING = "Warning"

UNKNOWN_EGRESS_IP = "UnknownEgressIP"
FLOATING_IP_SHARED = "FloatingIPShared"
FLOATING_IP_RETAINED = "FloatingIPRetained"
UNASSIGNABLE = "Unassignable"
FLOATING_IP_MOVED = "FloatingIPMoved"


@dataclass(frozen=True)
class EventSpec:
    kind: str  # gateway | policy | node
    name: str
    type: str  # Normal | Warning
    reason: str
    message: str

    def record_name(self) -> str:
        digest = hashlib.sha1(self.message.encode()).hexdigest()[:10]
        return f"{self.kind}/{self.name}/{self.reason}/{digest}"


def record_op(spec: EventSpec, existing: Optional[Record], now: float) -> Put:
    """The write that records `spec` once more (new record, or fold into `existing`)."""
    if existing is None:
        value = {**spec.__dict__, "count": 1, "first_timestamp": now, "timestamp": now}
        return Put(EVENT, spec.record_name(), value, 0)
    value = {**existing.value, "count": int(existing.value.get("count", 1)) + 1, "timestamp": now}
    return Put(EVENT, spec.record_name(), value, existing.version)


def object_of(record: Record) -> tuple[str, str]:
    """(kind, name) of the object an event record is about."""
    return record.value.get("kind", ""), record.value.get("name", "")
