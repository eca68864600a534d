"""`EgressClient`: the typed client of the egress-agent API.

Used by the Terraform provider, `egressctl`, the lab and the tests. Every call
returns models or small dataclasses and raises only `egress_api.errors`
classes, never a bare `grpc.RpcError`.

Kept import-light on purpose: Terraform starts the provider plugin several
times per command, and this module is on that path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Generic, Optional, Sequence, TypeVar

from egress_api import calls, convert, models, transport
from egress_api.status import Condition, GatewayStatus, NodeStatus  # noqa: F401 - part of the client API
from egress_api.v1 import egress_pb2 as pb

# A library logs, the program decides where to: without this, Python would print warnings to stderr.
logging.getLogger("egress_api").addHandler(logging.NullHandler())

# Metadata keys, defined with the call machinery and re-exported for the agent's servicer.
VIOLATIONS_KEY, ORIGIN_KEY, REQUEST_ID_KEY, DEADLINE_KEY = (
    calls.VIOLATIONS_KEY, calls.ORIGIN_KEY, calls.REQUEST_ID_KEY, calls.DEADLINE_KEY)

T = TypeVar("T")


@dataclass(frozen=True)
class Versioned(Generic[T]):
    obj: T
    resource_version: int


@dataclass(frozen=True)
class ValidateResult:
    errors: list[models.Violation] = field(default_factory=list)
    warnings: list[models.Violation] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    kind: str
    name: str
    type: str
    reason: str
    message: str
    timestamp: float
    count: int


@dataclass(frozen=True)
class PolicyDescription:
    policy: Versioned[models.Policy]
    holder: str  # node holding egress_source_ip, "" when none
    events: list[Event]
    counters: dict[str, int]
    exclusions: list[tuple[str, str]] = field(default_factory=list)  # (CIDR, why) never steered
    shadowed: list[tuple[str, str, str]] = field(default_factory=list)  # (pod, destination, winning policy)
    shadowed_pods: int = 0
    conditions: list[Condition] = field(default_factory=list)  # Ready, IPAssigned, Programmed


@dataclass(frozen=True)
class Health:
    status: str
    node: str
    store: str
    store_ok: bool
    detail: str
    leader: str
    version: str


class EgressClient:
    """`target`: one endpoint, a comma-separated list, or a list; calls fail over in that order (see calls).
    `tls` (transport.ClientTLS.load(ca, cert, key)) secures TCP endpoints; unix sockets are local.

    Writes take `request_id` (default: a new one per call) and `deadline`
    (time.monotonic(); default calls.DEFAULT_RESOLVE_SECONDS from now), which
    bounds how long a write whose outcome is unknown is retried.
    """

    def __init__(self, target: str | Sequence[str], timeout: float = 10.0,
                 tls: Optional[transport.ClientTLS] = None):
        self._caller = calls.Caller(target, timeout, tls)
        self.timeout = timeout

    @property
    def target(self) -> str:
        """The endpoint calls go to first (the last one that answered)."""
        return self._caller.endpoint

    @property
    def endpoints(self) -> list[str]:
        return list(self._caller.endpoints)

    @property
    def last_call(self) -> Optional[calls.CallRecord]:
        """What happened to this thread's last call: attempts, endpoints, how an unknown outcome was resolved."""
        return self._caller.last

    # --- plumbing -------------------------------------------------------------------

    def close(self) -> None:
        self._caller.close()

    def __enter__(self) -> "EgressClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, rpc: str, request, **kwargs):
        """A raw call of `rpc` ("CreatePolicy", ...) with a protobuf request; raises egress_api.errors."""
        return self._caller.call(rpc, request, **kwargs)

    def _read(self, rpc: str, request, deadline: Optional[float] = None):
        return self._caller.call(rpc, request, deadline=deadline)

    def _write(self, rpc: str, request, request_id: Optional[str], deadline: Optional[float]):
        rid = request_id or calls.new_request_id()
        return self._caller.call(rpc, request, write=True, request_id=rid, deadline=deadline)

    def _delete(self, rpc: str, request, deadline: Optional[float]) -> None:
        self._caller.call(rpc, request, write=True, deadline=deadline, missing_ok_after_unknown=True)

    # --- gateways ---------------------------------------------------------------------

    @staticmethod
    def _gateway(msg: pb.Gateway) -> Versioned[models.Gateway]:
        return Versioned(convert.gateway_from_proto(msg), msg.resource_version)

    def create_gateway(self, gw: models.Gateway, request_id: Optional[str] = None,
                       deadline: Optional[float] = None) -> Versioned[models.Gateway]:
        return self._gateway(self._write("CreateGateway", convert.gateway_to_proto(gw), request_id, deadline))

    def get_gateway(self, name: str, deadline: Optional[float] = None) -> Versioned[models.Gateway]:
        return self._gateway(self._read("GetGateway", pb.ObjectRef(name=name), deadline))

    def update_gateway(self, gw: models.Gateway, resource_version: int = 0, request_id: Optional[str] = None,
                       deadline: Optional[float] = None) -> Versioned[models.Gateway]:
        msg = convert.gateway_to_proto(gw, resource_version)
        return self._gateway(self._write("UpdateGateway", msg, request_id, deadline))

    def delete_gateway(self, name: str, resource_version: int = 0, deadline: Optional[float] = None) -> None:
        self._delete("DeleteGateway", pb.DeleteRequest(name=name, resource_version=resource_version), deadline)

    def list_gateways(self) -> list[Versioned[models.Gateway]]:
        return [self._gateway(m) for m in self._read("ListGateways", pb.ListRequest()).items]

    def validate_gateway(self, gw: models.Gateway) -> ValidateResult:
        return self._validate_result(self._read("ValidateGateway", convert.gateway_to_proto(gw)))

    # --- policies ----------------------------------------------------------------------

    @staticmethod
    def _policy(msg: pb.Policy) -> Versioned[models.Policy]:
        return Versioned(convert.policy_from_proto(msg), msg.resource_version)

    def create_policy(self, p: models.Policy, request_id: Optional[str] = None,
                      deadline: Optional[float] = None) -> Versioned[models.Policy]:
        return self._policy(self._write("CreatePolicy", convert.policy_to_proto(p), request_id, deadline))

    def get_policy(self, name: str, deadline: Optional[float] = None) -> Versioned[models.Policy]:
        return self._policy(self._read("GetPolicy", pb.ObjectRef(name=name), deadline))

    def update_policy(self, p: models.Policy, resource_version: int = 0, request_id: Optional[str] = None,
                      deadline: Optional[float] = None) -> Versioned[models.Policy]:
        msg = convert.policy_to_proto(p, resource_version)
        return self._policy(self._write("UpdatePolicy", msg, request_id, deadline))

    def delete_policy(self, name: str, resource_version: int = 0, deadline: Optional[float] = None) -> None:
        self._delete("DeletePolicy", pb.DeleteRequest(name=name, resource_version=resource_version), deadline)

    def list_policies(self) -> list[Versioned[models.Policy]]:
        return [self._policy(m) for m in self._read("ListPolicies", pb.ListRequest()).items]

    def list_policies_with_selection(self) -> list[tuple[Versioned[models.Policy], Optional[pb.PolicySelection]]]:
        """Every policy with the pods it selects now (as policy_impact's selected_pods and sample), in one call.
        The selection is None for a policy written while the agent was listing (ask policy_impact)."""
        return [(self._policy(m), m.selection if m.HasField("selection") else None)
                for m in self._read("ListPolicies", pb.ListRequest(with_selection=True)).items]

    def validate_policy(self, p: models.Policy) -> ValidateResult:
        return self._validate_result(self._read("ValidatePolicy", convert.policy_to_proto(p)))

    def describe_policy(self, name: str) -> PolicyDescription:
        msg = self._read("DescribePolicy", pb.ObjectRef(name=name))
        c = msg.counters
        return PolicyDescription(
            policy=self._policy(msg.policy),
            holder=msg.holder,
            events=[self._event(e) for e in msg.events],
            counters={
                "steered_packets": c.steered_packets,
                "steered_bytes": c.steered_bytes,
                "translated_packets": c.translated_packets,
                "translated_bytes": c.translated_bytes,
            },
            exclusions=[(e.cidr, e.reason) for e in msg.exclusions],
            shadowed=[(s.pod, s.destination, s.policy) for s in msg.shadowed],
            shadowed_pods=msg.shadowed_pods,
            conditions=self._conditions(msg.conditions),
        )

    @staticmethod
    def _validate_result(msg: pb.ValidateResult) -> ValidateResult:
        return ValidateResult(
            errors=[convert.violation_from_proto(v) for v in msg.errors],
            warnings=[convert.violation_from_proto(v) for v in msg.warnings],
        )

    # --- dry runs of egress ------------------------------------------------------------------

    def gateway_impact(self, gateway: models.Gateway) -> pb.PolicyImpact:
        """What writing `gateway` would change: pods of policies whose source IP it adds (a PolicyImpact)."""
        return self._read("GetGatewayImpact", convert.gateway_to_proto(gateway))

    def policy_impact(self, policy: models.Policy) -> pb.PolicyImpact:
        """What writing `policy` would change: selected pods and the source IP changes (a PolicyImpact)."""
        return self._read("GetPolicyImpact", convert.policy_to_proto(policy))

    def effective_ip(self, namespace: str, pod: str, destination: str) -> pb.EffectiveIP:
        """Which source IP pod NAMESPACE/NAME leaves with to DESTINATION now (an EffectiveIP)."""
        return self._read("GetEffectiveIP", pb.EffectiveIPRequest(namespace=namespace, pod=pod, destination=destination))

    # --- observed state -----------------------------------------------------------------

    def gateway_status(self, name: str) -> GatewayStatus:
        msg = self._read("GetGatewayStatus", pb.ObjectRef(name=name))
        return GatewayStatus(msg.name, dict(msg.nodes), dict(msg.floating_ips), dict(msg.unassigned_reasons),
                             self._conditions(msg.conditions))

    @staticmethod
    def _conditions(msgs) -> list[Condition]:
        return [Condition(c.type, c.status, c.reason, c.message, c.last_transition_time) for c in msgs]

    @staticmethod
    def _node(msg: pb.NodeStatus) -> NodeStatus:
        return NodeStatus(
            msg.name, msg.role, msg.state, msg.node_ip, list(msg.floating_ips), msg.pod_cidr, msg.api_address,
            dict(msg.labels), list(msg.service_cidrs),
        )

    def get_node(self, name: str) -> NodeStatus:
        return self._node(self._read("GetNode", pb.ObjectRef(name=name)))

    def list_nodes(self) -> list[NodeStatus]:
        return [self._node(m) for m in self._read("ListNodes", pb.ListRequest()).items]

    @staticmethod
    def _event(msg: pb.Event) -> Event:
        return Event(msg.kind, msg.name, msg.type, msg.reason, msg.message, msg.timestamp, msg.count)

    def list_events(self, kind: str = "", name: str = "") -> list[Event]:
        msg = self._read("ListEvents", pb.EventsRequest(kind=kind, name=name))
        return [self._event(e) for e in msg.items]

    # --- workload inventory ---------------------------------------------------------------

    def upsert_pod(self, pod: models.Pod) -> models.Pod:
        return convert.pod_from_proto(self._caller.call("UpsertPod", convert.pod_to_proto(pod)))

    def delete_pod(self, key: str) -> None:
        """`key` is "namespace/name"."""
        self._caller.call("DeletePod", pb.ObjectRef(name=key))

    def get_pod(self, key: str) -> models.Pod:
        """`key` is "namespace/name"; FailedPrecondition when its node has not programmed it."""
        return convert.pod_from_proto(self._read("GetPod", pb.ObjectRef(name=key)))

    def list_pods(self) -> list[models.Pod]:
        return [convert.pod_from_proto(m) for m in self._read("ListPods", pb.ListRequest()).items]

    def upsert_namespace(self, ns: models.Namespace) -> models.Namespace:
        return convert.namespace_from_proto(self._caller.call("UpsertNamespace", convert.namespace_to_proto(ns)))

    def list_namespaces(self) -> list[models.Namespace]:
        msg = self._read("ListNamespaces", pb.ListRequest())
        return [convert.namespace_from_proto(m) for m in msg.items]

    # --- health ------------------------------------------------------------------------------

    def health(self, timeout: Optional[float] = None) -> Health:
        """`timeout` bounds each attempt (a short one finds a live agent quickly when some hang)."""
        m = self._caller.call("Health", pb.Empty(), attempt_timeout=timeout)
        return Health(m.status, m.node, m.store, m.store_ok, m.detail, m.leader, m.version)
