"""Proto messages <-> models.

`*_to_dict` turn a request message into plain data for `models.parse`, so the
agent validates exactly what a client sent (and reports attribute paths);
`*_to_proto` turn a (validated) model into a message.

An unset selector message means "match everything" and maps to None
(`HasField`), which is different from a set-but-empty selector only in form:
both match everything.
"""

from __future__ import annotations

from typing import Any, Iterable

from egress_api import models
from egress_api.v1 import egress_pb2 as pb

# --- selectors and rules -----------------------------------------------------------


def _selector_to_dict(msg: pb.EgressRule | pb.Gateway, field: str) -> dict[str, Any] | None:
    if not msg.HasField(field):
        return None
    sel = getattr(msg, field)
    return {
        "match_labels": dict(sel.match_labels),
        "match_expressions": [{"key": e.key, "operator": e.operator, "values": list(e.values)}
                              for e in sel.match_expressions],
    }


def _selector_to_proto(sel: models.LabelSelector | None) -> pb.LabelSelector | None:
    if sel is None:
        return None
    return pb.LabelSelector(
        match_labels=dict(sel.match_labels),
        match_expressions=[pb.LabelSelectorRequirement(key=e.key, operator=e.operator, values=list(e.values))
                           for e in sel.match_expressions],
    )


def _rule_to_proto(rule: models.EgressRule) -> pb.EgressRule:
    msg = pb.EgressRule()
    if rule.namespace_selector is not None:
        msg.namespace_selector.CopyFrom(_selector_to_proto(rule.namespace_selector))
    if rule.pod_selector is not None:
        msg.pod_selector.CopyFrom(_selector_to_proto(rule.pod_selector))
    return msg


# --- gateways and policies ------------------------------------------------------------


def gateway_to_dict(msg: pb.Gateway) -> dict[str, Any]:
    return {"name": msg.name, "floating_ips": list(msg.floating_ips),
            "node_selector": _selector_to_dict(msg, "node_selector"),
            "max_ips_per_node": msg.max_ips_per_node or None}  # 0: no cap


def gateway_to_proto(gw: models.Gateway, resource_version: int = 0) -> pb.Gateway:
    msg = pb.Gateway(name=gw.name, floating_ips=list(gw.floating_ips), resource_version=resource_version,
                     max_ips_per_node=gw.max_ips_per_node or 0)
    if gw.node_selector is not None:
        msg.node_selector.CopyFrom(_selector_to_proto(gw.node_selector))
    return msg


def gateway_from_proto(msg: pb.Gateway) -> models.Gateway:
    return models.parse("gateway", gateway_to_dict(msg))


def policy_to_dict(msg: pb.Policy) -> dict[str, Any]:
    return {
        "name": msg.name,
        "egress": [
            {
                "namespace_selector": _selector_to_dict(rule, "namespace_selector"),
                "pod_selector": _selector_to_dict(rule, "pod_selector"),
            }
            for rule in msg.egress
        ],
        "destination_cidrs": list(msg.destination_cidrs),
        "egress_source_ip": msg.egress_source_ip or None,  # empty: allocated from `gateway`
        "gateway": msg.gateway or None,
        "excluded_cidrs": list(msg.excluded_cidrs),
        **({"priority": msg.priority} if msg.HasField("priority") else {}),
    }


def policy_to_proto(p: models.Policy, resource_version: int = 0) -> pb.Policy:
    return pb.Policy(
        name=p.name,
        egress=[_rule_to_proto(r) for r in p.egress],
        destination_cidrs=list(p.destination_cidrs),
        egress_source_ip=p.egress_source_ip or "",
        gateway=p.gateway or "",
        resource_version=resource_version,
        priority=p.priority,
        excluded_cidrs=list(p.excluded_cidrs),
    )


def policy_from_proto(msg: pb.Policy) -> models.Policy:
    return models.parse("policy", policy_to_dict(msg))


# --- inventory --------------------------------------------------------------------------


def pod_to_dict(msg: pb.Pod) -> dict[str, Any]:
    return {"name": msg.name, "namespace": msg.namespace, "node": msg.node, "ip": msg.ip, "interface": msg.interface,
            "uid": msg.uid, "labels": dict(msg.labels)}


def pod_to_proto(p: models.Pod) -> pb.Pod:
    return pb.Pod(name=p.name, namespace=p.namespace, node=p.node, ip=p.ip, interface=p.interface, uid=p.uid,
                  labels=dict(p.labels))


def pod_from_proto(msg: pb.Pod) -> models.Pod:
    return models.parse("pod", pod_to_dict(msg))


def namespace_to_dict(msg: pb.Namespace) -> dict[str, Any]:
    return {"name": msg.name, "labels": dict(msg.labels)}


def namespace_to_proto(ns: models.Namespace) -> pb.Namespace:
    return pb.Namespace(name=ns.name, labels=dict(ns.labels))


def namespace_from_proto(msg: pb.Namespace) -> models.Namespace:
    return models.parse("namespace", namespace_to_dict(msg))


# --- violations -------------------------------------------------------------------------


def violation_to_proto(v: models.Violation) -> pb.Violation:
    return pb.Violation(path=[str(p) for p in v.path], message=v.message)


def violation_from_proto(msg: pb.Violation) -> models.Violation:
    # List indexes travel as decimal strings; back to ints so paths index Terraform lists/sets.
    return models.Violation(tuple(int(p) if p.isdigit() else p for p in msg.path), msg.message)


def violations_to_bytes(violations: Iterable[models.Violation]) -> bytes:
    return pb.Violations(items=[violation_to_proto(v) for v in violations]).SerializeToString()


def violations_from_bytes(data: bytes) -> list[models.Violation]:
    return [violation_from_proto(v) for v in pb.Violations.FromString(data).items]
