"""Every API call's caller, its role, the verdict, and (for writes) the audit line: one gRPC interceptor.

The caller's identity comes from where the call arrived:
- a unix socket at mode 0600: root or the agent's own user, who get the server's `unix_role` (admin on
  the API socket; `inventory` and nothing more on --inventory-socket, the CNI plugin's);
- the API socket when --socket-roles names other users: the kernel's uid/gid of the calling process
  (local_peers), mapped by the roles;
- TCP with mutual TLS: the client certificate's `spiffe://egress/...` URI (egress_api.roles), which gRPC
  has already verified against --tls-client-ca;
- TCP without client certificates (loopback, or --insecure-listen): an anonymous caller, given `admin`
  because that is what such a listener was started to offer (the agent warns at start and in Health).

A call whose role may not make it is refused with PERMISSION_DENIED naming the role and the method,
before the servicer sees it, so nothing changes; one without any identity the agent accepts gets
UNAUTHENTICATED. Refused and allowed writes both get an audit line.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import grpc

from egress_agent.server.audit import AuditLog
from egress_agent.server.local_peers import LocalPeers
from egress_api import roles
from egress_api.client import REQUEST_ID_KEY

log = logging.getLogger(__name__)

_LOCAL_ADMIN = f"unix:uid={os.geteuid()}" + ("(root)" if os.geteuid() == 0 else " or root")


@dataclass(frozen=True)
class Caller:
    role: str  # "" when the caller has no role
    principal: str  # who, for messages and the audit log


class AccessControl(grpc.ServerInterceptor):
    def __init__(self, relays: Sequence[LocalPeers], unix_role: str, anonymous_tcp_role: str,
                 audit: Optional[AuditLog] = None):
        self.relays = list(relays)  # unix sockets whose callers are told apart by uid
        self.unix_role = unix_role  # callers on this server's mode-0600 unix socket: root or the agent's user
        self.anonymous_tcp_role = anonymous_tcp_role  # "admin" without mTLS, "" with it
        self.audit = audit

    # --- who -----------------------------------------------------------------------------------

    def caller(self, context: grpc.ServicerContext) -> Caller:
        peer = context.peer() or ""
        for relay in self.relays:
            local = relay.identity(peer)
            if local is not None:
                return Caller(local.role, local.principal)
        if peer.startswith("unix-abstract:"):
            return Caller("", f"{peer} (not a connection the agent relayed)")
        if peer.startswith("unix:"):
            # A socket only root and the agent's user can open (0600; a relay's private one is in a 0700 dir).
            return Caller(self.unix_role, _LOCAL_ADMIN)
        auth = context.auth_context() or {}
        pem = (auth.get("x509_pem_cert") or [b""])[0]
        if pem:
            role, principal = _certificate_identity(pem)
            return Caller(role, principal or f"a certificate without an egress identity ({peer})")
        return Caller(self.anonymous_tcp_role, f"anonymous {peer}")

    # --- the interceptor ---------------------------------------------------------------------

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # unknown method: gRPC answers UNIMPLEMENTED; egress.v1 has no streams
        method = handler_call_details.method.rpartition("/")[2]
        inner = handler.unary_unary

        def checked(request, context):
            caller = self.caller(context)
            write = method in roles.WRITES
            if not roles.allowed(caller.role, method):
                if caller.role:
                    code, message = (grpc.StatusCode.PERMISSION_DENIED,
                                     f"{caller.principal} has role {caller.role}, which may not call {method}; "
                                     f"nothing was changed")
                else:
                    code, message = (grpc.StatusCode.UNAUTHENTICATED if not caller.principal.startswith("unix:")
                                     else grpc.StatusCode.PERMISSION_DENIED,
                                     f"{caller.principal} has no role on this agent, so it may not call {method} "
                                     f"(see docs/security.md)")
                if write and self.audit is not None:
                    self._audit(caller, method, request, context, code.name, None)
                context.abort(code, message)
            if not write or self.audit is None:
                return inner(request, context)
            response = None
            try:
                response = inner(request, context)
                return response
            finally:
                code = context.code() or (grpc.StatusCode.OK if response is not None else grpc.StatusCode.UNKNOWN)
                self._audit(caller, method, request, context, code.name, response)

        return grpc.unary_unary_rpc_method_handler(
            checked, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _audit(self, caller: Caller, method: str, request, context, outcome: str, response) -> None:
        metadata = dict(context.invocation_metadata() or ())
        try:
            self.audit.record(identity=caller.principal, role=caller.role or None, method=method,
                              object=_object(method, request), outcome=outcome,
                              resource_version=getattr(response, "resource_version", None) or None,
                              request_id=metadata.get(REQUEST_ID_KEY) or None)
        except OSError as err:  # a full disk must not turn a done write into an error
            log.error("audit log %s: %s", self.audit.target, err)


def _object(method: str, request) -> str:
    kind = next((k for k in ("Gateway", "Policy", "Pod", "Namespace") if method.endswith(k)), "object")
    name = getattr(request, "name", "")
    namespace = getattr(request, "namespace", "")
    return f"{kind.lower()}/{namespace + '/' if namespace else ''}{name}"


@functools.lru_cache(maxsize=256)
def _certificate_identity(pem: bytes) -> tuple[str, str]:
    """(role, principal) of a verified client certificate; cached: a client sends the same one every call."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem)
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
    except (ValueError, x509.ExtensionNotFound):
        return "", ""
    return roles.role_from_uris(uris)
