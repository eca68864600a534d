"""The HTTP endpoint: prometheus-client's own WSGI server, serving one registry at `/metrics`.

With the agent's TLS files (--tls-cert/--tls-key) it serves HTTPS, TLS 1.2 or later; with
--tls-client-ca it asks for a client certificate from that CA (any role: metrics are read-only,
and Prometheus' `tls_config` sends one). The files are read again within `RELOAD_CHECK` seconds
of a change: Python's SSLContext takes a new certificate for the handshakes that follow.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Optional

from prometheus_client import CollectorRegistry, start_http_server

from egress_agent.server.tls import ServerTLSFiles, file_stamp
from egress_api import transport

log = logging.getLogger(__name__)

RELOAD_CHECK = 5.0  # seconds between looks at the TLS files


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, listen: str, tls: Optional[ServerTLSFiles] = None):
        self.registry = registry
        target = transport.parse_target(listen)
        self.host, _, port = target.address.rpartition(":")
        self.host = self.host.strip("[]")
        self.port = int(port)
        self.tls = tls
        self._server = None
        self._thread = None
        self._stop = threading.Event()
        self._reloader: Optional[threading.Thread] = None

    def start(self) -> None:
        # Raises OSError when the port is taken: the agent does not start half-observable.
        tls = {}
        if self.tls is not None:
            tls = {"certfile": self.tls.cert, "keyfile": self.tls.key, "client_cafile": self.tls.client_ca or None,
                   "client_auth_required": self.tls.mutual, "tls_min_version": ssl.TLSVersion.TLSv1_2}
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry, **tls)
        scheme = "https" if self.tls else "http"
        log.info("serving Prometheus metrics on %s://%s:%d/metrics%s", scheme, self.host, self.port,
                 " (client certificates required)" if self.tls and self.tls.mutual else "")
        if self.tls is not None:
            self._reloader = threading.Thread(target=self._reload_loop, name="metrics-tls-reload", daemon=True)
            self._reloader.start()

    def _reload_loop(self) -> None:
        paths = tuple(p for p in (self.tls.cert, self.tls.key, self.tls.client_ca) if p)
        seen = file_stamp(paths)
        context: ssl.SSLContext = self._server.socket.context
        while not self._stop.wait(RELOAD_CHECK):
            now = file_stamp(paths)
            if now == seen:
                continue
            seen = now
            try:
                context.load_cert_chain(self.tls.cert, self.tls.key)
                if self.tls.client_ca:
                    context.load_verify_locations(self.tls.client_ca)
                log.info("metrics TLS: reloaded %s", ", ".join(paths))
            except (OSError, ssl.SSLError) as err:
                log.warning("metrics TLS files changed but cannot be used, keeping the previous ones: %s", err)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=2)
            self._server = None
