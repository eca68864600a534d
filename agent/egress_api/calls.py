"""How one agent API call is made: endpoints, failover, retries of writes, errors, logs.

A client holds an ordered list of agent endpoints (any agent of a cluster
serves the whole cluster). A call goes to the endpoint that answered last;
when it fails in a way that says nothing about the request's effect, the next
endpoint is tried:

- cannot connect (refused, no socket, TRANSIENT_FAILURE): nothing was sent,
  so any call fails over at once;
- the agent answered that its store is unavailable: nothing was changed, fail
  over (another agent may still reach the store);
- no answer in time (DEADLINE_EXCEEDED) or the connection broke mid-call:
  the agent may have applied a write. A write is then *retried with the same
  request id* (on the next endpoint, or the same one once it answers) until
  it is answered or the caller's deadline passes; the agent answers a replay
  of a request it already applied with that request's result (see
  egress_agent.server.write_plan), so the retry resolves the unknown outcome and
  never applies a write twice. A delete retried after an unknown outcome that
  finds nothing to delete was done by the earlier attempt.

Every other answer (invalid, not found, conflict, ...) is the agent's decision
and is returned to the caller as it is: failing over would not change it.

Each attempt is logged (logger "egress_api.calls", DEBUG on success, WARNING on
failure) with the endpoint, RPC, duration and outcome; the Terraform provider
turns these records into its plugin log lines.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional, Sequence

import grpc

from egress_api import convert, errors, limits, transport
from egress_api.v1 import egress_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

VIOLATIONS_KEY = "egress-violations-bin"
# Set by the agent on UNAVAILABLE it raises itself (its store is down), to tell that
# apart from "cannot connect to the agent at all".
ORIGIN_KEY = "egress-origin"
# The id of one logical write; sent again, unchanged, with every retry of it.
REQUEST_ID_KEY = "egress-request-id"
# Wall-clock time (Unix seconds) after which the caller no longer waits for this attempt: an agent that
# only gets to a write later (it was paused, or the request sat in a queue) refuses it instead of applying
# it behind the caller's back, e.g. after the caller has retried elsewhere and moved on to a delete.
DEADLINE_KEY = "egress-deadline"

# How long a write whose outcome is unknown is retried when the caller gives no deadline.
DEFAULT_RESOLVE_SECONDS = 60.0
_RETRY_PAUSE_S = 0.5  # between rounds over all endpoints, while an outcome is unknown

# What gRPC says when it never got a connection, so nothing was sent.
# Checked before _NOT_CONNECTED: a failed handshake also reads "failed to connect".
_TLS_FAILED = ("ssl", "handshake", "certificate", "tls")
_NOT_CONNECTED = ("failed to connect", "connection refused", "no such file", "connect failed", "dns resolution failed")


def new_request_id() -> str:
    return uuid.uuid4().hex


def parse_endpoints(value: str | Sequence[str]) -> list[str]:
    """Endpoints from a comma-separated string or a list, each checked (TargetError names the bad one)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = [str(transport.parse_target(item)) for item in (i.strip() for i in items) if item]
    if not out:
        raise transport.TargetError("no endpoint given: use unix:///path/to/agent.sock or host:port")
    return list(dict.fromkeys(out))


@dataclass
class Attempt:
    endpoint: str
    outcome: str  # "ok", or the status code name and a short reason
    seconds: float


@dataclass
class CallRecord:
    """What happened to one logical call: every attempt, and whether an unknown write outcome was resolved."""

    rpc: str
    attempts: list[Attempt] = field(default_factory=list)
    unknown_outcome: bool = False  # some attempt of this write may or may not have been applied
    resolved: str = ""  # how an unknown outcome was settled, for the caller to report

    @property
    def endpoint(self) -> str:
        return self.attempts[-1].endpoint if self.attempts else ""


class Caller:
    """Makes calls over one gRPC channel per endpoint, failing over in list order."""

    def __init__(self, endpoints: str | Sequence[str], timeout: float, tls: Optional[transport.ClientTLS] = None):
        self.tls = tls  # for TCP endpoints; unix sockets are local and never use it
        try:
            self.endpoints = parse_endpoints(endpoints)
        except transport.TargetError as err:
            raise errors.InvalidArgument(f"invalid endpoint: {err}") from None
        self.timeout = timeout
        self._preferred = 0  # index of the endpoint that answered last
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, pb_grpc.EgressStub] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._closed = False

    @property
    def endpoint(self) -> str:
        """The endpoint calls go to first (the one that answered last)."""
        return self.endpoints[self._preferred]

    @property
    def last(self) -> Optional[CallRecord]:
        """The record of the last call made by this thread."""
        return getattr(self._local, "record", None)

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()
            self._stubs.clear()
            self._closed = True

    def _stub(self, endpoint: str) -> pb_grpc.EgressStub:
        with self._lock:
            if self._closed:
                raise errors.ApiError(f"egress client for {endpoint}: cannot call on a closed channel")
            if endpoint not in self._stubs:
                self._channels[endpoint] = transport.channel(endpoint, self.tls)
                self._stubs[endpoint] = pb_grpc.EgressStub(self._channels[endpoint])
            return self._stubs[endpoint]

    def call(self, rpc: str, request, *, write: bool = False, request_id: str = "", deadline: Optional[float] = None,
             missing_ok_after_unknown: bool = False, attempt_timeout: Optional[float] = None):
        """Call `rpc` (e.g. "CreatePolicy") with failover; a `write` is retried while its outcome is unknown.

        `deadline` (time.monotonic()) bounds the whole call, retries included; each attempt waits at
        most `attempt_timeout` (default: the client's timeout). Returns the response, or None when `missing_ok_after_unknown` and a retry
        found nothing after an attempt with unknown outcome (a delete that the earlier attempt did).
        """
        record = CallRecord(rpc)
        self._local.record = record
        base_metadata = ((REQUEST_ID_KEY, request_id),) if request_id else ()
        if deadline is None and write:
            deadline = time.monotonic() + max(DEFAULT_RESOLVE_SECONDS, self.timeout)
        n = len(self.endpoints)
        per_attempt = attempt_timeout or self.timeout
        start = self._preferred
        failures: list[tuple[str, errors.ApiError]] = []
        attempt = 0
        while True:
            index = (start + attempt) % n
            endpoint = self.endpoints[index]
            timeout = per_attempt if deadline is None else min(per_attempt, deadline - time.monotonic())
            if timeout <= 0:
                break
            began = time.monotonic()
            metadata = (*base_metadata, (DEADLINE_KEY, f"{time.time() + timeout:.3f}")) if write else base_metadata
            try:
                response = getattr(self._stub(endpoint), rpc)(request, timeout=timeout, metadata=metadata)
            except grpc.RpcError as rpc_err:
                err, unknown = self._error(rpc_err, endpoint, timeout, write)
                self._note(record, endpoint, began, _outcome(rpc_err, unknown), rpc, request_id, ok=False,
                           error=err.message)
                if isinstance(err, errors.NotFound) and record.unknown_outcome and missing_ok_after_unknown:
                    record.resolved = (f"a retry on {endpoint} found nothing to delete: the earlier attempt "
                                       "deleted it")
                    return None
                if not isinstance(err, errors.Unavailable) or _agent_timed_out(rpc_err, err):
                    raise err from None
                record.unknown_outcome |= unknown
                failures.append((endpoint, err))
            except ValueError as val_err:  # grpc raises ValueError on a closed channel
                raise errors.ApiError(f"egress client for {endpoint}: {val_err}") from None
            else:
                self._note(record, endpoint, began, "ok", rpc, request_id, ok=True)
                self._preferred = index
                if record.unknown_outcome:
                    record.resolved = _resolution(record, endpoint)
                    log.warning("%s: outcome was unknown; %s", rpc, record.resolved,
                                extra={"rpc": rpc, "endpoint": endpoint, "request_id": request_id})
                return response
            attempt += 1
            if attempt % n == 0:  # every endpoint failed once
                if not (write and record.unknown_outcome):
                    break  # nothing was applied anywhere: fail now, a retry would only delay the error
                pause = _RETRY_PAUSE_S if deadline is None else min(_RETRY_PAUSE_S, deadline - time.monotonic())
                if pause > 0:
                    time.sleep(pause)
        raise self._final_error(record, failures, deadline)

    # --- errors --------------------------------------------------------------------------

    def _error(self, err: grpc.RpcError, endpoint: str, timeout: float, write: bool) -> tuple[errors.ApiError, bool]:
        """(the egress error for a failed attempt, whether a write may have been applied by it)."""
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        details = (err.details() if hasattr(err, "details") else "") or str(code)
        trailing = dict(err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else {}
        violations = []
        if VIOLATIONS_KEY in trailing:
            try:
                violations = convert.violations_from_bytes(trailing[VIOLATIONS_KEY])
            except Exception:  # a malformed trailer must not hide the agent's message
                violations = []
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            if trailing.get(ORIGIN_KEY) == "agent":
                return errors.Unavailable(f"egress-agent at {endpoint}: {details}", agent_answered=True), False
            if code == grpc.StatusCode.UNAVAILABLE and any(s in details.lower() for s in _TLS_FAILED):
                return errors.Unavailable(
                    f"TLS with egress-agent at {endpoint} failed: check the CA, client certificate and key "
                    f"(ca_file/cert_file/key_file, EGRESS_CA_FILE/..., egressctl --ca/--cert/--key) and that "
                    f"the agent serves TLS there [{details}]"), False
            if code == grpc.StatusCode.UNAVAILABLE and "socket closed" in details.lower() and ":" in endpoint \
                    and not endpoint.startswith("unix:"):
                # A TLS listener closes a plaintext connection, or a TLS one without the client certificate it requires.
                hint = ("the agent may require a client certificate (cert_file/key_file, egressctl --cert/--key)"
                        if self.tls is not None else
                        "if it serves TLS, give its CA and a client certificate (ca_file/cert_file/key_file, "
                        "EGRESS_CA_FILE/EGRESS_CERT_FILE/EGRESS_KEY_FILE, egressctl --ca/--cert/--key)")
                return errors.Unavailable(f"egress-agent at {endpoint} closed the connection: {hint} [{details}]"), False
            if code == grpc.StatusCode.UNAVAILABLE and any(s in details.lower() for s in _NOT_CONNECTED):
                return errors.Unavailable(
                    f"cannot reach egress-agent at {endpoint}: is it running? "
                    f"(set the provider's endpoints / EGRESS_ENDPOINT / egressctl --endpoint) [{details}]"), False
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                what = f"no answer within {timeout:g}s"
            else:
                what = f"the connection failed during the call [{details}]"
            if write:
                return errors.Unavailable(f"egress-agent at {endpoint}: {what}; the write may or may not have "
                                          "been applied"), True
            return errors.Unavailable(f"egress-agent at {endpoint}: {what}"), False
        cls = {
            grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
            grpc.StatusCode.UNAUTHENTICATED: errors.PermissionDenied,
            grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
            grpc.StatusCode.NOT_FOUND: errors.NotFound,
            grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
            grpc.StatusCode.ABORTED: errors.Conflict,
            grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
            grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
        }.get(code, errors.ApiError)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            details = _name_message_limit(details)
        if cls is errors.ApiError:
            details = f"egress-agent at {endpoint} failed ({code.name}): {details}"
        return cls(details, violations), False

    def _final_error(self, record: CallRecord, failures: list[tuple[str, errors.ApiError]],
                     deadline: Optional[float]) -> errors.ApiError:
        tried = ", ".join(dict.fromkeys(e for e, _ in failures)) or ", ".join(self.endpoints)
        last = failures[-1][1] if failures else errors.Unavailable(f"no time left to call {tried}")
        if record.unknown_outcome:
            waited = sum(a.seconds for a in record.attempts)
            return errors.OutcomeUnknown(
                f"the outcome of this write is unknown: an agent received it but did not answer, and "
                f"{len(record.attempts)} attempts with the same request id over {waited:.0f}s "
                f"({tried}) got no answer either. Last: {last.message}"
            )
        if len(failures) > 1 and all(not e.agent_answered for _, e in failures if isinstance(e, errors.Unavailable)):
            return errors.Unavailable(
                f"cannot reach any egress-agent ({tried}); nothing was changed. Last: {last.message}"
            )
        return last

    def _note(self, record: CallRecord, endpoint: str, began: float, outcome: str, rpc: str, request_id: str,
              ok: bool, error: str = "") -> None:
        seconds = time.monotonic() - began
        record.attempts.append(Attempt(endpoint, outcome, seconds))
        extra = {"rpc": rpc, "endpoint": endpoint, "duration_ms": round(seconds * 1000, 1), "outcome": outcome,
                 "attempt": len(record.attempts)}
        if request_id:
            extra["request_id"] = request_id
        if error:
            extra["error"] = error
        (log.debug if ok else log.warning)("agent call %s %s: %s", rpc, endpoint, outcome, extra=extra)


def _agent_timed_out(rpc_err: grpc.RpcError, err: errors.ApiError) -> bool:
    """The agent itself answered that its own wait ran out (e.g. a pod not programmed in time): another agent
    would wait for the same thing, so this is the answer, not a reason to fail over."""
    code = rpc_err.code() if hasattr(rpc_err, "code") else None
    return getattr(err, "agent_answered", False) and code == grpc.StatusCode.DEADLINE_EXCEEDED


def _outcome(err: grpc.RpcError, unknown: bool) -> str:
    code = err.code().name if hasattr(err, "code") else "UNKNOWN"
    return f"{code} (outcome unknown)" if unknown else code


def _resolution(record: CallRecord, endpoint: str) -> str:
    first_unknown = next(a for a in record.attempts if a.outcome.endswith("(outcome unknown)"))
    return (f"the write sent to {first_unknown.endpoint} got no answer ({first_unknown.outcome}); "
            f"a retry with the same request id was answered by {endpoint} after "
            f"{len(record.attempts)} attempts, so it is applied exactly once")


def _name_message_limit(details: str) -> str:
    """gRPC's own refusals (message sizes, the agent's concurrent-RPC limit) with the limit named."""
    if "concurrent rpc limit exceeded" in details.lower():
        return (f"{details}: the agent is handling its limit of RPCs at once (MAX_CONCURRENT_RPCS = "
                f"{limits.MAX_CONCURRENT_RPCS}; see docs/limits.md); try again")
    if "message larger than max" not in details.lower():
        return details  # the agent's own RESOURCE_EXHAUSTED already names its limit
    return (f"{details}: over a message size limit (MAX_REQUEST_BYTES = {limits.MAX_REQUEST_BYTES:,} bytes per "
            f"request, MAX_RESPONSE_BYTES = {limits.MAX_RESPONSE_BYTES:,} per response; see docs/limits.md)")
