"""The HTTP endpoint: prometheus-client's own WSGI server, serving one registry at `/metrics`."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, start_http_server

from egress_api import transport

log = logging.getLogger(__name__)


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, listen: str):
        self.registry = registry
        target = transport.parse_target(listen)
        self.host, _, port = target.address.rpartition(":")
        self.host = self.host.strip("[]")
        self.port = int(port)
        self._server = None
        self._thread = None

    def start(self) -> None:
        # Raises OSError when the port is taken: the agent does not start half-observable.
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        log.info("serving Prometheus metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=2)
            self._server = None
