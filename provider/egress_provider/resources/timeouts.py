"""The `timeouts { create = "2m" ... }` block every resource has, as in other providers.

Each value is a Go-style duration ("30s", "2m", "1h30m"). It bounds the whole
operation, retries included: a write whose outcome is unknown (the agent got
it but did not answer) is retried with the same request id until answered or
until this much time has passed. Each single call to an agent still waits at
most the provider's `timeout`.

The block is kept in state as written (Terraform's convention), so a destroy
uses the delete timeout that was configured when the resource was applied.
"""

from __future__ import annotations

import re
import time
from typing import Any, Optional

from tf.schema import Attribute, Block
from tf.types import String, Unknown
from tf.utils import Diagnostics

from egress_provider.framework.blocks import SingleNestedBlock

OPERATIONS = ("create", "read", "update", "delete")
DEFAULT_SECONDS = {"create": 120.0, "read": 60.0, "update": 120.0, "delete": 120.0}

_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string ("90s", "1m30s", "2h"); must be positive."""
    value = text.strip()
    pos, total = 0, 0.0
    while pos < len(value):
        m = _PART.match(value, pos)
        if not m:
            raise DurationError(
                f"{text!r} is not a duration: write a number and a unit (s, m or h), e.g. \"30s\", \"2m\", \"1h30m\""
            )
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not value:
        raise DurationError('a duration must not be empty: write e.g. "30s" or "2m"')
    if total <= 0:
        raise DurationError(f"{text!r}: a timeout must be longer than zero")
    return total


def timeouts_block() -> SingleNestedBlock:
    return SingleNestedBlock(
        "timeouts",
        Block(
            description="How long each operation may take, retries included (a write whose outcome is unknown "
            "is retried with the same request id until the agent answers or this time is up). Durations such "
            'as "30s", "2m" or "1h30m".',
            attributes=[
                Attribute(
                    op,
                    String(),
                    optional=True,
                    description=f"Time allowed for {op}. Default {_human(DEFAULT_SECONDS[op])}.",
                )
                for op in OPERATIONS
            ],
        ),
    )


def validate(diags: Diagnostics, value: Any) -> None:
    """Errors for every unparsable duration in a config's `timeouts` block, with its attribute path."""
    if not isinstance(value, dict):
        return
    for op in OPERATIONS:
        text = value.get(op)
        if isinstance(text, str):
            try:
                parse_duration(text)
            except DurationError as err:
                diags.add_error(f"Invalid timeouts.{op}", str(err), path=["timeouts", op])


def seconds(values: Optional[dict], op: str) -> float:
    """The configured timeout of `op` in a resource's values (state or plan), or its default."""
    block = (values or {}).get("timeouts")
    text = block.get(op) if isinstance(block, dict) else None
    if isinstance(text, str) and text is not Unknown:
        try:
            return parse_duration(text)
        except DurationError:
            pass  # validation reported it; an old state must not break a destroy
    return DEFAULT_SECONDS[op]


def deadline(values: Optional[dict], op: str) -> float:
    """time.monotonic() at which `op` gives up."""
    return time.monotonic() + seconds(values, op)


def _human(s: float) -> str:
    return f"{s / 60:g}m" if s >= 60 else f"{s:g}s"
