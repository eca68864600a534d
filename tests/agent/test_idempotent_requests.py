"""Request ids and write deadlines on a real agent: a retried write is applied once, a late one never."""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import pytest

from egress_api import convert, errors, models
from egress_api.client import DEADLINE_KEY, REQUEST_ID_KEY, EgressClient
from egress_api.v1 import egress_pb2_grpc as pb_grpc

from seed_objects import GW, policy


def test_a_replayed_create_or_update_is_answered_with_its_result(agent_process):
    c = agent_process.client
    first = c.create_gateway(GW, request_id="req-1")
    assert c.create_gateway(GW, request_id="req-1") == first  # replay: same object, same version
    with pytest.raises(errors.AlreadyExists):
        c.create_gateway(GW, request_id="req-2")  # another write of the same name is still refused
    with pytest.raises(errors.AlreadyExists):
        c.create_gateway(GW)

    bigger = models.Gateway(name="default", floating_ips=[*GW.floating_ips, "192.0.2.103"])
    updated = c.update_gateway(bigger, resource_version=first.resource_version, request_id="req-3")
    # The same update again (its first answer was lost): its base version is stale now, but it is a replay.
    assert c.update_gateway(bigger, resource_version=first.resource_version, request_id="req-3") == updated
    with pytest.raises(errors.Conflict):  # a different write from the stale version is a real conflict
        c.update_gateway(GW, resource_version=first.resource_version, request_id="req-4")
    # A replay must also match what it writes: the same id with another spec is not a replay.
    with pytest.raises(errors.Conflict):
        c.update_gateway(GW, resource_version=first.resource_version, request_id="req-3")

    # Once someone else writes the object, the old request no longer matches.
    third = c.update_gateway(GW, resource_version=updated.resource_version)
    with pytest.raises(errors.Conflict):
        c.update_gateway(bigger, resource_version=first.resource_version, request_id="req-3")
    c.delete_gateway("default", resource_version=third.resource_version)
    # Deleted: a replay of the original create makes a new object (the record went with the object).
    again = c.create_gateway(GW, request_id="req-1")
    assert again.resource_version > third.resource_version


def test_a_write_the_caller_stopped_waiting_for_is_not_applied(agent_process):
    channel = grpc.insecure_channel(str(agent_process.endpoint))
    stub = pb_grpc.EgressStub(channel)
    late = ((DEADLINE_KEY, f"{time.time() - 10:.3f}"), (REQUEST_ID_KEY, "late-1"))
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateGateway(convert.gateway_to_proto(GW), metadata=late, timeout=5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "after the caller stopped waiting; not applied" in info.value.details()
    assert agent_process.client.list_gateways() == []
    channel.close()


def test_a_paused_agents_writes_are_retried_and_applied_exactly_once(agent_process):
    """The client's first attempt gets no answer (agent stopped); its retries resolve the outcome after SIGCONT."""
    c = EgressClient(agent_process.endpoint, timeout=0.5)
    c.create_gateway(GW)
    pid = agent_process.proc.pid
    os.kill(pid, signal.SIGSTOP)
    timer = threading.Timer(2.0, os.kill, (pid, signal.SIGCONT))
    timer.start()
    try:
        created = c.create_policy(policy(), deadline=time.monotonic() + 20)
    finally:
        timer.join()
        os.kill(pid, signal.SIGCONT)
    record = c.last_call
    assert record.unknown_outcome and len(record.attempts) >= 2
    assert "a retry with the same request id was answered" in record.resolved
    assert [v.obj.name for v in c.list_policies()] == ["egress"]
    assert c.get_policy("egress").resource_version == created.resource_version
    c.close()


def test_an_unanswered_write_past_its_deadline_says_its_outcome_is_unknown(agent_process):
    c = EgressClient(agent_process.endpoint, timeout=0.3)
    pid = agent_process.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(errors.OutcomeUnknown) as info:
            c.create_gateway(GW, deadline=time.monotonic() + 1.5)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "the outcome of this write is unknown" in info.value.message
    assert "is it running" not in info.value.message
    c.close()
