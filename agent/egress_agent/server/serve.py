"""The agent's gRPC server: the servicer on a unix socket and, optionally, TCP."""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Sequence

import grpc

from egress_api import transport
from egress_api.v1 import egress_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, servicer: pb_grpc.EgressServicer, targets: list[str], workers: int = 8,
                 interceptors: Sequence[grpc.ServerInterceptor] = ()):
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api"),
            options=transport.server_options(),
            interceptors=list(interceptors),  # e.g. metrics.api.ApiMetrics
        )
        pb_grpc.add_EgressServicer_to_server(servicer, self._server)
        self._targets = [transport.bind(self._server, t) for t in targets]

    def start(self) -> None:
        self._server.start()
        for t in self._targets:
            transport.secure_socket(t)
            log.info("serving egress.v1 API on %s", t)

    def stop(self, grace: float = 2.0) -> None:
        self._server.stop(grace).wait(grace + 1)
        for t in self._targets:
            transport.remove_socket(t)
