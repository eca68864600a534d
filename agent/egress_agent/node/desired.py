"""This node's desired datapath, computed from one store snapshot (pure: no kernel, no I/O).

Inputs are the records of one revision: pods, namespaces, policies,
assignments (floating IP -> node) and nodes (node -> node IP, pod CIDR), plus
the floating IPs this node may hold now (from fencing; in a one-node store,
the assignments naming this node).

The rules, from the seed:
- a policy selects a pod when any of its rules matches the pod's namespace
  labels and the pod's labels (`models.Policy.selects`); a pod whose namespace
  has no record has no namespace labels;
- a policy's traffic goes to the node its `egress_source_ip` is assigned to;
  when nobody holds that IP -- unassigned, the holder has no node record, or
  the assignment names this node but fencing says it must not hold it -- the
  traffic is dropped (fail closed), never masqueraded to a node IP;
- local pods are the pods whose record names this node; their host-side
  interface is the one the CNI chain created (`Pod.interface`), or for the
  lab's direct wiring the veth named from the pod key (`naming.host_veth_name`).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional

from egress_agent.datapath.state import NodeDatapathState, PolicyPath
from egress_agent.node.naming import host_veth_name, pod_key
from egress_agent.store.assignment import held_by, holder_of
from egress_agent.store.base import ASSIGNMENT, NAMESPACE, NODE, POD, POLICY, Snapshot
from egress_api import models

#: The record kinds `desired_state` reads (the reconciler watches exactly these, plus gateways).
KINDS = (POD, NAMESPACE, POLICY, ASSIGNMENT, NODE)


def _address(node_ip: str) -> str:
    return str(ipaddress.ip_interface(node_ip).ip)


def assigned_to(snapshot: Snapshot, node: str) -> set[str]:
    """Floating IPs whose stored assignment names `node` (what it holds when nothing fences it)."""
    return held_by(snapshot.of(ASSIGNMENT), node)


def selections(
    snapshot: Snapshot, policies: list[models.Policy], memo: Optional["DesiredMemo"] = None
) -> dict[str, frozenset[str]]:
    """Policy name -> IPs of every pod (cluster-wide) it selects.

    Pods are grouped by their (namespace labels, pod labels): each policy is
    matched once per distinct label set, not once per pod. With a `memo` the
    answer is kept between passes and only the pods whose records changed are
    regrouped (`DesiredMemo.selections`): a pod start changes one record.
    """
    ns_keys = {name: tuple(sorted(rec.value.get("labels", {}).items())) for name, rec in snapshot.of(NAMESPACE).items()}
    if memo is not None:
        return memo.selections(snapshot.of(POD), policies, ns_keys)
    by_labels: dict[tuple, list[str]] = {}
    for rec in snapshot.of(POD).values():
        v = rec.value
        labels = tuple(sorted(v.get("labels", {}).items()))
        by_labels.setdefault((ns_keys.get(v.get("namespace", ""), ()), labels), []).append(v["ip"])
    out: dict[str, set[str]] = {p.name: set() for p in policies}
    for key, ips in by_labels.items():
        ns_d, labels_d = dict(key[0]), dict(key[1])
        for p in policies:
            if p.selects(ns_d, labels_d):
                out[p.name].update(ips)
    return {name: frozenset(ips) for name, ips in out.items()}


@dataclass
class DesiredMemo:
    """What `desired_state` derived from records that have not changed since the last pass.

    A pass at 1,000 policies re-validated every policy and matched every label
    set against every policy (seconds of CPU), although a pod start changes one
    record. The memo keeps each policy's model while its record is the same, and
    each label set's matching policies while the policies are the same objects.
    Outputs are exactly those without a memo; it only saves the work.
    """

    _policies: dict[str, tuple[dict, models.Policy]] = field(default_factory=dict)
    _matched_for: tuple = ()
    _matched: dict[tuple, tuple[str, ...]] = field(default_factory=dict)
    # selections(): pod key -> (record version, its group, its IP); group -> its pods' IPs (counted);
    # policy -> the groups it matches; policy -> the IPs it selects (the answer, kept between passes)
    _selected_for: tuple = ()
    _ns_keys: dict = field(default_factory=dict)
    _pods: dict[str, tuple] = field(default_factory=dict)
    _group_ips: dict[tuple, Counter] = field(default_factory=dict)
    _policy_groups: dict[str, set] = field(default_factory=dict)
    _selected: dict[str, frozenset] = field(default_factory=dict)
    # path(): policy name -> (its model, gateway, selection) and the PolicyPath built from them
    _paths: dict[str, tuple[models.Policy, Optional[str], frozenset, PolicyPath]] = field(default_factory=dict)

    def policy(self, name: str, value: dict) -> models.Policy:
        hit = self._policies.get(name)
        if hit is not None and hit[0] == value:
            return hit[1]
        model = models.Policy.model_validate(value)
        self._policies[name] = (value, model)
        return model

    def selections(self, pods: dict, policies: list[models.Policy], ns_keys: dict[str, tuple]) -> dict[str, frozenset[str]]:
        """`selections` kept up to date: only pods whose record version changed are regrouped, and only the
        policies matching a group whose members changed get a new set. Policies or namespace labels that
        changed start it over."""
        if ns_keys != self._ns_keys or len(policies) != len(self._selected_for) or any(
                a is not b for a, b in zip(policies, self._selected_for)):
            self._selected_for, self._ns_keys = tuple(policies), dict(ns_keys)
            self._pods, self._group_ips, self._policy_groups = {}, {}, {p.name: set() for p in policies}
            self._selected = {p.name: frozenset() for p in policies}
        changed: set[tuple] = set()
        for key, rec in pods.items():
            entry = self._pods.get(key)
            if entry is not None and entry[0] == rec.version:
                continue
            if entry is not None:
                self._leave(entry, changed)
            v = rec.value
            group = (ns_keys.get(v.get("namespace", ""), ()), tuple(sorted(v.get("labels", {}).items())))
            self._pods[key] = (rec.version, group, v["ip"])
            self._join(group, v["ip"], policies, changed)
        if len(self._pods) != len(pods):
            for key in set(self._pods) - set(pods):
                self._leave(self._pods.pop(key), changed)
        names = {n for g in changed for n in self._matched.get(g, ())}
        for n in names:
            self._selected[n] = frozenset(ip for g in self._policy_groups[n] for ip in self._group_ips.get(g, ()))
        return self._selected

    def _join(self, group: tuple, ip: str, policies: list[models.Policy], changed: set) -> None:
        ips = self._group_ips.get(group)
        if ips is None:
            ips = self._group_ips[group] = Counter()
            matched = self.matches_for(policies)
            names = matched.get(group)
            if names is None:
                ns_d, labels_d = dict(group[0]), dict(group[1])
                names = matched[group] = tuple(p.name for p in policies if p.selects(ns_d, labels_d))
            for n in names:
                self._policy_groups[n].add(group)
        ips[ip] += 1  # counted: two pods may share an IP for a moment (one re-created under another name)
        changed.add(group)

    def _leave(self, entry: tuple, changed: set) -> None:
        _, group, ip = entry
        ips = self._group_ips[group]
        ips[ip] -= 1
        if ips[ip] <= 0:
            del ips[ip]
        if not ips:
            del self._group_ips[group]
            for n in self._matched.get(group, ()):
                self._policy_groups[n].discard(group)
        changed.add(group)

    def path(self, policy: models.Policy, gateway: Optional[str], selected: frozenset[str]) -> PolicyPath:
        """The PolicyPath of the last pass when its inputs are the same objects: building 1,000 of them (their
        frozensets and precedence rules) was half of a pod-start pass's desired state, and a reused one also
        compares equal to the applied state's by identity."""
        hit = self._paths.get(policy.name)
        if hit is not None and hit[0] is policy and hit[1] == gateway and hit[2] is selected:
            return hit[3]
        built = policy_path(policy, gateway, selected)
        self._paths[policy.name] = (policy, gateway, selected, built)
        return built

    def forget_policies_except(self, names: set[str]) -> None:
        for name in set(self._policies) - names:
            del self._policies[name]
        for name in set(self._paths) - names:
            del self._paths[name]

    def matches_for(self, policies: list[models.Policy]) -> dict[tuple, tuple[str, ...]]:
        """The label set -> matching policy names cache, emptied when any policy object changed."""
        if len(policies) != len(self._matched_for) or any(a is not b for a, b in zip(policies, self._matched_for)):
            self._matched_for = tuple(policies)
            self._matched = {}
        return self._matched


def desired_state(
    snapshot: Snapshot,
    node: models.Node,
    uplink: str,
    held: Optional[Iterable[str]] = None,
    memo: Optional[DesiredMemo] = None,
) -> NodeDatapathState:
    """`node`'s NodeDatapathState at `snapshot`. `held`: floating IPs it may hold (None: its assignments).

    `memo` (kept by the caller between passes) saves re-deriving what did not change.
    """
    if not node.pod_cidr:
        raise ValueError(f"node {node.name} has no pod CIDR: the datapath needs --pod-cidr")
    held_ips = set(assigned_to(snapshot, node.name) if held is None else held)
    node_records = snapshot.of(NODE)
    node_address = {name: _address(rec.value["node_ip"]) for name, rec in node_records.items() if rec.value.get("node_ip")}
    node_address[node.name] = _address(node.node_ip)
    me = node_address[node.name]

    policy_records = snapshot.of(POLICY)
    if memo is None:
        policies = [models.Policy.model_validate(r.value) for r in policy_records.values()]
    else:
        memo.forget_policies_except(set(policy_records))
        policies = [memo.policy(name, r.value) for name, r in policy_records.items()]
    policies.sort(key=lambda p: p.name)
    selected = selections(snapshot, policies, memo)
    assignments = snapshot.of(ASSIGNMENT)
    paths = []
    for p in policies:
        holder = holder_of(p.egress_source_ip, assignments)
        gateway = node_address.get(holder) if holder else None
        if held is not None and p.egress_source_ip in held_ips:
            # Fencing granted it from an assignment newer than this snapshot (its watch saw the commit a few
            # ms before the reconciler's mirror did): this node is the gateway now, not the old holder.
            gateway = me
        elif gateway == me and p.egress_source_ip not in held_ips:
            gateway = None  # assigned here but fenced (or not yet confirmed): drop rather than masquerade
        paths.append(policy_path(p, gateway, selected[p.name]) if memo is None else memo.path(p, gateway, selected[p.name]))

    local_pods: dict[str, str] = {}
    for rec in snapshot.of(POD).values():
        v = rec.value
        if v.get("node") == node.name:
            local_pods[v["ip"]] = pod_interface(v)
    pod_cidrs = {rec.value["pod_cidr"] for rec in node_records.values() if rec.value.get("pod_cidr")}
    return NodeDatapathState(
        node=node.name,
        uplink=uplink,
        node_ip=node.node_ip,
        pod_cidr=node.pod_cidr,
        cluster_pod_cidrs=frozenset(pod_cidrs | {node.pod_cidr}),
        local_pods=local_pods,
        policies=tuple(paths),
        held_floating_ips=frozenset(held_ips),
        service_cidrs=frozenset({c for rec in node_records.values() for c in rec.value.get("service_cidrs") or ()}
                                | set(node.service_cidrs)),
        node_subnets=frozenset(str(ipaddress.ip_interface(rec.value["node_ip"]).network)
                               for rec in node_records.values() if rec.value.get("node_ip")),
    )


def policy_path(policy: models.Policy, gateway: Optional[str], selected: frozenset[str]) -> PolicyPath:
    return PolicyPath(
        name=policy.name,
        destination_cidrs=frozenset(policy.destination_cidrs),
        egress_source_ip=policy.egress_source_ip,
        gateway_node_ip=gateway,
        selected_pod_ips=frozenset(selected),
        excluded_cidrs=frozenset(policy.excluded_cidrs),
        priority=policy.priority,
    )


def pod_interface(pod: dict) -> str:
    """The host-side interface of a pod record: the CNI chain's, or the lab's veth named from the pod key."""
    return pod.get("interface") or host_veth_name(pod["namespace"], pod["name"])


def local_pod_keys(snapshot: Snapshot, node: str) -> dict[str, str]:
    """Host interface -> pod key of every pod recorded on `node` (to name pods that cannot be programmed)."""
    out = {}
    for rec in snapshot.of(POD).values():
        v = rec.value
        if v.get("node") == node:
            out[pod_interface(v)] = pod_key(v["namespace"], v["name"])
    return out
