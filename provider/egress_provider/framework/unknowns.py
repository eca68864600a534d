"""Unknown values as Terraform sends them, refinements included.

Terraform (go-cty's msgpack encoding) writes a value that is not known yet as
a msgpack extension:

- a body of 0 or 1 bytes, of any extension type (Terraform writes type 0 with
  one zero byte): wholly unknown. tf decodes this as its `Unknown` singleton.
- type 12 with a msgpack map as body: a *refined* unknown. The map's keys are
  small integers: 1 nullness (bool; false = "definitely not null"), 2 the
  known prefix of a string, 3 / 4 a number's lower / upper bound as
  `[number, inclusive]`, 5 / 6 a collection's least / greatest length. Keys a
  decoder does not know are ignored; a body over 1 KiB is refused. Terraform
  sends these for `"${var.prefix}-gw"`, `"cnt-${count.index}"`, `format()`,
  `join()`, other resources' computed attributes, ...

tf 1.2.0 decodes only the first form, so a refined unknown reached resources
as a raw `ExtType`. `install()` replaces tf's msgpack hooks (the one place tf
turns wire bytes into Python values and back) so that every RPC decodes a
refined unknown into a `RefinedUnknown` and encodes it back with the same
refinements: Terraform checks that a planned unknown and the applied value
keep the refinements the configuration promised.

Resources see `Unknown` or a `RefinedUnknown`; `is_unknown` tests for either
and `known_prefix` gives what is known of a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import msgpack
from msgpack import ExtType
from tf import utils as tf_utils
from tf.types import Unknown, _Unknown

UNKNOWN_EXT = 0  # what Terraform writes for a wholly unknown value (one zero byte)
REFINED_EXT = 12  # an unknown with refinements (go-cty "unknownWithRefinementsExt")
MAX_REFINEMENTS_BYTES = 1024  # go-cty refuses larger bodies as abusive; so do we

# Refinement keys in the extension body's map.
_NULLNESS, _PREFIX, _NUMBER_MIN, _NUMBER_MAX, _LENGTH_MIN, _LENGTH_MAX = 1, 2, 3, 4, 5, 6


class WireError(ValueError):
    """An extension value that is neither a plain nor a refined unknown."""


@dataclass(frozen=True, eq=False)
class RefinedUnknown(_Unknown):
    """A value Terraform does not know yet, with what it does know about it.

    It is a kind of tf's `_Unknown`, and compares equal to any unknown, so tf's
    own `value in (None, Unknown)` checks (collection types) pass it through
    untouched instead of iterating it.
    """

    not_null: bool = False
    prefix: str = ""  # strings: the value starts with this
    number_min: Optional[tuple[Any, bool]] = None  # numbers: (bound, inclusive)
    number_max: Optional[tuple[Any, bool]] = None
    length_min: Optional[int] = None  # lists, sets, maps: number of elements
    length_max: Optional[int] = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Unknown)

    def __hash__(self) -> int:
        return hash(Unknown)

    def refinements(self) -> dict[int, Any]:
        """The refinement map as it goes on the wire, keys in go-cty's order."""
        out: dict[int, Any] = {}
        if self.not_null:
            out[_NULLNESS] = False
        if self.prefix:
            out[_PREFIX] = self.prefix
        if self.number_min is not None:
            out[_NUMBER_MIN] = list(self.number_min)
        if self.number_max is not None:
            out[_NUMBER_MAX] = list(self.number_max)
        if self.length_min:
            out[_LENGTH_MIN] = self.length_min
        if self.length_max is not None:
            out[_LENGTH_MAX] = self.length_max
        return out


def is_unknown(value: Any) -> bool:
    """True for a value Terraform does not know yet (plain or refined)."""
    return isinstance(value, _Unknown)


def known_prefix(value: Any) -> str:
    """What is known of the beginning of an unknown string ("" when nothing is)."""
    return value.prefix if isinstance(value, RefinedUnknown) else ""


def decode_extension(code: int, data: bytes) -> Any:
    """A msgpack extension from Terraform as a Python value (msgpack's `ext_hook`)."""
    if len(data) <= 1:
        return Unknown
    if code != REFINED_EXT:
        raise WireError(f"unsupported msgpack extension type {code} with a {len(data)}-byte body")
    if len(data) > MAX_REFINEMENTS_BYTES:
        raise WireError(f"refinements of an unknown value take {len(data)} bytes (at most {MAX_REFINEMENTS_BYTES})")
    reader = msgpack.Unpacker(strict_map_key=False)
    reader.feed(data)
    try:
        body = reader.unpack()  # bytes after the map are ignored, as go-cty does (room for later additions)
    except (ValueError, msgpack.OutOfData) as exc:
        raise WireError(f"refinements of an unknown value are not msgpack: {exc!r}") from None
    if not isinstance(body, dict):
        raise WireError("refinements of an unknown value are not a map")
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key == _NULLNESS:
            if value is True:  # "definitely null" collapses to a known null in go-cty
                return None
            fields["not_null"] = value is False
        elif key == _PREFIX:
            fields["prefix"] = _expect(value, str, "string prefix")
        elif key in (_NUMBER_MIN, _NUMBER_MAX):
            if not (isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[1], bool)):
                raise WireError("a number bound must be [number, bool]")
            fields["number_min" if key == _NUMBER_MIN else "number_max"] = (value[0], value[1])
        elif key in (_LENGTH_MIN, _LENGTH_MAX):
            fields["length_min" if key == _LENGTH_MIN else "length_max"] = _expect(value, int, "length bound")
        # other keys: refinements added after this was written; go-cty ignores them too
    return RefinedUnknown(**fields)


def _expect(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise WireError(f"the {what} of an unknown value is a {type(value).__name__}")
    return value


def encode_extension(value: Any) -> Any:
    """msgpack's `default` hook: unknown values as the extensions Terraform reads."""
    if isinstance(value, RefinedUnknown):
        refinements = value.refinements()
        if not refinements:
            return ExtType(UNKNOWN_EXT, b"\x00")
        return ExtType(REFINED_EXT, msgpack.packb(refinements))
    if value is Unknown:
        return ExtType(UNKNOWN_EXT, b"\x00")
    raise TypeError(f"cannot send a {type(value).__name__} to Terraform")


def install() -> None:
    """Make tf's wire codec (tf.utils.read_dynamic_value / to_dynamic_value) use these hooks.

    tf has no option for this: both functions look their hook up in tf.utils at
    call time, so replacing the two module attributes covers every RPC, tf's
    own and ours. tf is pinned (pyproject), and a test checks the hooks are used.
    """
    tf_utils._msgpack_ext_hook = decode_extension
    tf_utils._msgpack_default = encode_extension
