"""API requests by method and gRPC status code, and their latency: a gRPC server interceptor.

The servicer maps every failure to a status code in one place (`servicer._rpc`)
and aborts with it; `context.code()` is that code after the handler returns or
raises, so the interceptor reads the real code without re-mapping errors.
"""

from __future__ import annotations

import time

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

# API calls range from a cached read (~1 ms) to an UpsertPod that waits for the datapath (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics(grpc.ServerInterceptor):
    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "egress_api_requests", "egress.v1 API requests handled, by method and gRPC status code",
            ["method", "code"], registry=registry,
        )
        self.latency = Histogram(
            "egress_api_request_duration_seconds", "Time to handle an egress.v1 API request, by method",
            ["method"], buckets=LATENCY_BUCKETS, registry=registry,
        )

    def observe(self, method: str, code: str, seconds: float) -> None:
        """One call, by method and status code name (also the CNI plugin's pod socket, server.pod_socket)."""
        self.requests.labels(method, code).inc()
        self.latency.labels(method).observe(seconds)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # unknown method (gRPC answers UNIMPLEMENTED), or a streaming one: none in egress.v1
        method = handler_call_details.method.rpartition("/")[2]
        inner = handler.unary_unary

        def observed(request, context):
            start = time.perf_counter()
            failed = True
            try:
                response = inner(request, context)
                failed = False
                return response
            finally:
                code = context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
                self.observe(method, code.name, time.perf_counter() - start)

        return grpc.unary_unary_rpc_method_handler(
            observed, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
