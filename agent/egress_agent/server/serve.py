"""The agent's gRPC server: the servicer behind the unix socket and, optionally, a TCP listener.

Unix sockets are served through `local_peers.LocalPeers` (so each call knows its caller's uid);
the TCP listener speaks TLS with `tls.ReloadingCredentials` when the agent has a certificate.
`access.AccessControl` is the first interceptor: no other code runs for a refused call.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Optional, Sequence

import grpc

from egress_agent.server.local_peers import LocalPeers
from egress_agent.server.tls import ReloadingCredentials
from egress_api import transport
from egress_api.v1 import egress_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, servicer: pb_grpc.EgressServicer, sockets: Sequence[LocalPeers], listen: str = "",
                 tls: Optional[ReloadingCredentials] = None, workers: int = 8,
                 interceptors: Sequence[grpc.ServerInterceptor] = ()):
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api"),
            options=transport.server_options(),
            interceptors=list(interceptors),  # access control first, then e.g. metrics.api.ApiMetrics
        )
        pb_grpc.add_EgressServicer_to_server(servicer, self._server)
        self._sockets = list(sockets)
        self._internal = [transport.bind(self._server, s.grpc_target) for s in self._sockets]
        self._listen = transport.bind(self._server, listen, tls.credentials if tls else None) if listen else None
        self._tls = tls

    def start(self) -> None:
        self._server.start()
        for internal in self._internal:
            transport.secure_socket(internal)
        for sock in self._sockets:
            sock.start()
            log.info("serving egress.v1 API on unix://%s (%s)", sock.public_path, sock.socket_roles.spec or "roles by uid")
        if self._listen is not None:
            how = "plaintext" if self._tls is None else (
                "mutual TLS" if self._tls.files.mutual else "TLS, no client certificates")
            log.info("serving egress.v1 API on %s (%s)", self._listen, how)

    def stop(self, grace: float = 2.0) -> None:
        for sock in self._sockets:
            sock.stop()  # no new local connections while the server drains
        self._server.stop(grace).wait(grace + 1)
        for internal in self._internal:
            transport.remove_socket(internal)
