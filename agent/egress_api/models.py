"""The shared desired-state models: the one place where input is validated.

The agent validates every write with these models, and the provider validates
Terraform configuration with the same models at plan time, so a client other
than Terraform gets exactly the same errors. Field names match the Terraform
schema (snake_case), so a pydantic error location *is* the attribute path.

Any attribute of a gateway or policy may be `Pending`: Terraform does not
know it yet (a template over another resource's output, `count.index` at
validate, ...). Its checks wait until it is known, except that a known
beginning (`Pending(prefix="gw-")`) must be able to start a valid value.

Cross-object rules need the other objects, so they live in functions here:
`check_references` (errors: no two policies share a source IP; a policy naming
both `gateway` and `egress_source_ip` names one of that gateway's IPs) and
`reference_warnings` (a policy's source IP in no gateway, a floating IP in two
gateways, a gateway letting go of an IP a policy uses, a policy's gateway that
does not exist yet). A source IP to be allocated is `egress_api.allocation`'s
business: these rules skip a policy without one. The warnings are not
errors because Terraform writes independent objects in any order; the agent
stays fail-closed until they agree, and the provider turns them into plan
errors wherever the configuration decides them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterable, Optional

from egress_api import limits, precedence
from egress_api.precedence import DEFAULT_PRIORITY
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WrapValidator,
    field_validator,
    model_validator,
)

# --- Kubernetes naming rules -------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")


# What a string that may still grow must look like to be the start of a valid value.
_DNS1123_LABEL_START = re.compile(r"^[a-z0-9][-a-z0-9]*\Z")
_LABEL_VALUE_START = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*\Z")
_NAME_RULE = "use 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit (e.g. 'default')"
_LABEL_VALUE_RULE = "must be empty or 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"


def _check_object_name(value: str) -> str:
    if not value or len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(f"{value!r} is not a valid name: {_NAME_RULE}")
    return value


def _check_object_name_start(prefix: str) -> None:
    if len(prefix) > 63 or not _DNS1123_LABEL_START.match(prefix):
        raise ValueError(f"a name starting with {prefix!r} is not valid: {_NAME_RULE}")


def check_label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        raise ValueError(f"label key {key!r}: prefix {prefix!r} must be a DNS subdomain (e.g. 'example.com')")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(
            f"label key {key!r}: name must be 1-63 characters of letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return key


def check_label_value(value: str) -> str:
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        raise ValueError(f"label value {value!r} {_LABEL_VALUE_RULE}")
    return value


def _check_label_value_start(prefix: str) -> None:
    if len(prefix) > 63 or not _LABEL_VALUE_START.match(prefix):
        raise ValueError(f"a label value starting with {prefix!r} is not valid: it {_LABEL_VALUE_RULE}")


# --- IPv4 value types ----------------------------------------------------------


def parse_ipv4(value: Any) -> str:
    """A single IPv4 address, returned in canonical form."""
    if not isinstance(value, str):
        raise ValueError(f"expected an IPv4 address as a string, got {type(value).__name__}")
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IPv4 address (e.g. 192.0.2.100)") from None
    if ip.version != 4:
        raise ValueError(f"{value!r} is IPv6: the egress NAT gateway is IPv4 only")
    return str(ip)


def parse_ipv4_cidr(value: Any) -> str:
    """An IPv4 network in CIDR notation with no host bits set, in canonical form."""
    if not isinstance(value, str):
        raise ValueError(f"expected an IPv4 CIDR block as a string, got {type(value).__name__}")
    text = value.strip()
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IPv4 CIDR block (e.g. 198.51.100.0/24)") from None
    if net.version != 4:
        raise ValueError(f"{value!r} is IPv6: the egress NAT gateway is IPv4 only")
    if "/" not in text:
        raise ValueError(f"{value!r} has no prefix length: write it as {net.with_prefixlen}")
    if net.network_address != ipaddress.ip_interface(text).ip:
        raise ValueError(f"{value!r} has host bits set: did you mean {net.with_prefixlen}?")
    return net.with_prefixlen


def parse_ipv4_interface(value: Any) -> str:
    """An IPv4 address with prefix length, e.g. a node's uplink address 192.0.2.11/24."""
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"{value!r} must be an IPv4 address with prefix length (e.g. 192.0.2.11/24)")
    try:
        iface = ipaddress.ip_interface(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IPv4 address with prefix length (e.g. 192.0.2.11/24)") from None
    if iface.version != 4:
        raise ValueError(f"{value!r} is IPv6: the egress NAT gateway is IPv4 only")
    return iface.with_prefixlen


# The beginning of an IPv4 address (as parse_ipv4 reads it): whole octets 0-255 without leading zeros, then
# the start of one more. "192.0.2." and "192.0.2.1" can begin an address; "192.0.2.300" and "10.0.0.0." cannot.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_OCTET_START = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d?|0)?"
_IPV4_START = rf"\s*(?:{_OCTET}\.){{0,3}}{_OCTET_START}"
_IPV4_START_RE = re.compile(rf"^{_IPV4_START}\Z|^\s*{_OCTET}(?:\.{_OCTET}){{3}}\s+\Z")
_IPV4_CIDR_ADDRESS_START_RE = re.compile(rf"^{_IPV4_START}\Z")
_IPV4_FULL_RE = re.compile(rf"^\s*{_OCTET}(?:\.{_OCTET}){{3}}\Z")
# After the "/": a prefix length, or a netmask / hostmask (ipaddress accepts 10.0.0.0/255.0.0.0), whose
# first octet is one of these.
_MASK_FIRST_OCTETS = ("0", "128", "192", "224", "240", "248", "252", "254", "255", "1", "3", "7", "15", "31", "63", "127")
_CIDR_SUFFIX_STARTS = {s[:i] for s in (*map(str, range(33)), *_MASK_FIRST_OCTETS) for i in range(len(s) + 1)}


def _check_ipv4_start(prefix: str) -> None:
    if not _IPV4_START_RE.match(prefix):
        raise ValueError(f"a value starting with {prefix!r} is not a valid IPv4 address (e.g. 192.0.2.100)")


def _check_ipv4_cidr_start(prefix: str) -> None:
    address, slash, suffix = prefix.partition("/")
    suffix = suffix.rstrip()
    if not slash:
        ok = bool(_IPV4_CIDR_ADDRESS_START_RE.match(address))
    elif "." in suffix:
        ok = bool(_IPV4_FULL_RE.match(address) and _IPV4_CIDR_ADDRESS_START_RE.match(suffix))
    else:
        ok = bool(_IPV4_FULL_RE.match(address)) and suffix in _CIDR_SUFFIX_STARTS
    if not ok:
        raise ValueError(f"a value starting with {prefix!r} is not a valid IPv4 CIDR block (e.g. 198.51.100.0/24)")


# Addresses that can never be a floating IP, whatever the cluster: a node holding one would answer ARP for
# something that is not a unicast host address of its subnet (or for its own loopback).
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # RFC 1122 "this host on this network"
_LIMITED_BROADCAST = ipaddress.ip_address("255.255.255.255")


def check_floatable(value: str) -> str:
    """A floating IP (already canonical IPv4): refuse the address classes that can never float."""
    ip = ipaddress.ip_address(value)
    if ip == _LIMITED_BROADCAST:
        why = "the limited broadcast address"
    elif ip.is_unspecified or ip in _THIS_NETWORK:
        why = "an unspecified ('this network', 0.0.0.0/8) address"
    elif ip.is_loopback:
        why = "a loopback address"
    elif ip.is_multicast:
        why = "a multicast address"
    elif ip.is_link_local:
        why = "a link-local address"
    elif ip.is_reserved:
        why = "a reserved address (240.0.0.0/4)"
    else:
        return value
    raise ValueError(f"{value} is {why}: it can never be a floating IP")


def reserved_addresses(nodes: Iterable[tuple[str, str, Iterable[str]]]) -> dict[str, str]:
    """Addresses of the cluster that can never float: ip -> why, from (node name, node_ip, routers) triples.

    Each node's own address, its uplink subnet's network and broadcast
    addresses (for subnets of /30 and larger) and the routers its routes go
    through (what the node publishes as `routers`). A node holding one of them
    would take over a neighbour's or the router's traffic (ARP).
    """
    nodes = sorted((name, node_ip, tuple(routers)) for name, node_ip, routers in nodes)
    out: dict[str, str] = {}
    for name, node_ip, _ in nodes:
        out.setdefault(str(ipaddress.ip_interface(node_ip).ip), f"the address of node {name!r}")
    for name, node_ip, _ in nodes:
        net = ipaddress.ip_interface(node_ip).network
        if net.prefixlen <= 30:
            out.setdefault(str(net.network_address), f"the network address of node {name!r}'s subnet {net}")
            out.setdefault(str(net.broadcast_address), f"the broadcast address of node {name!r}'s subnet {net}")
    for name, _, routers in nodes:  # last: a route via another node names that node's address instead
        for r in routers:
            out.setdefault(r, f"a router of node {name!r} (a gateway of its routes)")
    return out


def cluster_address_violations(gateway: "Gateway", reserved: dict[str, str]) -> list[Violation]:
    """Floating IPs of `gateway` that are addresses of the cluster (`reserved_addresses`): errors."""
    return [
        Violation(("floating_ips",), f"floating IP {ip} is {reserved[ip]}: it can never be a floating IP")
        for ip in gateway.floating_ips
        if not isinstance(ip, Pending) and ip in reserved
    ]


def _unique(what: str) -> Callable[[list[str]], list[str]]:
    """An after-validator for a set of addresses: each listed once, sorted; Pending elements are left as they are."""
    return lambda values: _unique_sorted(values, what)


def _unique_sorted(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for v in values:
        if isinstance(v, Pending):
            continue
        if v in seen:
            raise ValueError(f"{what} {v} is listed twice")
        seen.add(v)
    if any(isinstance(v, Pending) for v in values):
        return values  # checked only, never stored: order does not matter yet
    # Sets in Terraform are unordered; a canonical order keeps state and diffs stable.
    return sorted(values, key=lambda s: ipaddress.ip_network(s, strict=False))


# --- Values not known yet ----------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A value not known yet; `prefix` is what is known of a string's beginning ("" if nothing).

    Models holding one are for checking a configuration only; they are never stored.
    """

    prefix: str = ""


def _deferred(check_start: Optional[Callable[[str], None]] = None) -> WrapValidator:
    """Validation of a field that waits for a Pending value, checking only its known beginning."""

    def defer(value: Any, handler):
        if isinstance(value, Pending):
            if value.prefix and check_start is not None:
                check_start(value.prefix)
            return value
        return handler(value)

    return WrapValidator(defer)


# Field types of the objects Terraform manages: each checks a known value in full, a pending one by its start.
ObjectName = Annotated[str, AfterValidator(_check_object_name), _deferred(_check_object_name_start)]
IPv4 = Annotated[str, AfterValidator(parse_ipv4), _deferred(_check_ipv4_start)]
FloatingIP = Annotated[str, AfterValidator(parse_ipv4), AfterValidator(check_floatable), _deferred(_check_ipv4_start)]
IPv4Cidr = Annotated[str, AfterValidator(parse_ipv4_cidr), _deferred(_check_ipv4_cidr_start)]
LabelKey = Annotated[str, AfterValidator(check_label_key)]  # map keys are always known
LabelValue = Annotated[str, AfterValidator(check_label_value), _deferred(_check_label_value_start)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=limits.MAX_OBJECT_LABELS), _deferred()]
SelectorLabels = Annotated[dict[LabelKey, LabelValue], Field(max_length=limits.MAX_SELECTOR_LABELS), _deferred()]


# --- Desired state -------------------------------------------------------------------

_strict = ConfigDict(extra="forbid", frozen=True)


OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class LabelSelectorRequirement(BaseModel):
    """One `match_expressions` entry, with Kubernetes' semantics and rules.

    In: the label is set to one of `values`. NotIn: it is not (an unset label matches). Exists /
    DoesNotExist: the key is set / not set, whatever its value. In and NotIn need values; Exists and
    DoesNotExist take none. Values are a set: kept sorted, each once.
    """

    model_config = _strict
    key: Annotated[str, AfterValidator(check_label_key), _deferred()]
    operator: Annotated[str, _deferred()]
    values: Annotated[list[LabelValue], _deferred()] = Field(default_factory=list, validate_default=True)

    @field_validator("operator")
    @classmethod
    def _known_operator(cls, op):
        if not isinstance(op, Pending) and op not in OPERATORS:
            raise ValueError(f"operator {op!r} must be one of {', '.join(OPERATORS)}")
        return op

    @field_validator("values", mode="before")
    @classmethod
    def _null_is_empty(cls, values):
        return [] if values is None else values

    @field_validator("values")
    @classmethod
    def _values_fit_the_operator(cls, values, info):
        op = info.data.get("operator")  # validated first (field order); absent when it was invalid
        if op is None or isinstance(op, Pending) or isinstance(values, Pending):
            return values
        if op in ("In", "NotIn") and not values:
            raise ValueError(f"operator {op} needs at least one value")
        if op in ("Exists", "DoesNotExist") and values:
            raise ValueError(f"operator {op} takes no values (remove `values`)")
        return values if any(isinstance(v, Pending) for v in values) else sorted(set(values))

    def matches(self, labels: dict[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values  # NotIn

    def sort_key(self) -> tuple:
        return (str(self.key), str(self.operator), tuple(str(v) for v in self.values))


class LabelSelector(BaseModel):
    """Kubernetes LabelSelector: `match_labels` and `match_expressions`, all of which must hold (AND).
    An empty selector matches everything."""

    model_config = _strict
    match_labels: SelectorLabels = Field(default_factory=dict)
    match_expressions: Annotated[
        list[LabelSelectorRequirement], Field(max_length=limits.MAX_SELECTOR_LABELS), _deferred()
    ] = Field(default_factory=list)

    @field_validator("match_labels", "match_expressions", mode="before")
    @classmethod
    def _null_is_empty(cls, value, info):
        return ({} if info.field_name == "match_labels" else []) if value is None else value

    @model_validator(mode="after")
    def _canonical_expressions(self):
        # A set: the order written never matters (no perpetual diffs), duplicates say nothing more.
        if not isinstance(self.match_expressions, Pending):
            unique = {e.sort_key(): e for e in self.match_expressions}
            object.__setattr__(self, "match_expressions", [unique[k] for k in sorted(unique)])
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            e.matches(labels) for e in self.match_expressions)

    def text(self) -> str:
        """kubectl's spelling, e.g. `egress=yes,zone in (a,b),!spare`; `<all>` when empty."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for e in self.match_expressions:
            parts.append({"In": f"{e.key} in ({','.join(e.values)})", "NotIn": f"{e.key} notin ({','.join(e.values)})",
                          "Exists": e.key, "DoesNotExist": f"!{e.key}"}[e.operator])
        return ",".join(parts) or "<all>"


class EgressRule(BaseModel):
    """One selection rule: both selectors must match (AND); an omitted selector matches everything."""

    model_config = _strict
    namespace_selector: Annotated[Optional[LabelSelector], _deferred()] = None
    pod_selector: Annotated[Optional[LabelSelector], _deferred()] = None

    def selects(self, namespace_labels: dict[str, str], pod_labels: dict[str, str]) -> bool:
        ns_ok = self.namespace_selector is None or self.namespace_selector.matches(namespace_labels)
        pod_ok = self.pod_selector is None or self.pod_selector.matches(pod_labels)
        return ns_ok and pod_ok


Name = Annotated[str, Field(min_length=1, max_length=63)]


class Gateway(BaseModel):
    """The seed's AnthosNetworkGateway: a set of floating IPs for egress."""

    model_config = _strict
    name: ObjectName = "default"
    floating_ips: Annotated[
        list[FloatingIP],
        Field(min_length=1, max_length=limits.MAX_FLOATING_IPS),
        AfterValidator(_unique("floating IP")),
        _deferred(),
    ]
    # Placement: which nodes may hold this gateway's IPs (None: every node), and how many of them one node
    # may hold (None: no cap). Per gateway, not per node across gateways: see docs/placement.md.
    node_selector: Annotated[Optional[LabelSelector], _deferred()] = None
    max_ips_per_node: Annotated[Optional[int], Field(ge=1, le=limits.MAX_FLOATING_IPS), _deferred()] = None

    def may_hold(self, node_labels: dict[str, str]) -> bool:
        """Whether a node with these labels is selected to hold this gateway's IPs."""
        return self.node_selector is None or self.node_selector.matches(node_labels)


class Policy(BaseModel):
    """The seed's EgressNATPolicy: which pods, which destinations, which source IP."""

    model_config = _strict
    name: ObjectName
    egress: Annotated[list[EgressRule], Field(min_length=1, max_length=limits.MAX_EGRESS_RULES), _deferred()]
    destination_cidrs: Annotated[
        list[IPv4Cidr],
        Field(min_length=1, max_length=limits.MAX_DESTINATION_CIDRS),
        AfterValidator(_unique("destination CIDR")),
        _deferred(),
    ]
    # The gateway to allocate the source IP from, when `egress_source_ip` is not given (the agent picks a free
    # floating IP of it at write, `allocation`); with both given, the IP must be one of that gateway's.
    # Declared before egress_source_ip: its check below reads it.
    gateway: Optional[ObjectName] = None
    # None only in a request that names `gateway`: a stored policy always has its concrete source IP.
    egress_source_ip: Annotated[Optional[FloatingIP], Field(validate_default=True)] = None
    # Holes in destination_cidrs (longest prefix wins): each lies inside one of them. Never steered by this policy;
    # another policy covering the hole may take it.
    excluded_cidrs: Annotated[
        list[IPv4Cidr],
        Field(max_length=limits.MAX_EXCLUDED_CIDRS),
        AfterValidator(_unique("excluded CIDR")),
        _deferred(),
    ] = Field(default_factory=list)
    # Lower wins where two policies select the same pod and cover the same destination (egress_api.precedence).
    priority: Annotated[int, Field(ge=0, le=limits.MAX_PRIORITY), _deferred()] = DEFAULT_PRIORITY

    @field_validator("egress_source_ip")
    @classmethod
    def _source_ip_or_gateway(cls, ip, info):
        if ip is None and "gateway" in info.data and info.data["gateway"] is None:  # absent: invalid, reported
            raise ValueError("set egress_source_ip, or gateway to have the agent allocate a free floating IP of "
                             "that gateway (e.g. gateway = egress_gateway.NAME.name)")
        return ip

    @property
    def allocated(self) -> bool:
        """Whether the source IP is (to be) allocated from `gateway` rather than given."""
        return self.gateway is not None and self.egress_source_ip is None

    @field_validator("excluded_cidrs")
    @classmethod
    def _exclusions_inside_destinations(cls, excluded, info):
        destinations = info.data.get("destination_cidrs")
        if isinstance(excluded, Pending) or not isinstance(destinations, list):
            return excluded  # destination_cidrs invalid (reported on its own) or not known yet
        if any(isinstance(c, Pending) for c in destinations):
            return excluded  # a destination still unknown may hold any exclusion
        dsts = [ipaddress.ip_network(c) for c in destinations]
        for cidr in excluded:
            if isinstance(cidr, Pending):
                continue
            net = ipaddress.ip_network(cidr)
            if net in dsts:
                raise ValueError(f"{cidr} is also a destination CIDR: exclude a part of it, or drop it from "
                                 "destination_cidrs")
            if not any(net.subnet_of(d) for d in dsts):
                raise ValueError(f"{cidr} lies inside no destination CIDR: an exclusion carves a hole in one of "
                                 "destination_cidrs")
        return excluded

    def selects(self, namespace_labels: dict[str, str], pod_labels: dict[str, str]) -> bool:
        return any(rule.selects(namespace_labels, pod_labels) for rule in self.egress)


# --- Cluster and workload inventory ------------------------------------------------


class Node(BaseModel):
    """A node as its agent registers it."""

    model_config = _strict
    name: Name
    role: str = "worker"
    node_ip: str  # uplink IPv4 with prefix, e.g. 192.0.2.11/24
    interface: str = ""
    pod_cidr: str = ""
    api_address: str = ""
    # Gateways of this node's routes on its uplink (its default router first), found by the agent at start:
    # addresses that must never float (`reserved_addresses`). Empty without --interface.
    routers: list[str] = Field(default_factory=list)
    # Cluster service CIDRs this node's agent was given (--service-cidr): every node excludes all nodes' ones.
    service_cidrs: list[str] = Field(default_factory=list)
    # Kubernetes-style labels (egress-agent --node-label k=v) that a gateway's node_selector matches.
    labels: Labels = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # Kubernetes node names are DNS subdomains (hostnames), e.g. worker1 or worker1.example.com.
        if not _DNS1123_SUBDOMAIN.match(v):
            raise ValueError(
                f"{v!r} is not a valid node name: use lower-case letters, digits, '-' and '.', "
                "starting and ending with a letter or digit (e.g. 'worker1')"
            )
        return v

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in ("worker", "master"):
            raise ValueError(f"role must be 'worker' or 'master', not {v!r}")
        return v

    @field_validator("node_ip")
    @classmethod
    def _node_ip(cls, v: str) -> str:
        return parse_ipv4_interface(v)

    @field_validator("pod_cidr")
    @classmethod
    def _pod_cidr(cls, v: str) -> str:
        return parse_ipv4_cidr(v) if v else v

    @field_validator("routers")
    @classmethod
    def _routers(cls, v: list[str]) -> list[str]:
        return [parse_ipv4(r) for r in v]

    @field_validator("service_cidrs")
    @classmethod
    def _service_cidrs(cls, v: list[str]) -> list[str]:
        return [parse_ipv4_cidr(c) for c in v]


_IFNAME = re.compile(r"^[^/\s:]{1,15}\Z")  # Linux: IFNAMSIZ-1 bytes, no '/', whitespace or ':'


def check_namespace_name(value: str) -> str:
    """A Kubernetes namespace name: a DNS-1123 label."""
    if not value or len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid namespace name: use 1-63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit (a DNS-1123 label, e.g. 'alice')"
        )
    return value


def check_pod_name(value: str) -> str:
    """A Kubernetes pod name: a DNS-1123 subdomain (up to 253 characters, dots allowed)."""
    if not value or len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a valid pod name: use up to 253 lower-case letters, digits, '-' or '.', "
            "starting and ending with a letter or digit (a DNS-1123 subdomain, e.g. 'frontend-7d4b9')"
        )
    return value


def check_interface_name(value: str) -> str:
    if value in (".", "..") or not _IFNAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid interface name: 1-15 characters without '/', ':' or spaces (e.g. veth1a2b3c4d)"
        )
    return value


class Namespace(BaseModel):
    model_config = _strict
    name: str
    labels: Labels = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_namespace_name(v)


class Pod(BaseModel):
    """A pod on a node. `interface` is the host side of its network interface, as the CNI chain named it
    (`veth...` from ptp/bridge, `cali...` from Calico); empty means the lab's direct wiring, whose host veth
    is named from the pod key (`egress_agent.node.naming.host_veth_name`)."""

    model_config = _strict
    name: str
    namespace: str
    node: Name
    ip: str
    interface: str = ""
    uid: str = ""  # Kubernetes metadata.uid (from the CNI's K8S_POD_UID): tells re-created pods apart
    labels: Labels = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_pod_name(v)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return check_namespace_name(v)

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        return parse_ipv4(v)

    @field_validator("interface")
    @classmethod
    def _interface(cls, v: str) -> str:
        return check_interface_name(v) if v else v


# --- Errors with attribute paths ------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One invalid field: `path` is the Terraform attribute path, e.g. ('egress', 0, 'pod_selector')."""

    path: tuple[str | int, ...]
    message: str

    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path)


class InvalidObject(ValueError):
    """Raised with every violation found; nothing is written when it is raised."""

    def __init__(self, kind: str, name: str, violations: list[Violation]):
        self.kind = kind
        self.name = name
        self.violations = violations
        lines = "; ".join(f"{v.dotted() or kind}: {v.message}" for v in violations)
        super().__init__(f"invalid {kind} {name!r}: {lines}")


# pydantic's error types in our words: its own messages ("Input should be a valid string") never reach a user.
_MESSAGES = {
    "missing": "this attribute is required",
    "extra_forbidden": "unknown attribute",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "set_type": "must be a set",
    "dict_type": "must be a map of strings",
    "model_type": "must be a block",
    "model_attributes_type": "must be a block",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_too_short": "must not be empty",
}


def _message(e: dict) -> str:
    kind, ctx = e["type"], e.get("ctx") or {}
    if kind == "value_error":  # raised by our own checks: their message is already in our words
        return str(ctx.get("error", e["msg"].removeprefix("Value error, ")))
    if kind == "too_short" and e["loc"]:
        return f"at least one {_singular(_field_of(e['loc']))} is required"
    if kind == "too_long":
        field = _field_of(e["loc"])
        limit = _LIMIT_NAMES.get(field)
        named = f" (limit {limit}; see docs/limits.md)" if limit else ""
        actual = ctx.get("actual_length")
        if actual is None and hasattr(e.get("input"), "__len__"):
            actual = len(e["input"])
        got = f", got {actual:,}" if isinstance(actual, int) else ""
        return f"at most {ctx.get('max_length'):,} {_singular(field)} values are allowed{got}{named}"
    if kind in ("greater_than_equal", "less_than_equal") and _field_of(e["loc"]) == "priority":
        return f"must be between 0 and {limits.MAX_PRIORITY:,} (lower wins), got {e.get('input')!r}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le'):,}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    return _MESSAGES.get(kind, "is not a valid value here")


# The limits.py constant behind a field's max_length, named in the message.
_LIMIT_NAMES = {
    "floating_ips": "MAX_FLOATING_IPS",
    "destination_cidrs": "MAX_DESTINATION_CIDRS",
    "excluded_cidrs": "MAX_EXCLUDED_CIDRS",
    "egress": "MAX_EGRESS_RULES",
    "match_labels": "MAX_SELECTOR_LABELS",
    "match_expressions": "MAX_SELECTOR_LABELS",
    "labels": "MAX_OBJECT_LABELS",
}


def _field_of(loc: tuple) -> str:
    """The attribute a location ends in (its last name, not an index or key)."""
    return next((str(step) for step in reversed(loc) if isinstance(step, str)), "")


def _violations(err: ValidationError) -> list[Violation]:
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if loc[-1:] == ("[key]",):  # a bad map key: pydantic adds a marker after the key itself
            loc = loc[:-1]
        out.append(Violation(loc, _message(e)))
    return out


def _singular(field: Any) -> str:
    return {
        "floating_ips": "floating IP",
        "destination_cidrs": "destination CIDR",
        "excluded_cidrs": "excluded CIDR",
        "egress": "egress rule",
        "match_labels": "label",
        "match_expressions": "label expression",
        "labels": "label",
    }.get(str(field), str(field))


KINDS: dict[str, type[BaseModel]] = {
    "gateway": Gateway,
    "policy": Policy,
    "node": Node,
    "namespace": Namespace,
    "pod": Pod,
}


def parse(kind: str, data: dict[str, Any]):
    """Validate `data` as a `kind` object; raise InvalidObject naming every bad attribute."""
    model = KINDS[kind]
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise InvalidObject(kind, str(data.get("name", "")), _violations(err)) from None


def check_references(
    obj: Gateway | Policy,
    gateways: Iterable[Gateway],
    policies: Iterable[Policy],
) -> list[Violation]:
    """Cross-object rules a write must pass (errors). `gateways`/`policies` are the *other* stored objects.

    Only one rule refuses a write: no two policies share a source IP (the
    datapath could not tell their traffic apart). Everything else that spans
    objects depends on the order in which objects are written, so it is a
    warning (`reference_warnings`) and the agent keeps traffic fail-closed
    until the objects agree: Terraform may create or delete a gateway and a
    policy in either order.
    """
    if isinstance(obj, Gateway):
        return []
    found = ip_outside_gateway(obj, gateways)
    return duplicate_source_ip(obj, policies) + ([found] if found and found.path == ("egress_source_ip",) else [])


def reference_warnings(
    obj: Gateway | Policy,
    gateways: Iterable[Gateway],
    policies: Iterable[Policy],
    retained: Iterable[str] = (),
) -> list[Violation]:
    """What a write of `obj` would be accepted with but leave inconsistent (warnings).

    `gateways`/`policies` are the stored objects (a stored version of `obj` is
    what the write replaces); `retained` the floating IPs kept for policies
    after their gateway let them go.
    """
    gateways = list(gateways)
    if isinstance(obj, Policy):
        found = unclaimed_source_ip(obj, gateways, retained)
        out = [found] if found else []
        named = ip_outside_gateway(obj, gateways)
        if named is not None and named.path == ("gateway",):  # the other case is an error (check_references)
            out.append(named)
        return out
    others = [g for g in gateways if g.name != obj.name]
    before = next((g for g in gateways if g.name == obj.name), None)
    released = released_in_use(obj, others, policies, before=before) if before else []
    return shared_floating_ips(obj, others) + released


def duplicate_source_ip(policy: Policy, policies: Iterable[Policy]) -> list[Violation]:
    """Each policy needs its own source IP."""
    return [
        Violation(
            ("egress_source_ip",),
            f"{policy.egress_source_ip} is already the egress_source_ip of policy {p.name!r}: "
            "each policy needs its own source IP",
        )
        for p in policies
        if p.name != policy.name and policy.egress_source_ip is not None and p.egress_source_ip == policy.egress_source_ip
    ]


def ip_outside_gateway(policy: Policy, gateways: Iterable[Gateway]) -> Optional[Violation]:
    """A policy naming both `gateway` and `egress_source_ip`: the IP must be one of that gateway's.

    At ("egress_source_ip",) when the gateway exists and does not list it (an error); at ("gateway",) when
    the gateway does not exist (yet: a warning, Terraform may create it after the policy).
    """
    if policy.gateway is None or policy.egress_source_ip is None:
        return None
    if isinstance(policy.gateway, Pending) or isinstance(policy.egress_source_ip, Pending):
        return None
    gw = next((g for g in gateways if g.name == policy.gateway), None)
    if gw is None:
        return Violation(("gateway",), f"gateway {policy.gateway!r} does not exist (yet): egress_source_ip "
                                       f"{policy.egress_source_ip} must be one of its floating IPs once it does")
    if any(isinstance(ip, Pending) for ip in gw.floating_ips) or policy.egress_source_ip in gw.floating_ips:
        return None
    return Violation(("egress_source_ip",), f"{policy.egress_source_ip} is not a floating IP of gateway "
                                            f"{gw.name!r} ({', '.join(gw.floating_ips)}): name one of them, or "
                                            "leave egress_source_ip out to have one allocated")


def unclaimed_source_ip(policy: Policy, gateways: Iterable[Gateway], retained: Iterable[str] = ()) -> Optional[Violation]:
    """The policy's source IP is a floating IP of no gateway (and not kept for a removed one)."""
    gateways = list(gateways)
    if policy.egress_source_ip is None:
        return None  # allocated from its gateway at write (egress_api.allocation)
    if any(policy.egress_source_ip in g.floating_ips for g in gateways) or policy.egress_source_ip in set(retained):
        return None
    known = sorted({ip for g in gateways for ip in g.floating_ips}, key=ipaddress.ip_address)
    hint = f"one of {', '.join(known)}" if known else "none are defined: add an egress_gateway that lists it"
    return Violation(
        ("egress_source_ip",),
        f"{policy.egress_source_ip} is not a floating IP of any gateway ({hint}); "
        "the policy's traffic is dropped until a gateway lists it",
    )


def shared_floating_ips(gateway: Gateway, others: Iterable[Gateway]) -> list[Violation]:
    """Floating IPs of `gateway` that another gateway also claims."""
    return [
        Violation(("floating_ips",), f"floating IP {ip} already belongs to gateway {g.name!r}")
        for g in others
        for ip in gateway.floating_ips
        if ip in g.floating_ips and g.name != gateway.name
    ]


def released_in_use(
    after: Optional[Gateway], others: Iterable[Gateway], policies: Iterable[Policy], before: Optional[Gateway] = None
) -> list[Violation]:
    """Source IPs of `policies` that no gateway would list once `after` is written (None: deleted).

    `others` are the other gateways. With `before` given, only IPs `before`
    listed count (what this write removes); without it, every policy's IP is
    checked against `after` + `others`.
    """
    kept = {ip for g in others for ip in g.floating_ips} | set(after.floating_ips if after else ())
    out = []
    for p in policies:
        ip = p.egress_source_ip
        if ip in kept or (before is not None and ip not in before.floating_ips):
            continue
        out.append(
            Violation(
                ("floating_ips",),
                f"floating IP {ip} is the egress_source_ip of policy {p.name!r}, which stays: "
                "change or delete that policy too, or keep the IP in a gateway",
            )
        )
    return out


def check_gateway_removal(gateway: Gateway, policies: Iterable[Policy], others: Iterable[Gateway] = ()) -> list[Violation]:
    """Source IPs still in use that deleting `gateway` would leave in no gateway (warnings: they are retained)."""
    return released_in_use(None, others, policies, before=gateway)


def equal_priority_overlaps(policy: Policy, policies: Iterable[Policy]) -> list[Violation]:
    """Other policies with the same priority whose destinations overlap `policy`'s (warnings).

    Where both select a pod, the longest prefix and then the name decide (`egress_api.precedence`), which is
    rarely what was meant: a priority says it explicitly. The others are tested in name order until the
    warning has what it names; a caller with many policies passes the few a `precedence.OverlapIndex` finds.
    """
    rule = precedence_rule(policy)
    if rule is None:
        return []
    others = (r for r in (precedence_rule(p) for p in sorted(policies, key=lambda p: p.name)
                          if p.name != policy.name and p.priority == policy.priority) if r is not None)
    found = precedence.equal_priority_overlaps(rule, others, limit=_NAMED_OVERLAPS + 1)
    decide = ("for pods both select, the longest prefix and then the name decide. Give one of them another "
              "priority to say which wins")
    if len(found) == 1:
        [(other, mine, theirs)] = found
        return [Violation(("priority",), f"policies {policy.name!r} and {other!r} both have priority "
                                         f"{policy.priority} and overlapping destinations ({mine} and {theirs}): {decide}")]
    if not found:
        return []
    # One warning, not one per other policy: an estate of N policies to one partner would print N^2.
    shown = ", ".join(f"{other!r} ({theirs})" for other, _, theirs in found[:_NAMED_OVERLAPS])
    more = " and more" if len(found) > _NAMED_OVERLAPS else ""
    return [Violation(("priority",), f"policy {policy.name!r} ({', '.join(sorted({m for _, m, _ in found}))}) has "
                                     f"priority {policy.priority}, like other policies whose destinations overlap its "
                                     f"own: {shown}{more}; {decide}")]


_NAMED_OVERLAPS = 5  # policies an equal-priority warning names before it counts the rest


def precedence_rule(policy: Policy) -> Optional[precedence.Rule]:
    """What precedence needs of `policy`, or None while its priority or CIDRs are not all known (a plan's
    pending values)."""
    if isinstance(policy.priority, Pending) or any(
            isinstance(cidrs, Pending) or any(isinstance(c, Pending) for c in cidrs)
            for cidrs in (policy.destination_cidrs, policy.excluded_cidrs)):
        return None
    return precedence.Rule.of(policy)
