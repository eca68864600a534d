"""The cluster store interface: desired state, inventory, assignments and events.

Two backends implement it: `sqlite.SqliteStore` (embedded, one node, the
default) and `etcd.EtcdStore` (a cluster). Everything above this module talks
only to `Store`, so the controller and the API server do not care which one
runs.

Model: a flat keyspace of records addressed by (kind, name), each holding a
JSON-serialisable dict and the store revision of its last write (`version`,
etcd's mod_revision). The store has one global revision counter that every
commit increases, as etcd does.

`commit` applies a list of operations atomically. `Check` operations write
nothing but make the whole commit fail with `Conflict` when a record's version
differs; the API server uses them to make "validate against the other objects,
then write" serialisable across agents (see `server.write_plan`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

# Record kinds. Desired state is what users write; the rest is written by agents.
GATEWAY = "gateway"
POLICY = "policy"
POD = "pod"
NAMESPACE = "namespace"
ASSIGNMENT = "assignment"  # name = floating IP, value = {"node": ..., "gateway": ...}
NODE = "node"  # name = node name, value = models.Node fields (+ "state" in standalone)
EVENT = "event"  # name = "<kind>/<object>/<reason>/<hash of message>", value = Event fields
# name = "<kind>.<object>", value = {"request_id": ...}: the request that last wrote a desired object,
# so a retried write (same request id) is answered with its result instead of failing (writes.Writes).
WRITE = "write"
RETAINED = "retained"  # name = floating IP a policy uses that its gateway let go, value = {"gateway": ...}
DATAPATH = "datapath"  # name = node, value = node.record.DatapathRecord: what its kernel applied (node/status.py)
CONDITION = "condition"  # name = "<kind>:<object>", value = {type: {status, time}} (controller/conditions.py)
META = "meta"  # bookkeeping, e.g. ("meta", "desired") bumped by every desired-state write

ANY_VERSION = None  # for Put/Delete: write whatever the current version is
MUST_NOT_EXIST = 0  # for Put: create only


@dataclass(frozen=True)
class Record:
    """One record as read. Its `value` may be shared with other reads (stores decode a version once):
    never modify it; a write builds a new value."""

    kind: str
    name: str
    value: dict[str, Any]
    version: int  # store revision of the last write to this record (> 0)


@dataclass(frozen=True)
class Put:
    kind: str
    name: str
    value: dict[str, Any]
    expect_version: Optional[int] = ANY_VERSION  # MUST_NOT_EXIST (0) = create only


@dataclass(frozen=True)
class Delete:
    kind: str
    name: str
    expect_version: Optional[int] = ANY_VERSION


@dataclass(frozen=True)
class Check:
    """Fail the commit unless (kind, name) has exactly `version` (0 = absent)."""

    kind: str
    name: str
    version: int


Op = Union[Put, Delete, Check]


@dataclass(frozen=True)
class Change:
    """One committed change, as delivered to watchers. `record.value` is {} for deletes."""

    record: Record
    deleted: bool = False


@dataclass
class Snapshot:
    """Records of some kinds, all read at one revision."""

    revision: int
    records: dict[str, dict[str, Record]] = field(default_factory=dict)  # kind -> name -> record

    def of(self, kind: str) -> dict[str, Record]:
        return self.records.get(kind, {})


class StoreError(Exception):
    pass


class NotFound(StoreError):
    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name
        super().__init__(f"{kind} {name!r} not found")


class AlreadyExists(StoreError):
    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name
        super().__init__(f"{kind} {name!r} already exists")


class Conflict(StoreError):
    """An expected version did not match: someone else wrote first."""

    def __init__(self, kind: str, name: str, expected: Optional[int], actual: int):
        self.kind, self.name, self.expected, self.actual = kind, name, expected, actual
        super().__init__(
            f"{kind} {name!r} was changed concurrently (expected resource_version {expected}, "
            f"current is {actual}): re-read it and retry"
        )


class Unavailable(StoreError):
    """The backing store cannot be reached."""


WatchCallback = Callable[[int, Sequence[Change]], None]  # (revision, changes)


def batches(ops: Sequence[Op], limit: Optional[int], guard: Sequence[Op] = ()) -> list[list[Op]]:
    """`ops` cut into commits of at most `limit` operations, each starting with `guard`.

    For writers whose operations are independent of each other (one record
    each, every one with its own expected version), so any prefix of the
    batches is a consistent state. Order is kept: put what matters most first.
    """
    if limit is None or len(guard) + len(ops) <= limit:
        return [[*guard, *ops]]
    size = limit - len(guard)
    if size < 1:
        raise ValueError(f"a guard of {len(guard)} operations leaves no room under the commit limit {limit}")
    return [[*guard, *ops[i : i + size]] for i in range(0, len(ops), size)]


class Store(abc.ABC):
    """The interface both backends implement. Methods are thread-safe."""

    #: human-readable location, e.g. "sqlite:/var/lib/egress/state.db"
    url: str

    #: The most operations one `commit` may carry (None: no limit). etcd refuses a
    #: transaction with more than `--max-txn-ops` (128 by default) operations in
    #: any of its lists, so writers of many records split them (`batches`).
    max_commit_ops: Optional[int] = None

    @abc.abstractmethod
    def get(self, kind: str, name: str) -> Optional[Record]: ...

    @abc.abstractmethod
    def snapshot(self, kinds: Sequence[str]) -> Snapshot:
        """All records of `kinds`, read at one revision."""

    def list(self, kind: str) -> list[Record]:
        return sorted(self.snapshot([kind]).of(kind).values(), key=lambda r: r.name)

    @abc.abstractmethod
    def commit(self, ops: Sequence[Op]) -> int:
        """Apply `ops` atomically and return the new revision.

        Raises AlreadyExists (Put with MUST_NOT_EXIST on an existing record),
        NotFound (Delete or versioned Put of a missing record), Conflict (an
        expected version or Check did not match). Nothing is written when it raises.
        """

    @abc.abstractmethod
    def watch(self, kinds: Sequence[str], callback: WatchCallback, start_revision: int = 0) -> Callable[[], None]:
        """Call `callback` for every commit touching `kinds` after `start_revision`.

        Returns a function that cancels the watch. Callbacks run on a store thread,
        in revision order, and must not block for long.
        """

    @abc.abstractmethod
    def close(self) -> None: ...

    def healthy(self) -> tuple[bool, str]:
        """(ok, detail) for the Health RPC."""
        return True, ""
