"""The agent's gRPC servers: the servicer behind unix sockets and, optionally, a TCP listener.

A unix socket is served one of two ways:
- directly (mode 0600): only root and the agent's own user can connect, and they are the
  socket's role (`AccessControl.unix_role`); no hop, no cost;
- through `local_peers.LocalPeers` when --socket-roles names other users: the relay learns
  each caller's uid from the kernel, at the price of one local hop per message.
The TCP listener speaks TLS with `tls.ReloadingCredentials` when the agent has a certificate.
`access.AccessControl` is the first interceptor: no other code runs for a refused call.

gRPC does not say on which listener a call arrived, so a socket whose callers get another
role (--inventory-socket) is served by an `ApiServer` of its own.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Optional, Sequence

import grpc

from egress_agent.server import handlers
from egress_agent.server.local_peers import LocalPeers
from egress_agent.server.tls import ReloadingCredentials
from egress_api import limits, transport
from egress_api.v1 import egress_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, servicer: pb_grpc.EgressServicer, *, sockets: Sequence[str] = (),
                 relays: Sequence[LocalPeers] = (), listen: str = "", tls: Optional[ReloadingCredentials] = None,
                 workers: int = 8, interceptors: Sequence[grpc.ServerInterceptor] = (), what: str = "API"):
        self.what = what
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api"),
            options=transport.server_options(),
            maximum_concurrent_rpcs=limits.MAX_CONCURRENT_RPCS,  # beyond it: RESOURCE_EXHAUSTED
            interceptors=list(interceptors),  # access control first, then e.g. metrics.api.ApiMetrics
        )
        handlers.add_servicer(servicer, self._server)  # malformed requests: INVALID_ARGUMENT
        self._relays = list(relays)
        self._direct = [transport.bind(self._server, f"unix://{path}") for path in sockets]
        self._unix = self._direct + [transport.bind(self._server, r.grpc_target) for r in self._relays]
        self._listen = transport.bind(self._server, listen, tls.credentials if tls else None) if listen else None
        self._tls = tls

    def start(self) -> None:
        self._server.start()
        for target in self._unix:
            transport.secure_socket(target)
        for relay in self._relays:
            relay.start()
        for target in self._direct:
            log.info("serving the egress.v1 %s on %s", self.what, target)
        for relay in self._relays:
            log.info("serving the egress.v1 %s on unix://%s (roles by caller uid: %s)", self.what, relay.public_path,
                     relay.socket_roles.spec)
        if self._listen is not None:
            how = "plaintext" if self._tls is None else (
                "mutual TLS" if self._tls.files.mutual else "TLS, no client certificates")
            log.info("serving the egress.v1 %s on %s (%s)", self.what, self._listen, how)

    def stop(self, grace: float = 2.0) -> None:
        for relay in self._relays:
            relay.stop()  # no new local connections while the server drains
        self._server.stop(grace).wait(grace + 1)
        for target in self._unix:
            transport.remove_socket(target)
