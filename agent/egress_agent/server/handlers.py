"""The servicer's method handlers, with malformed requests answered INVALID_ARGUMENT.

gRPC answers a request its deserializer cannot parse with INTERNAL, which
reads as the agent's fault and is what clients retry. A malformed protobuf is
the caller's fault: each handler here gets a deserializer that turns a parse
failure into a marker, and a behaviour that answers the marker with
INVALID_ARGUMENT naming the expected message, before the servicer sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from egress_api.v1 import egress_pb2 as pb
from egress_api.v1 import egress_pb2_grpc as pb_grpc

SERVICE = "egress.v1.Egress"


@dataclass(frozen=True)
class _Malformed:
    """What a request became when it could not be parsed."""

    message: str


def add_servicer(servicer: pb_grpc.EgressServicer, server: grpc.Server) -> None:
    """`add_EgressServicer_to_server`, with every request deserializer guarded."""
    generated = _Handlers()
    pb_grpc.add_EgressServicer_to_server(servicer, generated)
    guarded = {name: _guard(name, handler) for name, handler in generated.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, guarded),))
    server.add_registered_method_handlers(SERVICE, guarded)


class _Handlers:
    """Stands in for the server while the generated code registers its handlers, to collect them."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass  # the same handlers come again through add_registered_method_handlers

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        assert service == SERVICE, service
        self.handlers.update(handlers)


def _guard(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    request_type = pb.DESCRIPTOR.services_by_name["Egress"].methods_by_name[method].input_type.full_name
    parse, behaviour = handler.request_deserializer, handler.unary_unary

    def deserialize(data: bytes):
        try:
            return parse(data)
        except Exception as err:  # DecodeError, or anything else the parser raises on hostile bytes
            return _Malformed(f"malformed request: {len(data)} bytes that are not a valid {request_type} message ({err})")

    def handle(request, context: grpc.ServicerContext):
        if isinstance(request, _Malformed):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return behaviour(request, context)

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=deserialize, response_serializer=handler.response_serializer
    )
