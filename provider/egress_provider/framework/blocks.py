"""Nested blocks tf 1.2.0 lacks or gets wrong.

- `SingleNestedBlock`: `selector { ... }` written at most once (NestMode.Single).
- `SetNestedBlock`: tf's version compares only the attributes of each element,
  so two sets of blocks whose elements differ only inside nested blocks look
  equal; this one compares nested blocks too, recursively and by meaning.
"""

from __future__ import annotations

from typing import Any, Optional

from tf import blocks as tf_blocks
from tf.provider import _decode_state, _encode_state_d
from tf.schema import Block, NestedBlock, NestMode
from tf.utils import Diagnostics

from egress_provider.framework.types import equal
from egress_provider.framework.unknowns import is_unknown


def _elements_equal(block: NestedBlock, a: Optional[dict], b: Optional[dict]) -> bool:
    """Two decoded block bodies mean the same: every attribute and nested block is semantically equal."""
    if a is None or b is None:
        return a is b
    if is_unknown(a) or is_unknown(b):
        return False  # an unknown element equals nothing, not even another unknown
    for attr in block.block.attributes:
        if not equal(attr.type, a.get(attr.name), b.get(attr.name)):
            return False
    for nested in block.block.block_types:
        x, y = a.get(nested.type_name), b.get(nested.type_name)
        if is_unknown(x) or is_unknown(y):
            return False
        elif not nested.semantically_equal(x, y):
            return False
    return True


class SingleNestedBlock(NestedBlock):
    """A block that appears at most once; its value is an object or null."""

    def __init__(self, type_name: str, block: Block, required: bool = False):
        limits = {"min_items": 1, "max_items": 1} if required else {}
        super().__init__(type_name, NestMode.Single, block, **limits)

    def encode(self, value: Any) -> Any:
        if value is None or is_unknown(value):
            return value
        return _encode_state_d(self._amap(), self._bmap(), value, None)

    def decode(self, value: Any) -> Any:
        if value is None or is_unknown(value):
            return value
        return _decode_state(Diagnostics(), self._amap(), self._bmap(), value)[1]

    def semantically_equal(self, a_decoded, b_decoded) -> bool:
        return _elements_equal(self, a_decoded, b_decoded)


class SetNestedBlock(tf_blocks.SetNestedBlock):
    """tf's set-nested block, tolerant of null/Unknown and with deep, order-free equality."""

    def encode(self, value: Any) -> Any:
        if value is None or is_unknown(value):
            return value
        return super().encode(value)

    def decode(self, value: Any) -> Any:
        if value is None or is_unknown(value):
            return value
        return super().decode(value)

    def semantically_equal(self, a_decoded, b_decoded) -> bool:
        if is_unknown(a_decoded) or is_unknown(b_decoded):
            return False
        # Terraform sends an absent set of blocks as an empty set; older states may hold null.
        a_decoded, b_decoded = a_decoded or [], b_decoded or []
        if len(a_decoded) != len(b_decoded):
            return False
        # A set: match every element of a with a distinct, equal element of b.
        unmatched = list(b_decoded)
        for x in a_decoded:
            for i, y in enumerate(unmatched):
                if _elements_equal(self, x, y):
                    del unmatched[i]
                    break
            else:
                return False
        return True
