"""Store records as the shared models, parsed once per record version.

A record's `version` is the store revision of its last write, so within one
store (kind, name, version) always names the same value, and its parsed model
can be reused until the record is written again. Reads that look at every
object -- a write's cross-object checks, a plan's impact preview, a listing --
then cost a dict lookup per unchanged record instead of a pydantic validation
(at 1,000 policies that validation was most of an apply's time on the agent).

Records come from the store, which only ever holds what validation accepted,
so parsing cannot fail here except on a corrupted store.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable, Mapping, TypeVar

from egress_agent.store.base import GATEWAY, NAMESPACE, POD, POLICY, Record, Snapshot, Store
from egress_api import models

MODEL_OF_KIND: dict[str, type[models.BaseModel]] = {
    GATEWAY: models.Gateway,
    POLICY: models.Policy,
    POD: models.Pod,
    NAMESPACE: models.Namespace,
}

M = TypeVar("M", bound=models.BaseModel)

#: (snapshot, kind) -> {name: model}: how a pure function that reads a snapshot gets its models.
ModelsOf = Callable[[Snapshot, str], Mapping[str, models.BaseModel]]


def parse(record: Record) -> models.BaseModel:
    """The model of `record` (no cache)."""
    return MODEL_OF_KIND[record.kind].model_validate(record.value)


def parse_all(snapshot: Snapshot, kind: str) -> dict[str, models.BaseModel]:
    """Every `kind` record of `snapshot` as a model, by name (no cache)."""
    return {name: parse(rec) for name, rec in snapshot.of(kind).items()}


class ParsedRecords:
    """Models of one store's records, by (kind, name), each kept with the version it was parsed at."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], tuple[int, models.BaseModel]] = {}
        self._count: dict[str, int] = {}

    def model(self, record: Record) -> models.BaseModel:
        key = (record.kind, record.name)
        hit = self._by_key.get(key)
        if hit is not None and hit[0] == record.version:
            return hit[1]
        model = parse(record)
        with self._lock:
            if key not in self._by_key:
                self._count[record.kind] = self._count.get(record.kind, 0) + 1
            self._by_key[key] = (record.version, model)
        return model

    def all(self, snapshot: Snapshot, kind: str) -> dict[str, models.BaseModel]:
        """Every `kind` record of `snapshot` as a model, by name; forgets records of `kind` it no longer has."""
        records = snapshot.of(kind)
        out = {name: self.model(rec) for name, rec in records.items()}
        if self._count.get(kind, 0) > 2 * len(records) + 64:  # deleted records pile up: drop them
            with self._lock:
                for key in [k for k in self._by_key if k[0] == kind and k[1] not in records]:
                    del self._by_key[key]
                self._count[kind] = sum(1 for k in self._by_key if k[0] == kind)
        return out


_PARSED: "weakref.WeakKeyDictionary[Store, ParsedRecords]" = weakref.WeakKeyDictionary()
_PARSED_LOCK = threading.Lock()


def parsed(store: Store) -> ParsedRecords:
    """The parse cache of `store` (one per store object: versions of two stores are unrelated)."""
    with _PARSED_LOCK:
        cache = _PARSED.get(store)
        if cache is None:
            cache = _PARSED[store] = ParsedRecords()
        return cache
