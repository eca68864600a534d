"""The plugin's calls to the node's egress-agent: inventory RPCs only, over its unix socket.

`AgentCalls` turns every gRPC failure into `AgentFailure` with a message a
cluster operator can act on and whether the agent itself answered (so the
failure policy can tell "agent down" from "agent says no").
"""

from __future__ import annotations

import grpc

from egress_api.v1 import egress_pb2 as pb
from egress_api.v1 import egress_pb2_grpc as pb_grpc

ORIGIN_KEY = "egress-origin"  # egress_api.client.ORIGIN_KEY; not imported: that module pulls in pydantic


class AgentFailure(Exception):
    """`code`: the gRPC status name; `reachable`: the agent answered (False: nobody listens on the socket)."""

    def __init__(self, message: str, code: str, reachable: bool):
        super().__init__(message)
        self.code = code
        self.reachable = reachable


class AgentCalls:
    def __init__(self, socket: str, timeout: float):
        self.socket = socket
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        self._stub = pb_grpc.EgressStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, what: str, timeout: float | None = None):
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            code = err.code()
            details = err.details() or code.name
            from_agent = dict(err.trailing_metadata() or ()).get(ORIGIN_KEY) == "agent"
            if code == grpc.StatusCode.UNAVAILABLE and not from_agent:
                raise AgentFailure(
                    f"{what}: cannot reach the egress-agent on {self.socket} ({details}): "
                    "is the egress-agent DaemonSet running on this node?",
                    code.name, reachable=False,
                ) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and not from_agent:
                raise AgentFailure(
                    f"{what}: the egress-agent on {self.socket} did not answer within {timeout or self.timeout:g}s",
                    code.name, reachable=True,
                ) from None
            raise AgentFailure(f"{what}: {details}", code.name, reachable=True) from None

    def node(self) -> str:
        """The agent's node name (the pod runs on the node whose agent owns this socket)."""
        return self._call(self._stub.Health, pb.Empty(), "asking the egress-agent for its node", timeout=5).node

    def upsert_pod(self, pod: pb.Pod) -> pb.Pod:
        """Returns once the node has programmed the pod (and, with --kubernetes, the pod's labels are known)."""
        return self._call(self._stub.UpsertPod, pod, f"registering pod {pod.namespace}/{pod.name}")

    def delete_pod(self, key: str) -> None:
        self._call(self._stub.DeletePod, pb.ObjectRef(name=key), f"removing pod {key}", timeout=5)

    def get_pod(self, key: str) -> pb.Pod:
        return self._call(self._stub.GetPod, pb.ObjectRef(name=key), f"checking pod {key}", timeout=5)
