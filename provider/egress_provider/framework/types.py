"""Attribute types whose equality is semantic, so values the agent canonicalises never diff.

tf keeps the prior encoding of a value when `semantically_equal` says the new
one means the same (in ReadResource and ApplyResourceChange), so a user who
writes a set in any order, or an IP in any valid spelling, keeps exactly what
they wrote in state and sees an empty plan.
"""

from __future__ import annotations

import functools

from typing import Any, Callable

from tf.types import Map, Number, Set, String, TfType

from egress_provider.framework.unknowns import is_unknown


def is_known(value: Any) -> bool:
    """True when `value` holds no Unknown anywhere (config can be partially unknown at plan)."""
    if is_unknown(value):
        return False
    if isinstance(value, dict):
        return all(is_known(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(is_known(v) for v in value)
    return True


def equal(t: TfType, a: Any, b: Any) -> bool:
    """`t.semantically_equal` that is safe when either side is Unknown."""
    if is_unknown(a) or is_unknown(b):
        return False  # not known yet: never "the same" as anything
    return t.semantically_equal(a, b)


class CanonicalStringSet(Set):
    """A set of strings compared after `canonical` (e.g. models.parse_ipv4_cidr).

    Values that do not parse compare as written; validation reports them.
    """

    def __init__(self, canonical: Callable[[str], str]):
        super().__init__(String())
        # Every plan compares the planned set with the prior one (semantically_equal), so a no-op plan of N
        # policies canonicalizes the same few CIDR spellings N times over: remember them.
        self.canonical = functools.lru_cache(maxsize=65536)(canonical)

    def _canon(self, value: str) -> str:
        try:
            return self.canonical(value)
        except ValueError:
            return value

    def semantically_equal(self, a_decoded, b_decoded) -> bool:
        if a_decoded is None or b_decoded is None:
            return a_decoded is b_decoded
        if not (is_known(a_decoded) and is_known(b_decoded)):
            return False
        return sorted(map(self._canon, a_decoded)) == sorted(map(self._canon, b_decoded))


class CanonicalStringList(CanonicalStringSet):
    """A *list* of strings with set semantics: order and spelling never make a difference.

    For large collections: Terraform core checks a set attribute after apply
    by correlating every planned element with every new one (quadratic; 5,000
    CIDRs took minutes), a list element by element. Duplicates are refused by
    the models (`_unique_sorted`), so the list is a set in all but order, and
    the state keeps the order written in config.
    """

    def tf_type(self) -> bytes:
        return f'["list",{self.element_type.tf_type().decode()}]'.encode()


class CanonicalString(String):
    """A string compared after `canonical` (e.g. models.parse_ipv4)."""

    def __init__(self, canonical: Callable[[str], str]):
        self.canonical = canonical

    def semantically_equal(self, a_decoded, b_decoded) -> bool:
        if a_decoded is None or b_decoded is None:
            return a_decoded is b_decoded
        if is_unknown(a_decoded) or is_unknown(b_decoded):
            return False
        try:
            return self.canonical(a_decoded) == self.canonical(b_decoded)
        except ValueError:
            return a_decoded == b_decoded


class StringMapEmptyIsNull(Map):
    """A map of strings where null and {} mean the same (Kubernetes match_labels)."""

    def __init__(self):
        super().__init__(String())

    def semantically_equal(self, a_decoded, b_decoded) -> bool:
        return (a_decoded or {}) == (b_decoded or {})


class StringSetEmptyIsNull(Set):
    """A set of strings where null and [] mean the same (a LabelSelector requirement's `values`)."""

    def __init__(self):
        super().__init__(String())

    def semantically_equal(self, a_decoded, b_decoded) -> bool:
        if not (is_known(a_decoded) and is_known(b_decoded)):
            return False
        return sorted(a_decoded or []) == sorted(b_decoded or [])


class CanonicalStringListEmptyIsNull(CanonicalStringList):
    """A `CanonicalStringList` where null and [] mean the same (an optional list the agent stores as [])."""

    def semantically_equal(self, a_decoded, b_decoded) -> bool:
        return super().semantically_equal(a_decoded or [], b_decoded or [])


class NumberWithDefault(Number):
    """A number where null means `default` (an optional attribute the agent stores with its default)."""

    def __init__(self, default: int):
        self.default = default

    def semantically_equal(self, a_decoded, b_decoded) -> bool:
        if is_unknown(a_decoded) or is_unknown(b_decoded):
            return False
        a = self.default if a_decoded is None else a_decoded
        b = self.default if b_decoded is None else b_decoded
        return a == b
