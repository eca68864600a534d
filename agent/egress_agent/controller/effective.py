"""Which source IP a pod's traffic leaves with, and what a policy change would change (pure: no I/O).

The answer follows the datapath's own rules (`node/desired.py`, the steering
classifier and `datapath/nat.py`):

- traffic to a cluster pod CIDR, a service CIDR or a node subnet is not
  NATed: it keeps the pod's IP;
- among the policies that select the pod and cover the destination (a CIDR
  contains it and no longer excluded CIDR of the same policy does), the lowest
  priority wins, then the longest prefix, then the policy name
  (`egress_api.precedence`);
- that policy's traffic leaves from the node holding its `egress_source_ip`
  with that address, or is dropped when no node holds it (fail closed);
- traffic no policy selects leaves from the pod's node with the node's IP.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from egress_agent.store import typed
from egress_agent.store.assignment import holders
from egress_agent.store.base import ASSIGNMENT, NAMESPACE, NODE, POD, POLICY, Snapshot
from egress_api import models
from egress_api.precedence import Rule, shadowed as shadowed_by, winner

SAMPLE = 10  # pods named in an impact's sample
CHANGES = 20  # source changes listed in an impact


@dataclass(frozen=True)
class World:
    pods: dict[str, models.Pod]  # "namespace/name" -> pod
    namespace_labels: dict[str, dict[str, str]]
    policies: dict[str, models.Policy]
    holders: dict[str, str]  # floating IP -> node holding it ("" = nobody)
    node_addresses: dict[str, str]  # node -> uplink address
    pod_cidrs: tuple[ipaddress.IPv4Network, ...]  # every in-cluster destination: pod, service and node CIDRs


def world_of(snapshot: Snapshot, models_of: typed.ModelsOf = typed.parse_all) -> World:
    """The inputs, from one snapshot of POD, NAMESPACE, POLICY, ASSIGNMENT and NODE records.

    `models_of` parses records (the store's cache, `typed.parsed(store).all`, in the agent)."""
    nodes = snapshot.of(NODE)
    return World(
        pods=dict(models_of(snapshot, POD)),
        namespace_labels={n: r.value.get("labels", {}) for n, r in snapshot.of(NAMESPACE).items()},
        policies=dict(models_of(snapshot, POLICY)),
        holders=holders(snapshot.of(ASSIGNMENT)),
        node_addresses={n: str(ipaddress.ip_interface(r.value["node_ip"]).ip) for n, r in nodes.items() if r.value.get("node_ip")},
        pod_cidrs=in_cluster(nodes.values()),
    )


def in_cluster(node_records) -> tuple[ipaddress.IPv4Network, ...]:
    """Destinations no policy steers, from the NODE records: pod CIDRs, service CIDRs, node subnets."""
    nets = set()
    for r in node_records:
        v = r.value
        if v.get("pod_cidr"):
            nets.add(ipaddress.ip_network(v["pod_cidr"]))
        nets.update(ipaddress.ip_network(c) for c in v.get("service_cidrs") or ())
        if v.get("node_ip"):
            nets.add(ipaddress.ip_interface(v["node_ip"]).network)
    return tuple(ipaddress.collapse_addresses(nets))


@dataclass(frozen=True)
class Effective:
    source_ip: str  # "" when dropped
    policy: str  # "" when none applies
    holder: str  # node the traffic leaves from
    dropped: bool
    node: str  # the pod's node


def selects(world: World, policy: models.Policy, pod: models.Pod) -> bool:
    return policy.selects(world.namespace_labels.get(pod.namespace, {}), pod.labels)


def effective_ip(world: World, pod: models.Pod, destination: str, held_anyway: frozenset[str] = frozenset()) -> Effective:
    """Where `pod`'s traffic to `destination` leaves from. IPs in `held_anyway` count as held (a preview)."""
    dst = ipaddress.ip_address(destination)
    if any(dst in net for net in world.pod_cidrs):
        return Effective(pod.ip, "", pod.node, False, pod.node)
    candidates = [Rule.of(p) for p in world.policies.values() if selects(world, p, pod)]
    name = winner(candidates, dst)
    if name is None:
        return Effective(world.node_addresses.get(pod.node, ""), "", pod.node, False, pod.node)
    policy = world.policies[name]
    holder = world.holders.get(policy.egress_source_ip, "")
    if not holder and policy.egress_source_ip in held_anyway:
        holder = "(its gateway node)"
    if not holder:
        return Effective("", policy.name, "", True, pod.node)
    return Effective(policy.egress_source_ip, policy.name, holder, False, pod.node)


@dataclass(frozen=True)
class SourceChange:
    pod: str
    destination: str
    before: str  # "" = dropped
    after: str


@dataclass(frozen=True)
class Impact:
    selected_pods: int
    sample: list[str]
    changes: list[SourceChange]
    changed_pods: int


def _changes(before: World, after: World, pods: list[str], cidrs: set[str], held_anyway: frozenset[str]) -> tuple[list, int]:
    """(the first CHANGES source changes, how many pods change) for `pods`' traffic to each of `cidrs`."""
    ordered = sorted(cidrs, key=ipaddress.ip_network)
    changes, changed = [], set()
    for key in pods:
        pod = before.pods[key]
        for cidr in ordered:
            dst = str(ipaddress.ip_network(cidr).network_address)
            was = effective_ip(before, pod, dst).source_ip
            will = effective_ip(after, pod, dst, held_anyway=held_anyway).source_ip
            if was != will:
                changed.add(key)
                changes.append(SourceChange(key, cidr, was, will))
    return changes[:CHANGES], len(changed)


def impact(world: World, policy: models.Policy) -> Impact:
    """What writing `policy` (create or update) would change, its source IP counted as held once written."""
    after = replace(world, policies={**world.policies, policy.name: policy})
    old = world.policies.get(policy.name)
    selected = sorted(k for k, pod in world.pods.items() if selects(world, policy, pod))
    concerned = sorted(set(selected) | {k for k, pod in world.pods.items() if old and selects(world, old, pod)})
    cidrs = set(policy.destination_cidrs) | set(old.destination_cidrs if old else ())
    changes, changed = _changes(world, after, concerned, cidrs, frozenset({policy.egress_source_ip}))
    return Impact(len(selected), selected[:SAMPLE], changes, changed)


def selections(world: World) -> dict[str, tuple[int, list[str]]]:
    """policy name -> (how many pods it selects, the first SAMPLE of them by key), for every stored policy.

    Pods are matched once per distinct (namespace, labels): a cluster has far fewer label sets than pods.
    """
    groups: dict[tuple, list[str]] = {}
    for key in sorted(world.pods):
        pod = world.pods[key]
        groups.setdefault((pod.namespace, tuple(sorted(pod.labels.items()))), []).append(key)
    out = {}
    for name, policy in world.policies.items():
        selected = sorted(k for keys in groups.values() if selects(world, policy, world.pods[keys[0]]) for k in keys)
        out[name] = (len(selected), selected[:SAMPLE])
    return out


def gateway_impact(world: World, gateways: dict[str, models.Gateway], gateway: models.Gateway) -> Impact:
    """What writing `gateway` would change: the policies whose source IP it adds start leaving with it.

    Their traffic was dropped (fail-closed: no gateway listed the IP); once the
    gateway is written the leader assigns the IP, counted here as held. An IP
    the change removes is the plan checks' concern, not this preview's: a
    removal under a policy that stays is refused (`models.released_in_use`),
    and a policy removed in the same plan is not dropped but gone.
    """
    others = {ip for n, g in gateways.items() if n != gateway.name for ip in g.floating_ips}
    listed_before = others | set(gateways[gateway.name].floating_ips if gateway.name in gateways else ())
    added = frozenset(set(gateway.floating_ips) - listed_before)
    touched = [p for p in world.policies.values() if p.egress_source_ip in added]
    selected = sorted(k for k, pod in world.pods.items() if any(selects(world, p, pod) for p in touched))
    cidrs = {c for p in touched for c in p.destination_cidrs}
    changes, changed = _changes(world, world, selected, cidrs, added)
    return Impact(len(selected), selected[:SAMPLE], changes, changed)


def exclusions(policy: models.Policy, node_records) -> list[tuple[str, str]]:
    """(CIDR, why) the policy never steers inside its destinations: its own holes, and the cluster's own
    destinations (pod CIDRs, service CIDRs, node subnets, from the NODE records) that overlap them."""
    dsts = [ipaddress.ip_network(c) for c in policy.destination_cidrs]
    out: dict[str, str] = {c: "excluded_cidrs" for c in policy.excluded_cidrs}
    for r in sorted(node_records, key=lambda r: r.value.get("name", "")):
        v = r.value
        found = [(c, "service CIDR") for c in v.get("service_cidrs") or ()]
        if v.get("pod_cidr"):
            found.append((v["pod_cidr"], f"pod CIDR of {v.get('name', '')}"))
        if v.get("node_ip"):
            found.append((str(ipaddress.ip_interface(v["node_ip"]).network), "node subnet"))
        for cidr, why in found:
            if cidr not in out and any(ipaddress.ip_network(cidr).overlaps(d) for d in dsts):
                out[cidr] = why
    return sorted(out.items(), key=lambda item: ipaddress.ip_network(item[0]))


@dataclass(frozen=True)
class Shadow:
    pod: str
    destination: str
    policy: str


def shadowed(world: World, policy: models.Policy) -> tuple[list[Shadow], int]:
    """(the first CHANGES shadowed (pod, destination, winner), how many pods) for the pods `policy` selects.

    Pods are grouped by the set of policies selecting them: precedence is resolved once per group.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for key, pod in sorted(world.pods.items()):
        if selects(world, policy, pod):
            names = tuple(sorted(n for n, p in world.policies.items() if n != policy.name and selects(world, p, pod)))
            groups.setdefault(names, []).append(key)
    out, pods = [], set()
    mine = Rule.of(policy)
    for names, keys in sorted(groups.items()):
        found = shadowed_by([Rule.of(world.policies[n]) for n in names], mine) if names else []
        for key in keys if found else ():
            pods.add(key)
            out.extend(Shadow(key, dst, other) for dst, other in found)
    return sorted(out, key=lambda s: (s.pod, s.destination, s.policy))[:CHANGES], len(pods)
