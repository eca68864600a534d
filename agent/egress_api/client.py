"""`EgressClient`: the typed client of the egress-agent API.

Used by the Terraform provider, `egressctl`, the lab and the tests. Every call
returns models or small dataclasses and raises only `egress_api.errors`
classes, never a bare `grpc.RpcError`.

Kept import-light on purpose: Terraform starts the provider plugin several
times per command, and this module is on that path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

import grpc

from egress_api import convert, errors, models, transport
from egress_api.status import GatewayStatus, NodeStatus  # noqa: F401 - part of the client API
from egress_api.v1 import egress_pb2 as pb
from egress_api.v1 import egress_pb2_grpc as pb_grpc

VIOLATIONS_KEY = "egress-violations-bin"
# Set by the agent on UNAVAILABLE it raises itself (its store is down), to tell that
# apart from "cannot connect to the agent at all".
ORIGIN_KEY = "egress-origin"

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
    def __init__(self, target: str, timeout: float = 10.0):
        try:
            self.target = str(transport.parse_target(target))
        except transport.TargetError as err:
            raise errors.InvalidArgument(f"invalid endpoint: {err}") from None
        self.timeout = timeout
        self._channel = transport.channel(self.target)
        self._stub = pb_grpc.EgressStub(self._channel)

    # --- plumbing -------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "EgressClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: Callable, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None
        except ValueError as err:  # grpc raises ValueError on a closed channel
            raise errors.ApiError(f"egress client for {self.target}: {err}") from None

    def _error(self, err: grpc.RpcError) -> errors.ApiError:
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        details = (err.details() if hasattr(err, "details") else "") or str(code)
        trailing = dict(err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else {}
        violations: list[models.Violation] = []
        if VIOLATIONS_KEY in trailing:
            try:
                violations = convert.violations_from_bytes(trailing[VIOLATIONS_KEY])
            except Exception:  # a malformed trailer must not hide the agent's message
                violations = []
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            if trailing.get(ORIGIN_KEY) == "agent":
                return errors.Unavailable(f"egress-agent at {self.target}: {details}", agent_answered=True)
            what = "timed out after %gs" % self.timeout if code == grpc.StatusCode.DEADLINE_EXCEEDED else details
            return errors.Unavailable(
                f"cannot reach egress-agent at {self.target}: is it running? "
                f"(set the provider's endpoint / EGRESS_ENDPOINT / egressctl --endpoint) [{what}]"
            )
        cls = {
            grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
            grpc.StatusCode.NOT_FOUND: errors.NotFound,
            grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
            grpc.StatusCode.ABORTED: errors.Conflict,
            grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
        }.get(code, errors.ApiError)
        if cls is errors.ApiError:
            details = f"egress-agent at {self.target} failed ({code.name}): {details}"
        return cls(details, violations)

    # --- gateways ---------------------------------------------------------------------

    @staticmethod
    def _gateway(msg: pb.Gateway) -> Versioned[models.Gateway]:
        return Versioned(convert.gateway_from_proto(msg), msg.resource_version)

    def create_gateway(self, gw: models.Gateway) -> Versioned[models.Gateway]:
        return self._gateway(self._call(self._stub.CreateGateway, convert.gateway_to_proto(gw)))

    def get_gateway(self, name: str) -> Versioned[models.Gateway]:
        return self._gateway(self._call(self._stub.GetGateway, pb.ObjectRef(name=name)))

    def update_gateway(self, gw: models.Gateway, resource_version: int = 0) -> Versioned[models.Gateway]:
        msg = convert.gateway_to_proto(gw, resource_version)
        return self._gateway(self._call(self._stub.UpdateGateway, msg))

    def delete_gateway(self, name: str, resource_version: int = 0) -> None:
        self._call(self._stub.DeleteGateway, pb.DeleteRequest(name=name, resource_version=resource_version))

    def list_gateways(self) -> list[Versioned[models.Gateway]]:
        return [self._gateway(m) for m in self._call(self._stub.ListGateways, pb.ListRequest()).items]

    def validate_gateway(self, gw: models.Gateway) -> ValidateResult:
        return self._validate_result(self._call(self._stub.ValidateGateway, convert.gateway_to_proto(gw)))

    # --- policies ----------------------------------------------------------------------

    @staticmethod
    def _policy(msg: pb.Policy) -> Versioned[models.Policy]:
        return Versioned(convert.policy_from_proto(msg), msg.resource_version)

    def create_policy(self, p: models.Policy) -> Versioned[models.Policy]:
        return self._policy(self._call(self._stub.CreatePolicy, convert.policy_to_proto(p)))

    def get_policy(self, name: str) -> Versioned[models.Policy]:
        return self._policy(self._call(self._stub.GetPolicy, pb.ObjectRef(name=name)))

    def update_policy(self, p: models.Policy, resource_version: int = 0) -> Versioned[models.Policy]:
        return self._policy(self._call(self._stub.UpdatePolicy, convert.policy_to_proto(p, resource_version)))

    def delete_policy(self, name: str, resource_version: int = 0) -> None:
        self._call(self._stub.DeletePolicy, pb.DeleteRequest(name=name, resource_version=resource_version))

    def list_policies(self) -> list[Versioned[models.Policy]]:
        return [self._policy(m) for m in self._call(self._stub.ListPolicies, pb.ListRequest()).items]

    def validate_policy(self, p: models.Policy) -> ValidateResult:
        return self._validate_result(self._call(self._stub.ValidatePolicy, convert.policy_to_proto(p)))

    def describe_policy(self, name: str) -> PolicyDescription:
        msg = self._call(self._stub.DescribePolicy, pb.ObjectRef(name=name))
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
        )

    @staticmethod
    def _validate_result(msg: pb.ValidateResult) -> ValidateResult:
        return ValidateResult(
            errors=[convert.violation_from_proto(v) for v in msg.errors],
            warnings=[convert.violation_from_proto(v) for v in msg.warnings],
        )

    # --- dry runs of egress ------------------------------------------------------------------

    def policy_impact(self, policy: models.Policy) -> pb.PolicyImpact:
        """What writing `policy` would change: selected pods and the source IP changes (a PolicyImpact)."""
        return self._call(self._stub.GetPolicyImpact, convert.policy_to_proto(policy))

    def effective_ip(self, namespace: str, pod: str, destination: str) -> pb.EffectiveIP:
        """Which source IP pod NAMESPACE/NAME leaves with to DESTINATION now (an EffectiveIP)."""
        return self._call(
            self._stub.GetEffectiveIP, pb.EffectiveIPRequest(namespace=namespace, pod=pod, destination=destination)
        )

    # --- observed state -----------------------------------------------------------------

    def gateway_status(self, name: str) -> GatewayStatus:
        msg = self._call(self._stub.GetGatewayStatus, pb.ObjectRef(name=name))
        return GatewayStatus(msg.name, dict(msg.nodes), dict(msg.floating_ips), dict(msg.unassigned_reasons))

    @staticmethod
    def _node(msg: pb.NodeStatus) -> NodeStatus:
        return NodeStatus(
            msg.name, msg.role, msg.state, msg.node_ip, list(msg.floating_ips), msg.pod_cidr, msg.api_address
        )

    def get_node(self, name: str) -> NodeStatus:
        return self._node(self._call(self._stub.GetNode, pb.ObjectRef(name=name)))

    def list_nodes(self) -> list[NodeStatus]:
        return [self._node(m) for m in self._call(self._stub.ListNodes, pb.ListRequest()).items]

    @staticmethod
    def _event(msg: pb.Event) -> Event:
        return Event(msg.kind, msg.name, msg.type, msg.reason, msg.message, msg.timestamp, msg.count)

    def list_events(self, kind: str = "", name: str = "") -> list[Event]:
        msg = self._call(self._stub.ListEvents, pb.EventsRequest(kind=kind, name=name))
        return [self._event(e) for e in msg.items]

    # --- workload inventory ---------------------------------------------------------------

    def upsert_pod(self, pod: models.Pod) -> models.Pod:
        return convert.pod_from_proto(self._call(self._stub.UpsertPod, convert.pod_to_proto(pod)))

    def delete_pod(self, key: str) -> None:
        """`key` is "namespace/name"."""
        self._call(self._stub.DeletePod, pb.ObjectRef(name=key))

    def get_pod(self, key: str) -> models.Pod:
        """`key` is "namespace/name"; FailedPrecondition when its node has not programmed it."""
        return convert.pod_from_proto(self._call(self._stub.GetPod, pb.ObjectRef(name=key)))

    def list_pods(self) -> list[models.Pod]:
        return [convert.pod_from_proto(m) for m in self._call(self._stub.ListPods, pb.ListRequest()).items]

    def upsert_namespace(self, ns: models.Namespace) -> models.Namespace:
        return convert.namespace_from_proto(self._call(self._stub.UpsertNamespace, convert.namespace_to_proto(ns)))

    def list_namespaces(self) -> list[models.Namespace]:
        msg = self._call(self._stub.ListNamespaces, pb.ListRequest())
        return [convert.namespace_from_proto(m) for m in msg.items]

    # --- health ------------------------------------------------------------------------------

    def health(self) -> Health:
        m = self._call(self._stub.Health, pb.Empty())
        return Health(m.status, m.node, m.store, m.store_ok, m.detail, m.leader, m.version)
