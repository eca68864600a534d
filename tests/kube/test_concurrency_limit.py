"""MAX_CONCURRENT_RPCS and MAX_STREAMS_PER_CONNECTION against a real agent.

A blocking RPC is needed to fill the agent: with --kubernetes, UpsertPod of a pod the API server has not
shown waits for the pod's labels (--kube-label-wait), like a CNI ADD that races the watch.
"""

from __future__ import annotations

import time

import grpc
import pytest

from egress_api import errors, limits
from egress_api.client import EgressClient
from egress_api.v1 import egress_pb2 as pb


def _connection(agent) -> grpc.Channel:
    # Its own subchannel: gRPC otherwise shares one connection between channels to the same target.
    return grpc.insecure_channel(agent.endpoint, options=[("grpc.use_local_subchannel_pool", 1)])


def _blocking_upserts(channel: grpc.Channel, first: int, count: int) -> list[grpc.Future]:
    upsert = channel.unary_unary("/egress.v1.Egress/UpsertPod", request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
    out = []
    for i in range(first, first + count):
        pod = pb.Pod(name=f"web-{i}", namespace="alice", node="worker1", ip=f"10.244.{1 + i // 250}.{1 + i % 250}")
        out.append(upsert.future(pod.SerializeToString(), timeout=120))
    return out


def test_streams_per_connection_and_rpcs_per_agent(make_kube_agent):
    agent = make_kube_agent("--kube-label-wait", "60")
    streams, agent_limit = limits.MAX_STREAMS_PER_CONNECTION, limits.MAX_CONCURRENT_RPCS
    # Fill the agent up to exactly its limit: 8 connections of 56 calls, and one connection asked for 100
    # calls of which only MAX_STREAMS_PER_CONNECTION (64) may be open at once; the others wait in the client.
    others = agent_limit - streams
    channels = [_connection(agent) for _ in range(9)]
    try:
        calls = []
        per = others // 8
        for n in range(8):
            calls += _blocking_upserts(channels[n], n * per, per)
        calls += _blocking_upserts(channels[8], others, 100)

        # Let every call reach the agent. Probing sooner would not do: a probe the agent accepts waits
        # behind the blocked ones and takes one of the 512 places itself.
        time.sleep(5)
        with pytest.raises(errors.ResourceExhausted) as info:
            with EgressClient(agent.endpoint, timeout=20) as client:
                client.health()
        assert f"Concurrent RPC limit exceeded!: the agent is handling its limit of RPCs at once " \
               f"(MAX_CONCURRENT_RPCS = {agent_limit}; see docs/limits.md); try again" in info.value.message
        # The agent holds exactly 448 + 64 = 512 calls: none of the 548 was refused, so 36 of the one
        # connection's 100 never reached it (they wait for a stream), and one more call is refused.
        assert [c for c in calls if c.done()] == []
        extra = _blocking_upserts(channels[0], 10_000, 1)[0]
        assert extra.exception(timeout=10).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for ch in channels:
            ch.close()
