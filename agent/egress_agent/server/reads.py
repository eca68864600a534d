"""Read-side RPC answers built from store records: status, nodes, events, descriptions."""

from __future__ import annotations

import time
import weakref
from typing import Callable, Iterable

from egress_agent.controller import conditions as cond
from egress_agent.controller import effective, view
from egress_agent.controller.nodes import NodeSource
from egress_agent.store import base, typed
from egress_agent.store.assignment import holder_of
from egress_agent.node.record import DatapathRecord
from egress_agent.store.base import ASSIGNMENT, CONDITION, DATAPATH, EVENT, GATEWAY, NAMESPACE, NODE, POD, POLICY
from egress_api import convert, models
from egress_api.v1 import egress_pb2 as pb


def gateway_status(store: base.Store, nodes: NodeSource, name: str) -> pb.GatewayStatus:
    snap = store.snapshot([GATEWAY, ASSIGNMENT, NODE, DATAPATH])
    rec = snap.of(GATEWAY).get(name)
    if rec is None:
        raise base.NotFound(GATEWAY, name)
    node_view = nodes()
    v = view.gateway_view(rec, snap.of(ASSIGNMENT), snap.of(NODE), node_view)
    return pb.GatewayStatus(
        name=v.name, nodes=v.nodes, floating_ips=v.floating_ips, unassigned_reasons=v.unassigned_reasons,
        conditions=_conditions(store, GATEWAY, rec, cond.gateway_conditions(rec, snap.of(ASSIGNMENT),
                                                                             _datapaths(snap), _up(node_view))),
    )


def _datapaths(snap: base.Snapshot) -> dict[str, DatapathRecord]:
    return {n: DatapathRecord.from_value(r.value) for n, r in snap.of(DATAPATH).items()}


def _up(nodes: list) -> list[str]:
    return [n.name for n in nodes if n.up]


def _conditions(store: base.Store, kind: str, rec: base.Record, computed: list) -> list[pb.Condition]:
    """The conditions computed now, with the transition times the leader kept (conditions.py)."""
    stored = store.get(CONDITION, cond.record_name(kind, rec.name))
    return [pb.Condition(type=c.type, status=c.status, reason=c.reason, message=c.message,
                         last_transition_time=c.last_transition_time)
            for c in cond.with_times(computed, stored, time.time())]


def node_statuses(store: base.Store, nodes: NodeSource) -> list[pb.NodeStatus]:
    snap = store.snapshot([NODE, ASSIGNMENT])
    return [
        pb.NodeStatus(
            name=n.name,
            role=n.role,
            state=n.state,
            node_ip=n.node_ip,
            floating_ips=n.floating_ips,
            pod_cidr=n.pod_cidr,
            api_address=n.api_address,
            labels=n.labels,
            service_cidrs=n.service_cidrs,
        )
        for n in view.node_views(snap.of(NODE), snap.of(ASSIGNMENT), nodes())
    ]


def node_status(store: base.Store, nodes: NodeSource, name: str) -> pb.NodeStatus:
    for n in node_statuses(store, nodes):
        if n.name == name:
            return n
    raise base.NotFound(NODE, name)


def events(store: base.Store, kind: str = "", name: str = "") -> list[pb.Event]:
    return events_of(store.list(EVENT), kind, name)


def events_of(records: Iterable[base.Record], kind: str = "", name: str = "") -> list[pb.Event]:
    """The events among `records` about `kind`/`name` ("" = any), oldest first."""
    out = []
    for rec in records:
        v = rec.value
        if (kind and v.get("kind") != kind) or (name and v.get("name") != name):
            continue
        out.append(
            pb.Event(
                kind=v.get("kind", ""),
                name=v.get("name", ""),
                type=v.get("type", ""),
                reason=v.get("reason", ""),
                message=v.get("message", ""),
                timestamp=float(v.get("timestamp", 0.0)),
                count=int(v.get("count", 1)),
            )
        )
    return sorted(out, key=lambda e: (e.timestamp, e.reason, e.message))


def describe_policy(
    store: base.Store, name: str, counters: Callable[[str, str], dict[str, int]], nodes: NodeSource
) -> pb.DescribePolicyResponse:
    snap = store.snapshot([POLICY, ASSIGNMENT, EVENT, DATAPATH])  # one read: spec, holder and events agree
    rec = snap.of(POLICY).get(name)
    if rec is None:
        raise base.NotFound(POLICY, name)
    policy = typed.parsed(store).model(rec)
    shadows, shadowed_pods = effective.shadowed(_world(store), policy)
    return pb.DescribePolicyResponse(
        policy=convert.policy_to_proto(policy, rec.version),
        holder=holder_of(policy.egress_source_ip, snap.of(ASSIGNMENT)),
        events=events_of(snap.of(EVENT).values(), "policy", name),
        # All zero until a datapath reports its eBPF/nftables counters.
        counters=pb.PolicyCounters(name=name, **counters(name, policy.egress_source_ip)),
        exclusions=[pb.PolicyExclusion(cidr=c, reason=r)
                    for c, r in effective.exclusions(policy, store.snapshot([NODE]).of(NODE).values())],
        shadowed=[pb.ShadowedTraffic(pod=s.pod, destination=s.destination, policy=s.policy) for s in shadows],
        shadowed_pods=shadowed_pods,
        conditions=_conditions(store, POLICY, rec, cond.policy_conditions(rec, snap.of(ASSIGNMENT), _datapaths(snap),
                                                                          _up(nodes()))),
    )


_WORLD_KINDS = (POD, NAMESPACE, POLICY, ASSIGNMENT, NODE)
_worlds: "weakref.WeakKeyDictionary[base.Store, tuple[int, effective.World]]" = weakref.WeakKeyDictionary()


def _world(store: base.Store) -> effective.World:
    """The effective-IP inputs now; the same World while the store's revision is unchanged (a plan's
    refresh asks for every policy's impact in a row)."""
    snap = store.snapshot(_WORLD_KINDS)
    hit = _worlds.get(store)
    if hit is not None and hit[0] == snap.revision:
        return hit[1]
    world = effective.world_of(snap, typed.parsed(store).all)
    _worlds[store] = (snap.revision, world)
    return world


def effective_ip(store: base.Store, namespace: str, pod: str, destination: str) -> pb.EffectiveIP:
    bad = []
    for field_name, value in (("namespace", namespace), ("pod", pod)):
        if not value:
            bad.append(models.Violation((field_name,), "this attribute is required"))
    try:
        destination = models.parse_ipv4(destination)
    except ValueError as err:
        bad.append(models.Violation(("destination",), str(err)))
    if bad:
        raise models.InvalidObject("effective IP query", f"{namespace}/{pod}", bad)
    world = _world(store)
    key = f"{namespace}/{pod}"
    if key not in world.pods:
        raise base.NotFound(POD, key)
    e = effective.effective_ip(world, world.pods[key], destination)
    return pb.EffectiveIP(source_ip=e.source_ip, policy=e.policy, holder=e.holder, dropped=e.dropped, node=e.node)


def _impact_message(i: effective.Impact) -> pb.PolicyImpact:
    return pb.PolicyImpact(
        selected_pods=i.selected_pods,
        sample=i.sample,
        changes=[pb.SourceChange(pod=c.pod, destination=c.destination, before=c.before, after=c.after) for c in i.changes],
        changed_pods=i.changed_pods,
    )


def policy_selections(store: base.Store) -> dict[str, pb.PolicySelection]:
    """Every stored policy's selection now (ListPolicies with_selection)."""
    return {name: pb.PolicySelection(selected_pods=n, sample=sample)
            for name, (n, sample) in effective.selections(_world(store)).items()}


def policy_impact(store: base.Store, policy: models.Policy) -> pb.PolicyImpact:
    """What writing `policy` would change; a policy whose source IP is still to be allocated and cannot be (its
    gateway is missing or full: the write will say so) shows only the pods it selects."""
    world = _world(store)
    if policy.egress_source_ip is None:
        selected = sorted(k for k, pod in world.pods.items() if effective.selects(world, policy, pod))
        return pb.PolicyImpact(selected_pods=len(selected), sample=selected[:effective.SAMPLE])
    return _impact_message(effective.impact(world, policy))


def gateway_impact(store: base.Store, gateway: models.Gateway) -> pb.PolicyImpact:
    """What writing `gateway` would change (see effective.gateway_impact)."""
    snap = store.snapshot([POD, NAMESPACE, POLICY, ASSIGNMENT, NODE, GATEWAY])
    cache = typed.parsed(store)
    world = effective.world_of(snap, cache.all)
    return _impact_message(effective.gateway_impact(world, cache.all(snap, GATEWAY), gateway))
