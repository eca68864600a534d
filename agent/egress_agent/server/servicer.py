"""The gRPC servicer: every RPC of egress.v1.Egress.

Each write validates the request with `models.parse` (INVALID_ARGUMENT with
attribute paths on failure) and hands the model to `writes.Writes` (planned by `write_plan`), which
checks it against the other objects and commits atomically. Errors are mapped
to status codes in one place (`_rpc`), so no handler decides codes itself.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable, Optional

import grpc

from egress_agent.controller.nodes import Leadership, NodeSource, Standalone
from egress_agent.node.status import PodNotProgrammed
from egress_agent.server import reads
from egress_agent.server.pods import DirectPods, LabelsUnknown, PodWriter
from egress_agent.server import write_plan
from egress_agent.server.write_plan import StaleVersion
from egress_agent.server.writes import Expired, Writes
from egress_agent.store import base, typed
from egress_agent.store.base import GATEWAY, NAMESPACE, POD, POLICY, Delete, Put
from egress_api import allocation, convert, limits, models
from egress_api.client import DEADLINE_KEY, ORIGIN_KEY, REQUEST_ID_KEY, VIOLATIONS_KEY
from egress_api.v1 import egress_pb2 as pb
from egress_api.v1 import egress_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


#: name -> counter fields of PolicyCounters (steered_packets, ...); the datapath provides it.
CounterSource = Callable[[str, str], dict[str, int]]  # (policy name, its egress_source_ip) -> counters
#: (node, pod key, store revision of the pod write): returns once that node has programmed the pod,
#: raises node.status.PodNotProgrammed otherwise (egress_agent.node.status.ProgrammedWaiter.wait).
PodProgrammed = Callable[[str, str, int], None]
#: (pod as stored, its record version): raises PodNotProgrammed when its node has not programmed it (GetPod).
PodCheck = Callable[[models.Pod, int], None]
#: () -> (ok, detail) of a part other than the store (e.g. the Kubernetes watcher), for Health.
HealthSource = Callable[[], tuple[bool, str]]


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, violations=(), origin=False):
    metadata = []
    if violations:
        metadata.append((VIOLATIONS_KEY, convert.violations_to_bytes(violations)))
    if origin:
        metadata.append((ORIGIN_KEY, "agent"))
    if metadata:
        context.set_trailing_metadata(metadata)
    context.abort(code, message)


@dataclass(frozen=True)
class Failure:
    """What a caller is told about a failed call: a gRPC status, a message, the violations, and whether it
    was the agent that answered (`origin`: tells "the agent says unavailable" from "no agent there")."""

    code: grpc.StatusCode
    message: str
    violations: tuple = ()
    origin: bool = False


def failure_of(err: Exception, what: str) -> Failure:
    """The documented status of every failure a call can end with, in one place for every transport
    (the gRPC API here, the CNI plugin's pod socket in server.pod_socket). `what`: the call, for logs."""
    if isinstance(err, models.InvalidObject):
        return Failure(grpc.StatusCode.INVALID_ARGUMENT, str(err), tuple(err.violations))
    if isinstance(err, allocation.NoSourceIP):  # the gateway is missing or full: a state of the cluster
        return Failure(grpc.StatusCode.FAILED_PRECONDITION, str(err), (err.violation,))
    if isinstance(err, (StaleVersion, base.Conflict)):
        return Failure(grpc.StatusCode.ABORTED, str(err))
    if isinstance(err, base.NotFound):
        return Failure(grpc.StatusCode.NOT_FOUND, str(err))
    if isinstance(err, base.AlreadyExists):
        return Failure(grpc.StatusCode.ALREADY_EXISTS, f"{err}: import it, or update it instead of creating it")
    if isinstance(err, base.Unavailable):
        return Failure(grpc.StatusCode.UNAVAILABLE, f"cluster store unavailable: {err}", origin=True)
    if isinstance(err, LabelsUnknown):
        return Failure(grpc.StatusCode.DEADLINE_EXCEEDED, str(err), origin=True)
    if isinstance(err, Expired):
        return Failure(grpc.StatusCode.DEADLINE_EXCEEDED, str(err))
    if isinstance(err, limits.LimitExceeded):
        return Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
    if isinstance(err, PodNotProgrammed):
        code = grpc.StatusCode.DEADLINE_EXCEEDED if err.timed_out else grpc.StatusCode.FAILED_PRECONDITION
        return Failure(code, str(err), origin=True)
    log.error("%s failed", what, exc_info=err)
    return Failure(grpc.StatusCode.INTERNAL, f"internal error in {what}: {err}")


def _rpc(handler):
    """Map every failure of a handler to the documented gRPC status code (`failure_of`)."""

    @functools.wraps(handler)
    def wrapper(self, request, context):
        try:
            return handler(self, request, context)
        except Exception as err:
            f = failure_of(err, handler.__name__)
            _abort(context, f.code, f.message, f.violations, f.origin)

    return wrapper


def _pod_key(request) -> str:
    return checked_pod_key(_name(request, "pod"))


def checked_pod_key(key: str) -> str:
    """'namespace/name', each part a valid Kubernetes name (so the key names exactly one pod)."""
    namespace, slash, name = key.partition("/")
    if not slash:
        raise models.InvalidObject(
            "pod", key, [models.Violation(("name",), f"{key!r}: a pod is named by 'namespace/name'")]
        )
    violations = []
    for path, check, value in (("namespace", models.check_namespace_name, namespace), ("name", models.check_pod_name, name)):
        try:
            check(value)
        except ValueError as err:
            violations.append(models.Violation((path,), str(err)))
    if violations:
        raise models.InvalidObject("pod", key, violations)
    return key


def _listed(what: str, records: list) -> list:
    """`records`, or RESOURCE_EXHAUSTED when they are more than one list response may carry."""
    limits.check_list(what, len(records))
    return records


def _write_request(context: grpc.ServicerContext) -> dict:
    """The write's request id and expiry from the caller's metadata, as keyword arguments of writes.Writes.

    request_id: the caller's id for this logical write (sent again when it retries), or "".
    expires_at: the Unix time at which the caller stops waiting for this attempt, or 0.
    """
    metadata = dict(context.invocation_metadata() or ())
    request_id = metadata.get(REQUEST_ID_KEY, "")
    if len(request_id) > 200:
        raise models.InvalidObject("request", "", [models.Violation((REQUEST_ID_KEY,), "at most 200 characters")])
    try:
        expires_at = float(metadata.get(DEADLINE_KEY) or 0)
    except ValueError:
        expires_at = 0.0
    return {"request_id": request_id, "expires_at": expires_at}


def _name(request, what: str) -> str:
    if not request.name:
        raise models.InvalidObject(what, "", [models.Violation(("name",), "this attribute is required")])
    return request.name


class EgressServicer(pb_grpc.EgressServicer):
    def __init__(
        self,
        store: base.Store,
        node: str,
        nodes: NodeSource,
        leadership: Optional[Leadership] = None,
        counters: Optional[CounterSource] = None,
        version: str = "",
        pod_programmed: Optional[PodProgrammed] = None,
        pods: Optional[PodWriter] = None,
        pod_check: Optional[PodCheck] = None,
        health: Optional[HealthSource] = None,
    ):
        self.store = store
        self.node = node
        self.nodes = nodes
        self.leadership = leadership or Standalone()
        self.counters = counters or (lambda name, ip: {})
        self.version = version
        self.pod_programmed = pod_programmed
        self.pods = pods or DirectPods(store)
        self.pod_check = pod_check
        self.health = health
        self.writes = Writes(store, node)

    # --- gateways -------------------------------------------------------------------

    @_rpc
    def CreateGateway(self, request, context):
        rec = self.writes.create(convert.gateway_from_proto(request), **_write_request(context))
        return self._gateway(rec)

    @_rpc
    def GetGateway(self, request, context):
        return self._gateway(self._get(GATEWAY, _name(request, "gateway")))

    @_rpc
    def UpdateGateway(self, request, context):
        rec = self.writes.update(convert.gateway_from_proto(request), request.resource_version, **_write_request(context))
        return self._gateway(rec)

    @_rpc
    def DeleteGateway(self, request, context):
        expires_at = _write_request(context)["expires_at"]
        self.writes.delete(GATEWAY, _name(request, "gateway"), request.resource_version, expires_at=expires_at)
        return pb.Empty()

    @_rpc
    def ListGateways(self, request, context):
        return pb.GatewayList(items=[self._gateway(r) for r in _listed("gateways", self.store.list(GATEWAY))])

    @_rpc
    def ValidateGateway(self, request, context):
        return self._validate(lambda: convert.gateway_from_proto(request))

    # --- policies --------------------------------------------------------------------

    @_rpc
    def CreatePolicy(self, request, context):
        return self._policy(self.writes.create(convert.policy_from_proto(request), **_write_request(context)))

    @_rpc
    def GetPolicy(self, request, context):
        return self._policy(self._get(POLICY, _name(request, "policy")))

    @_rpc
    def UpdatePolicy(self, request, context):
        rec = self.writes.update(convert.policy_from_proto(request), request.resource_version, **_write_request(context))
        return self._policy(rec)

    @_rpc
    def DeletePolicy(self, request, context):
        expires_at = _write_request(context)["expires_at"]
        self.writes.delete(POLICY, _name(request, "policy"), request.resource_version, expires_at=expires_at)
        return pb.Empty()

    @_rpc
    def ListPolicies(self, request, context):
        items = [self._policy(r) for r in _listed("policies", self.store.list(POLICY))]
        if request.with_selection:
            chosen = reads.policy_selections(self.store)
            for item in items:
                if item.name in chosen:
                    item.selection.CopyFrom(chosen[item.name])
        return pb.PolicyList(items=items)

    @_rpc
    def ValidatePolicy(self, request, context):
        return self._validate(lambda: convert.policy_from_proto(request))

    @_rpc
    def DescribePolicy(self, request, context):
        name = _name(request, "policy")
        return reads.describe_policy(self.store, name, self.counters, self.nodes)

    @_rpc
    def GetPolicyImpact(self, request, context):
        return reads.policy_impact(self.store, write_plan.preview(self.store, convert.policy_from_proto(request)))

    @_rpc
    def GetGatewayImpact(self, request, context):
        return reads.gateway_impact(self.store, convert.gateway_from_proto(request))

    @_rpc
    def GetEffectiveIP(self, request, context):
        return reads.effective_ip(self.store, request.namespace, request.pod, request.destination)

    # --- observed state ------------------------------------------------------------------

    @_rpc
    def GetGatewayStatus(self, request, context):
        return reads.gateway_status(self.store, self.nodes, _name(request, "gateway"))

    @_rpc
    def GetNode(self, request, context):
        return reads.node_status(self.store, self.nodes, _name(request, "node"))

    @_rpc
    def ListNodes(self, request, context):
        return pb.NodeList(items=_listed("nodes", reads.node_statuses(self.store, self.nodes)))

    @_rpc
    def ListEvents(self, request, context):
        return pb.EventList(items=_listed("events", reads.events(self.store, request.kind, request.name)))

    # --- workload inventory -------------------------------------------------------------------

    @_rpc
    def UpsertPod(self, request, context):
        return convert.pod_to_proto(self.upsert_pod(convert.pod_from_proto(request)))

    @_rpc
    def GetPod(self, request, context):
        return convert.pod_to_proto(self.get_pod(_pod_key(request)))

    @_rpc
    def DeletePod(self, request, context):
        self.delete_pod(_pod_key(request))
        return pb.Empty()

    # The pod calls themselves, for every transport (the gRPC methods above, server.pod_socket).

    def upsert_pod(self, pod: models.Pod) -> models.Pod:
        """Store `pod`; returns the pod as stored once its node has programmed it."""
        pod, revision = self.pods.upsert(pod)
        if self.pod_programmed is not None:
            # No leak at pod start: wait for the pod's node to program the pod.
            self.pod_programmed(pod.node, f"{pod.namespace}/{pod.name}", revision)
        return pod

    def get_pod(self, key: str) -> models.Pod:
        """The pod `namespace/name`; PodNotProgrammed when its node has not programmed it."""
        rec = self._get(POD, key)
        pod = typed.parsed(self.store).model(rec)
        if self.pod_check is not None:
            self.pod_check(pod, rec.version)
        return pod

    def delete_pod(self, key: str) -> None:
        self.store.commit([Delete(POD, key)])

    @_rpc
    def ListPods(self, request, context):
        cache = typed.parsed(self.store)
        return pb.PodList(items=[convert.pod_to_proto(cache.model(r)) for r in _listed("pods", self.store.list(POD))])

    @_rpc
    def UpsertNamespace(self, request, context):
        ns = convert.namespace_from_proto(request)
        self.store.commit([Put(NAMESPACE, ns.name, ns.model_dump(mode="json"))])
        return convert.namespace_to_proto(ns)

    @_rpc
    def ListNamespaces(self, request, context):
        cache = typed.parsed(self.store)
        items = [convert.namespace_to_proto(cache.model(r)) for r in _listed("namespaces", self.store.list(NAMESPACE))]
        return pb.NamespaceList(items=items)

    # --- health ------------------------------------------------------------------------------

    @_rpc
    def Health(self, request, context):
        store_ok, detail = self.store.healthy()
        ok = store_ok
        if self.health is not None:  # e.g. "kubernetes API unreachable": still serving, but degraded
            part_ok, part_detail = self.health()
            ok = ok and part_ok
            detail = "; ".join(d for d in (detail, part_detail) if d)
        return pb.HealthResponse(
            status="SERVING" if ok else "DEGRADED",
            node=self.node,
            store=self.store.url,
            store_ok=store_ok,
            detail=detail,
            leader=self.leadership.leader(),
            version=self.version,
        )

    # --- helpers -------------------------------------------------------------------------------

    def _get(self, kind: str, name: str) -> base.Record:
        rec = self.store.get(kind, name)
        if rec is None:
            raise base.NotFound(kind, name)
        return rec

    def _gateway(self, rec: base.Record) -> pb.Gateway:
        return convert.gateway_to_proto(typed.parsed(self.store).model(rec), rec.version)

    def _policy(self, rec: base.Record) -> pb.Policy:
        return convert.policy_to_proto(typed.parsed(self.store).model(rec), rec.version)

    def _validate(self, parse: Callable[[], models.Gateway | models.Policy]) -> pb.ValidateResult:
        try:
            obj = parse()
        except models.InvalidObject as err:
            return pb.ValidateResult(errors=[convert.violation_to_proto(v) for v in err.violations])
        errors, warnings = write_plan.validate(self.store, obj, self.nodes)
        return pb.ValidateResult(
            errors=[convert.violation_to_proto(v) for v in errors],
            warnings=[convert.violation_to_proto(v) for v in warnings],
        )
