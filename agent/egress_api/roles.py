"""Who may call what: the four roles of the egress.v1 API, and how a certificate names one.

    admin      everything: gateways, policies, the pod inventory, reads
    viewer     reads, status, events, validation and plan-time impact (a `terraform plan`
               pipeline can run on a viewer certificate; only `apply` needs admin)
    inventory  the pod/namespace feed (CNI plugin, Kubernetes watcher): upsert and delete
               pods, upsert namespaces, read pods and namespaces; nothing about policies
    peer       what agents may ask each other: health and node/gateway status

A client certificate names its role in a URI subject alternative name,
`spiffe://egress/role/<role>`; an agent's certificate names its node,
`spiffe://egress/node/<name>`, which is the `peer` role. SPIFFE-style URI SANs,
not a subject OU: a SAN is typed and matched exactly (no parsing of
distinguished names), it is what service meshes and SPIFFE tooling issue, and
the CA/Browser Forum has removed OU from public certificates. Shared by the
agent (authorization) and `egressctl certs init` (issuing), so the two cannot
drift.
"""

from __future__ import annotations

ROLES = ("admin", "viewer", "inventory", "peer")
URI_PREFIX = "spiffe://egress/"
ROLE_URI = URI_PREFIX + "role/"
NODE_URI = URI_PREFIX + "node/"

_READS = frozenset({
    "GetGateway", "ListGateways", "ValidateGateway", "GetPolicy", "ListPolicies", "ValidatePolicy",
    "DescribePolicy", "GetPolicyImpact", "GetGatewayImpact", "GetEffectiveIP", "GetGatewayStatus", "GetNode",
    "ListNodes", "ListEvents", "GetPod", "ListPods", "ListNamespaces", "Health",
})
_INVENTORY_WRITES = frozenset({"UpsertPod", "DeletePod", "UpsertNamespace"})
_CONFIG_WRITES = frozenset({
    "CreateGateway", "UpdateGateway", "DeleteGateway", "CreatePolicy", "UpdatePolicy", "DeletePolicy",
})

#: Every method of egress.v1 and the roles that may call it (tests check the table covers the proto).
METHODS: dict[str, frozenset[str]] = {
    **{m: frozenset({"admin", "viewer"}) for m in _READS},
    **{m: frozenset({"admin", "inventory"}) for m in _INVENTORY_WRITES},
    **{m: frozenset({"admin"}) for m in _CONFIG_WRITES},
}
for _m in ("GetPod", "ListPods", "ListNamespaces", "Health"):
    METHODS[_m] |= {"inventory"}
for _m in ("Health", "GetNode", "ListNodes", "GetGatewayStatus"):
    METHODS[_m] |= {"peer"}

#: Methods that change state: each gets an audit line.
WRITES = _INVENTORY_WRITES | _CONFIG_WRITES


def allowed(role: str, method: str) -> bool:
    """Whether `role` may call `method` (a bare name like "CreatePolicy"); unknown methods: nobody."""
    return role in METHODS.get(method, ())


def role_from_uris(uris: list[str]) -> tuple[str, str]:
    """(role, principal) from a certificate's URI SANs; ("", "") when none names an egress identity."""
    for uri in uris:
        if uri.startswith(ROLE_URI) and uri[len(ROLE_URI):] in ROLES:
            return uri[len(ROLE_URI):], uri
        if uri.startswith(NODE_URI) and uri[len(NODE_URI):]:
            return "peer", uri
    return "", ""
