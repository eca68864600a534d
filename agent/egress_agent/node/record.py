"""The value of a node's `datapath` record, as a type: what its readers and its writer agree on.

Each node running the kernel datapath keeps one record, `datapath/<node>`, in the store. The
reconciler writes it (node/reconciler.py); `status.ProgrammedWaiter` and `status.ClusterCounters`
read it. In the store it is plain JSON (`to_value`, `from_value`); in memory it is this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class DatapathRecord:
    applied_revision: int = 0  # the store revision the node's kernel reflects
    pending: Mapping[str, str] = field(default_factory=dict)  # local pods it could not program -> why
    error: str = ""  # the last apply failure, "" when the last apply worked
    steered: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # policy -> (packets, bytes, dropped)
    translated: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # egress IP -> (packets, bytes)

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> "DatapathRecord":
        return cls(
            applied_revision=int(value.get("applied_revision", 0)),
            pending=dict(value.get("pending") or {}),
            error=str(value.get("error") or ""),
            steered={k: tuple(v) for k, v in (value.get("steered") or {}).items()},
            translated={k: tuple(v) for k, v in (value.get("translated") or {}).items()},
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "applied_revision": self.applied_revision,
            "pending": dict(sorted(self.pending.items())),
            "error": self.error,
            "steered": {k: list(v) for k, v in sorted(self.steered.items())},
            "translated": {k: list(v) for k, v in sorted(self.translated.items())},
        }
