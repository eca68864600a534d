"""Desired-state writes planned: what one write commits, and the rules it must pass to commit at all.

Every write reads one snapshot of gateways, policies and the ("meta",
"desired") guard, runs the cross-object rules of `models`, and commits

    [Check(meta/desired, v), Put(meta/desired), Put/Delete(object, expect_version)]

(plus the `retained` records the write changes, see `retention_ops`), so a
concurrent write of *any* desired object between our read and our commit
fails the Check (no two writers can both pass validation against a world the
other one changed). The same holds for a source IP the write allocates
(`allocate`, a policy naming only its gateway): it is picked against the
snapshot, so two agents can never commit one IP to two policies. When only
the guard moved, the write is simply retried against the new snapshot (and
picks again); when the object itself moved, the caller's resource_version is
stale and that is the caller's conflict to resolve.

Idempotent retries: a create or update may carry a request id (clients send
one per logical write and reuse it when they retry a call whose outcome they
do not know, e.g. after a timeout). The same commit records it as
("write", "<kind>.<name>"); a write whose request id is that record's, while
the object is still exactly as that write left it, is answered with the
stored object instead of ALREADY_EXISTS or a stale-version conflict.

This module is the planning half, pure but for `read_desired`: what a write
would commit against one snapshot, or the caller's error. `server.writes`
commits the plans in groups.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from egress_api import allocation, limits, models
from egress_agent.controller.assignment import Placement, assign
from egress_agent.controller.nodes import NodeSource
from egress_agent.store import base, typed
from egress_agent.store.assignment import AssignmentRecord, holders
from egress_agent.store.base import (
    ASSIGNMENT, GATEWAY, META, NODE, POLICY, RETAINED, WRITE, Check, Delete, Put, Record, Snapshot,
)

log = logging.getLogger(__name__)

DESIRED = "desired"

Obj = models.Gateway | models.Policy


class StaleVersion(Exception):
    """The caller's resource_version is not the current one (-> ABORTED)."""


@dataclass(frozen=True)
class Desired:
    """Gateways and policies as models, read at one revision, with the guard's version."""

    snapshot: Snapshot
    gateways: dict[str, models.Gateway]
    policies: dict[str, models.Policy]

    @property
    def guard_version(self) -> int:
        rec = self.snapshot.of(META).get(DESIRED)
        return rec.version if rec else 0

    def record(self, kind: str, name: str) -> Record | None:
        return self.snapshot.of(kind).get(name)

    def last_write(self, kind: str, name: str) -> Record | None:
        """The ("write", ...) record of the request that last wrote (kind, name), if it carried an id."""
        return self.snapshot.of(WRITE).get(write_key(kind, name))

    def written_by(self, request_id: str, obj: Obj) -> Record | None:
        """The stored object if request `request_id` wrote it and nothing changed it since, else None."""
        current = self.record(kind_of(obj), obj.name)
        last = self.last_write(kind_of(obj), obj.name)
        if not request_id or current is None or last is None:
            return None
        if last.value.get("request_id") != request_id or last.version != current.version:
            return None
        return current if current.value == to_value(resolved(obj, current.value)) else None

    @property
    def retained(self) -> dict[str, str]:
        """Floating IP -> the gateway that let it go while a policy used it."""
        return {ip: r.value.get("gateway", "") for ip, r in self.snapshot.of(RETAINED).items()}


def read_desired(store: base.Store, extra_kinds: tuple[str, ...] = ()) -> Desired:
    snap = store.snapshot([GATEWAY, POLICY, META, WRITE, RETAINED, NODE, *extra_kinds])
    cache = typed.parsed(store)
    return Desired(snap, cache.all(snap, GATEWAY), cache.all(snap, POLICY))


def cluster_violations(d: Desired, obj: Obj) -> list[models.Violation]:
    """A gateway's floating IPs that are addresses of the cluster's nodes or routers (errors)."""
    if not isinstance(obj, models.Gateway):
        return []
    nodes = d.snapshot.of(NODE).values()
    reserved = models.reserved_addresses((r.name, r.value["node_ip"], r.value.get("routers") or ()) for r in nodes)
    return models.cluster_address_violations(obj, reserved)


# (limit name, its value, what is counted, count of (gateways, policies)) for the cluster totals.
_TOTALS = (
    ("MAX_GATEWAYS", limits.MAX_GATEWAYS, "gateways", lambda g, p: len(g)),
    ("MAX_POLICIES", limits.MAX_POLICIES, "policies", lambda g, p: len(p)),
    ("MAX_TOTAL_FLOATING_IPS", limits.MAX_TOTAL_FLOATING_IPS, "floating IPs over all gateways",
     lambda g, p: sum(len(x.floating_ips) for x in g.values())),
    ("MAX_TOTAL_DESTINATION_CIDRS", limits.MAX_TOTAL_DESTINATION_CIDRS, "destination CIDRs over all policies",
     lambda g, p: sum(len(x.destination_cidrs) for x in p.values())),
)


def check_totals(d: Desired, gateways: dict[str, models.Gateway], policies: dict[str, models.Policy]) -> None:
    """Refuse a write that takes the cluster over a total of `limits` (a write that shrinks it always passes)."""
    for name, limit, what, count in _TOTALS:
        after = count(gateways, policies)
        if after > limit and after > count(d.gateways, d.policies):
            raise limits.LimitExceeded(name, limit, f"this write would make {after:,} {what}, over the cluster's limit")


def write_key(kind: str, name: str) -> str:
    return f"{kind}.{name}"


def kind_of(obj: Obj) -> str:
    return GATEWAY if isinstance(obj, models.Gateway) else POLICY


# Fields newer than the first release: stored only when set, so an object that does not use them keeps the
# record an older agent (whose models forbid unknown fields) can still read during a rolling upgrade.
_STORED_WHEN_SET = {"node_selector", "max_ips_per_node", "gateway"}


def to_value(obj: Obj) -> dict[str, Any]:
    value = obj.model_dump(mode="json")
    return {k: v for k, v in value.items() if v is not None or k not in _STORED_WHEN_SET}


def resolved(obj: Obj, stored: dict[str, Any] | None) -> Obj:
    """`obj` with the source IP of the stored value `stored` when it is a policy to be allocated one (for
    comparing a request with what it wrote)."""
    if isinstance(obj, models.Policy) and obj.egress_source_ip is None and stored:
        return obj.model_copy(update={"egress_source_ip": stored.get("egress_source_ip")})
    return obj


def retention_ops(d: Desired, gateways: dict[str, models.Gateway], policies: dict[str, models.Policy]) -> list[base.Op]:
    """`retained` record changes for a write that leaves `gateways` and `policies` stored.

    A floating IP a policy uses is never let go: when its last gateway drops
    it (update or delete) it stays assigned as *retained*, so the policy's
    traffic keeps its source IP. It is released when no policy uses it any
    more, and adopted (no move: the assignment keeps its node) by a gateway
    that lists it again -- which is how `terraform apply -replace` of a gateway
    in use, or a delete that Terraform orders before the policy's, goes
    through with no traffic change.
    """
    claimed_before = {ip: g.name for g in d.gateways.values() for ip in g.floating_ips}
    claimed_after = {ip for g in gateways.values() for ip in g.floating_ips}
    used_after = {p.egress_source_ip for p in policies.values()}
    before = d.retained
    after = {
        ip: before.get(ip) or claimed_before[ip]
        for ip in used_after - claimed_after
        if ip in before or ip in claimed_before
    }
    ops: list[base.Op] = []
    records = d.snapshot.of(RETAINED)
    for ip, gateway in sorted(after.items()):
        if ip not in before:
            ops.append(Put(RETAINED, ip, {"gateway": gateway}, base.MUST_NOT_EXIST))
    for ip in sorted(set(before) - set(after)):
        ops.append(Delete(RETAINED, ip, records[ip].version))
    return ops


def allocate(d: Desired, obj: Obj) -> Obj:
    """`obj` as it is stored: a policy that names only its gateway gets its source IP (egress_api.allocation)."""
    if not isinstance(obj, models.Policy) or obj.egress_source_ip is not None:
        return obj
    ip = allocation.source_ip(obj, d.gateways, d.policies, d.retained)
    if d.policies.get(obj.name) is None or d.policies[obj.name].egress_source_ip != ip:
        log.info("policy %r: allocated source IP %s from gateway %r", obj.name, ip, obj.gateway)
    return obj.model_copy(update={"egress_source_ip": ip})


def _after(d: Desired, obj: Obj | None, kind: str, name: str) -> tuple[dict, dict]:
    """(gateways, policies) as stored once `obj` is written (None: `kind`/`name` deleted)."""
    gateways, policies = dict(d.gateways), dict(d.policies)
    target = gateways if kind == GATEWAY else policies
    if obj is None:
        target.pop(name, None)
    else:
        target[name] = obj
    return gateways, policies


@dataclass(frozen=True)
class Request:
    """One create, update or delete as the API received it."""

    kind: str
    name: str
    obj: Obj | None  # None: delete
    create: bool = False
    resource_version: int = 0
    request_id: str = ""
    expires_at: float = 0.0  # Unix time the caller stops waiting (0: no limit)

    @property
    def verb(self) -> str:
        return "delete" if self.obj is None else "create" if self.create else "update"


@dataclass(frozen=True)
class Planned:
    """What one request commits against a Desired: its operations, and what it answers once they land
    (`value` for a create or update, None for a delete; `replayed`: the stored answer, nothing to commit)."""

    ops: list[base.Op]
    obj: Obj | None = None  # as stored (with its allocated source IP)
    value: dict[str, Any] | None = None
    replayed: Record | None = None


def plan(d: Desired, req: Request) -> Planned:
    """The operations of `req` against `d`, or the caller's error (AlreadyExists, NotFound, StaleVersion,
    InvalidObject, LimitExceeded, NoSourceIP). No guard: the commit adds it once per transaction."""
    kind, name = req.kind, req.name
    current = d.record(kind, name)
    if req.obj is None:
        if current is None:
            raise base.NotFound(kind, name)
        _check_version(kind, name, req.resource_version, current.version)
        # A gateway in use is deleted all the same: the IPs its policies use are retained (retention_ops).
        retention = retention_ops(d, *_after(d, None, kind, name))
        return Planned([Delete(kind, name, current.version), *_record_write(d, kind, name, ""), *retention])
    replayed = d.written_by(req.request_id, req.obj)
    if replayed is not None:
        return Planned([], replayed=replayed)
    if req.create and current is not None:
        raise base.AlreadyExists(kind, name)
    if not req.create:
        if current is None:
            raise base.NotFound(kind, name)
        _check_version(kind, name, req.resource_version, current.version)
    # An allocated source IP is picked against this snapshot; the guarded commit fails when any other
    # write landed meanwhile, and the retry picks again: never the same IP for two policies.
    obj = allocate(d, req.obj)
    violations = models.check_references(obj, d.gateways.values(), d.policies.values())
    violations += cluster_violations(d, obj)
    if violations:
        raise models.InvalidObject(kind, name, violations)
    after = _after(d, obj, kind, name)
    check_totals(d, *after)
    value = to_value(obj)
    expect = base.MUST_NOT_EXIST if req.create else current.version
    ops = [Put(kind, name, value, expect), *_record_write(d, kind, name, req.request_id), *retention_ops(d, *after)]
    return Planned(ops, obj=obj, value=value)


def staged(d: Desired, req: Request, p: Planned) -> Desired:
    """`d` as it will be once `p` (planned for `req`) commits; records it puts carry version 0, since their
    version is not known before the commit (a request that depends on one waits for the next group)."""
    kinds = {op.kind for op in p.ops}
    records = {k: (dict(v) if k in kinds else v) for k, v in d.snapshot.records.items()}
    for op in p.ops:
        table = records.setdefault(op.kind, {})
        if isinstance(op, Put):
            table[op.name] = Record(op.kind, op.name, op.value, 0)
        elif isinstance(op, Delete):
            table.pop(op.name, None)
    gateways, policies = _after(d, p.obj, req.kind, req.name)
    return Desired(Snapshot(d.snapshot.revision, records), gateways, policies)


# --- dry runs: what a write would get now, writing nothing -------------------------------

def preview(store: base.Store, obj: Obj) -> Obj:
    """`obj` with the source IP a write would allocate now, or as it is when none can be (writing nothing)."""
    try:
        return allocate(read_desired(store), obj)
    except allocation.NoSourceIP:
        return obj

def validate(store: base.Store, obj: Obj, nodes: NodeSource) -> tuple[list[models.Violation], list[models.Violation]]:
    """(errors, warnings) a write of `obj` would get now, writing nothing."""
    d = read_desired(store, (ASSIGNMENT,))
    try:
        obj = allocate(d, obj)  # the IP a write would allocate now (it may differ at the write)
    except allocation.NoSourceIP as err:
        return [err.violation], []
    errors = models.check_references(obj, d.gateways.values(), d.policies.values()) + cluster_violations(d, obj)
    warnings = models.reference_warnings(obj, d.gateways.values(), d.policies.values(), d.retained)
    if errors or warnings:
        return errors, warnings
    assignments = d.snapshot.of(ASSIGNMENT)
    if isinstance(obj, models.Policy):
        ip = obj.egress_source_ip
        assigned = AssignmentRecord.of(assignments.get(ip))
        if not assigned.node:
            why = assigned.reason or "no node holds it yet"
            warnings.append(
                models.Violation(
                    ("egress_source_ip",),
                    f"UnknownEgressIP: {ip} is not assigned to any gateway node ({why}); "
                    "the policy is accepted but has no effect until a node in its subnet is Up",
                )
            )
    else:
        previous = holders(assignments)
        where, known = Placement.of(obj), nodes()
        if obj.node_selector is not None and not any(where.selects(n) for n in known):
            warnings.append(models.Violation(("node_selector",), (
                f"NoMatchingNode: {where.selector_text()} matches none of the nodes the agent knows "
                f"({', '.join(sorted(n.name for n in known)) or 'none'}); its floating IPs stay unassigned "
                "until a node with matching labels (egress-agent --node-label) joins")))
        result = assign(obj.floating_ips, known, previous, {ip: where for ip in obj.floating_ips})
        for ip, reason in sorted(result.reasons.items()):
            warnings.append(
                models.Violation(("floating_ips",), f"floating IP {ip} cannot be assigned to any node: {reason}")
            )
    return errors, warnings


def guarded(d: Desired, op: base.Op, *more: base.Op) -> list[base.Op]:
    return [Check(META, DESIRED, d.guard_version), Put(META, DESIRED, {"last": f"{op.kind}/{op.name}"}), op, *more]


def _record_write(d: Desired, kind: str, name: str, request_id: str) -> list[base.Op]:
    """Ops that make ("write", kind.name) name `request_id`, or remove it when there is none (or on delete)."""
    if request_id:
        return [Put(WRITE, write_key(kind, name), {"request_id": request_id})]
    if d.last_write(kind, name) is not None:
        return [Delete(WRITE, write_key(kind, name))]
    return []


def _check_version(kind: str, name: str, wanted: int, actual: int) -> None:
    if wanted and wanted != actual:
        raise StaleVersion(stale_message(kind, name, wanted, actual))


def stale_message(kind: str, name: str, wanted: int, actual: int) -> str:
    return (
        f"{kind} {name!r} was changed by someone else: you have resource_version {wanted}, "
        f"the agent has {actual}. Re-read it (terraform refresh, or egressctl get) and apply again"
    )
