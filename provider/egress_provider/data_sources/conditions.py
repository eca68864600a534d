"""The conditions of an object (Ready, IPAssigned, Programmed) as data source attributes.

Four maps keyed by condition type, since a data source attribute cannot be a list of objects in the
`tf` package: `conditions["Ready"]` is "True", "False" or "Unknown", and the reason, message and last
transition time (RFC 3339) are under the same key. Usable in a `check` block or a `postcondition`.
"""

from __future__ import annotations

from tf.schema import Attribute
from tf.types import Map, String


def attributes(what: str) -> list[Attribute]:
    return [
        Attribute("conditions", Map(String()), computed=True,
                  description=f"Condition type (`Ready`, `IPAssigned`, `Programmed`) to its status (`True`, `False` or "
                  f"`Unknown`) for {what}. `IPAssigned`: {_ASSIGNED[what]}; `Programmed`: every Up node running "
                  "the kernel datapath has applied it; `Ready`: both."),
        Attribute("condition_reasons", Map(String()), computed=True,
                  description="Condition type to a CamelCase reason, e.g. `Pending`, `Unassigned`, `NotAFloatingIP`."),
        Attribute("condition_messages", Map(String()), computed=True,
                  description="Condition type to a sentence saying what holds or what is missing."),
        Attribute("condition_transition_times", Map(String()), computed=True,
                  description="Condition type to when its status last changed (RFC 3339, UTC; \"\" when not known)."),
    ]


_ASSIGNED = {"the gateway": "every floating IP has a holder", "the policy": "its `egress_source_ip` has a holder"}


def values(conditions) -> dict[str, dict[str, str]]:
    return {
        "conditions": {c.type: c.status for c in conditions},
        "condition_reasons": {c.type: c.reason for c in conditions},
        "condition_messages": {c.type: c.message for c in conditions},
        "condition_transition_times": {c.type: c.last_transition_time for c in conditions},
    }
