"""Gateways and policies as files: the documents `egressctl apply -f` reads and `egressctl edit` writes.

A document looks like the seed's custom resources (YAML or JSON; several per
file as YAML documents or a JSON list):

    kind: EgressNATPolicy            # or AnthosNetworkGateway; "policy" / "gateway" also work
    metadata:
      name: egress
      resourceVersion: 42            # optional: apply only if the stored object still has it
    spec:
      egress:
      - namespaceSelector: {matchLabels: {user: alice}}
        podSelector: {matchLabels: {role: frontend}}
      destinationCIDRs: [198.51.100.0/24]
      egressSourceIP: 192.0.2.100

Spec keys may be written as in the seed (camelCase) or as in Terraform
(snake_case). This module only maps the document's shape; the values are
validated by `models.parse`, the one place validation lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import yaml

from egress_api import models

KINDS = {
    "anthosnetworkgateway": "gateway",
    "gateway": "gateway",
    "egressnatpolicy": "policy",
    "policy": "policy",
}
KIND_NAMES = {"gateway": "AnthosNetworkGateway", "policy": "EgressNATPolicy"}

# The seed's spellings of the models' attributes (everything else is written as the models spell it).
_CAMEL = {
    "floatingIPs": "floating_ips",
    "destinationCIDRs": "destination_cidrs",
    "egressSourceIP": "egress_source_ip",
    "namespaceSelector": "namespace_selector",
    "podSelector": "pod_selector",
    "matchLabels": "match_labels",
    "matchExpressions": "match_expressions",
    "nodeSelector": "node_selector",
    "maxIPsPerNode": "max_ips_per_node",
}
_SNAKE = {v: k for k, v in _CAMEL.items()}


class ManifestError(ValueError):
    """A document that is not a gateway or policy at all (its values are the models' business)."""


@dataclass(frozen=True)
class Document:
    kind: str  # "gateway" | "policy"
    obj: models.Gateway | models.Policy
    resource_version: int  # 0 = not given
    source: str  # where it came from, for messages: "FILE (document 2)"


def load(text: str, source: str) -> list[Document]:
    """Every document in `text`, validated; raises ManifestError or models.InvalidObject naming the document."""
    try:
        raw = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise ManifestError(f"{source}: not YAML or JSON: {err}") from None
    if len(raw) == 1 and isinstance(raw[0], list):  # a JSON list of documents
        raw = raw[0]
    if not raw:
        raise ManifestError(f"{source}: no documents")
    docs = []
    for i, item in enumerate(raw, 1):
        where = source if len(raw) == 1 else f"{source} (document {i})"
        docs.append(_document(item, where))
    names = [(d.kind, d.obj.name) for d in docs]
    for key in set(names):
        if names.count(key) > 1:
            raise ManifestError(f"{source}: {key[0]} {key[1]!r} appears more than once")
    return docs


def _document(item: Any, where: str) -> Document:
    if not isinstance(item, dict):
        raise ManifestError(f"{where}: a document must be a mapping with kind, metadata.name and spec")
    kind = KINDS.get(str(item.get("kind", "")).lower())
    if kind is None:
        raise ManifestError(f"{where}: kind {item.get('kind')!r} is not one of AnthosNetworkGateway, EgressNATPolicy")
    meta = item.get("metadata") or {}
    if not isinstance(meta, dict):
        raise ManifestError(f"{where}: metadata must be a mapping")
    spec = item.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError(f"{where}: spec must be a mapping")
    name = meta.get("name", item.get("name"))
    version = meta.get("resourceVersion", 0) or 0
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: metadata.resourceVersion must be a number, not {version!r}") from None
    data = {"name": name, **_keys(spec, _CAMEL)}
    try:
        obj = models.parse(kind, data)
    except models.InvalidObject as err:
        raise ManifestError(f"{where}: {err}; nothing was changed") from None
    return Document(kind, obj, version, where)


def render(kind: str, obj: models.Gateway | models.Policy, resource_version: int) -> str:
    """The YAML document `edit` opens: the stored object in the seed's spelling."""
    spec = obj.model_dump(mode="json", exclude={"name"}, exclude_none=True)
    doc = {
        "kind": KIND_NAMES[kind],
        "metadata": {"name": obj.name, "resourceVersion": resource_version},
        "spec": _keys(spec, _SNAKE),
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _keys(value: Any, mapping: dict[str, str]) -> Any:
    """`value` with dict keys renamed by `mapping`, recursively (label keys inside match_labels are left alone)."""
    if isinstance(value, list):
        return [_keys(v, mapping) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        new = mapping.get(k, k)
        out[new] = v if new in ("match_labels", "matchLabels") else _keys(v, mapping)
    return out


def ordered(docs: Iterable[Document]) -> list[Document]:
    """Gateways first: a policy's source IP must belong to a gateway when it is written."""
    return sorted(docs, key=lambda d: d.kind != "gateway")
