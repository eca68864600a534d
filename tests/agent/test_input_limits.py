"""Issue #9 refusals against a real agent: each with its exact message and code, and nothing stored.

Addresses that can never float (by class, and the agent's own node address, network and broadcast),
Kubernetes names as pod keys, per-object and cluster limits, message sizes, malformed protobuf.
"""

from __future__ import annotations

import grpc
import pytest

from egress_api import convert, errors, limits, models
from egress_api.v1 import egress_pb2 as pb

from seed_objects import GW


def _hosts(n: int, second: int = 0) -> list[str]:
    return [f"10.{second}.{i // 256}.{i % 256}/32" for i in range(n)]


def _stored(c) -> tuple:
    return [g.obj for g in c.list_gateways()], [p.obj for p in c.list_policies()], c.list_pods()


# --- addresses that can never float ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ip, path, message",
    [
        ("127.0.0.1", ("floating_ips", 0), "127.0.0.1 is a loopback address: it can never be a floating IP"),
        ("0.0.0.0", ("floating_ips", 0), "0.0.0.0 is an unspecified ('this network', 0.0.0.0/8) address: "
                                         "it can never be a floating IP"),
        ("224.0.0.1", ("floating_ips", 0), "224.0.0.1 is a multicast address: it can never be a floating IP"),
        ("169.254.0.9", ("floating_ips", 0), "169.254.0.9 is a link-local address: it can never be a floating IP"),
        ("250.1.1.1", ("floating_ips", 0), "250.1.1.1 is a reserved address (240.0.0.0/4): it can never be a floating IP"),
        # What only the cluster knows: this agent is worker1, 192.0.2.11/24.
        ("192.0.2.11", ("floating_ips",), "floating IP 192.0.2.11 is the address of node 'worker1': "
                                          "it can never be a floating IP"),
        ("192.0.2.0", ("floating_ips",), "floating IP 192.0.2.0 is the network address of node 'worker1''s subnet "
                                         "192.0.2.0/24: it can never be a floating IP"),
        ("192.0.2.255", ("floating_ips",), "floating IP 192.0.2.255 is the broadcast address of node 'worker1''s "
                                           "subnet 192.0.2.0/24: it can never be a floating IP"),
    ],
)
def test_addresses_that_never_float_are_refused_and_nothing_is_stored(agent_process, ip, path, message):
    c = agent_process.client
    c.create_gateway(GW)
    before = _stored(c)
    for call in (
        lambda: c.call("CreateGateway", pb.Gateway(name="other", floating_ips=[ip])),
        lambda: c.call("UpdateGateway", pb.Gateway(name="default", floating_ips=[ip])),
    ):
        with pytest.raises(errors.InvalidArgument) as info:
            call()
        assert info.value.violations == [models.Violation(path, message)]
    # The dry run a plan asks for gives the same error.
    result = c.call("ValidateGateway", pb.Gateway(name="other", floating_ips=[ip]))
    assert [convert.violation_from_proto(e) for e in result.errors] == [models.Violation(path, message)]
    assert _stored(c) == before


# --- Kubernetes names -------------------------------------------------------------------------------


def test_pod_keys_are_unambiguous(agent_process):
    """Pods a/'b/c' and 'a/b'/c once shared the key a/b/c; names ending in a newline were stored."""
    c = agent_process.client
    before = _stored(c)
    for namespace, name, path in (("a", "b/c", "name"), ("a/b", "c", "namespace"), ("alice", "web\n", "name"),
                                  ("alice\n", "web", "namespace")):
        with pytest.raises(errors.InvalidArgument) as info:
            c.call("UpsertPod", pb.Pod(name=name, namespace=namespace, node="worker1", ip="10.244.1.5"))
        assert [v.path for v in info.value.violations] == [(path,)]
    for key, paths in (("a/b/c", [("name",)]), ("a/web\n", [("name",)]), ("A/web", [("namespace",)])):
        for rpc in ("GetPod", "DeletePod"):
            with pytest.raises(errors.InvalidArgument) as info:
                c.call(rpc, pb.ObjectRef(name=key))
            assert [v.path for v in info.value.violations] == paths
    with pytest.raises(errors.InvalidArgument) as info:
        c.call("GetPod", pb.ObjectRef(name="a/b/c"))
    assert info.value.message.endswith(
        "name: 'b/c' is not a valid pod name: use up to 253 lower-case letters, digits, '-' or '.', starting and "
        "ending with a letter or digit (a DNS-1123 subdomain, e.g. 'frontend-7d4b9')")
    assert _stored(c) == before


# --- per-object and cluster limits --------------------------------------------------------------------


def test_a_policy_over_the_cidr_limit_is_refused_and_one_at_it_is_stored(agent_process):
    c = agent_process.client
    cidrs = _hosts(limits.MAX_DESTINATION_CIDRS + 1)
    req = pb.Policy(name="big", egress=[pb.EgressRule()], destination_cidrs=cidrs, egress_source_ip="192.0.2.100")
    with pytest.raises(errors.InvalidArgument) as info:
        c.call("CreatePolicy", req)
    assert info.value.violations == [models.Violation(
        ("destination_cidrs",), "at most 10,000 destination CIDR values are allowed, got 10,001 "
                                "(limit MAX_DESTINATION_CIDRS; see docs/limits.md)")]
    assert c.list_policies() == []
    del req.destination_cidrs[-1]
    assert len(c.call("CreatePolicy", req).destination_cidrs) == limits.MAX_DESTINATION_CIDRS


def test_cluster_total_of_destination_cidrs_is_resource_exhausted(agent_process):
    c = agent_process.client
    per_policy = limits.MAX_DESTINATION_CIDRS
    full = limits.MAX_TOTAL_DESTINATION_CIDRS // per_policy
    for i in range(full):
        c.call("CreatePolicy", pb.Policy(name=f"p{i}", egress=[pb.EgressRule()], destination_cidrs=_hosts(per_policy, i),
                                         egress_source_ip=f"192.0.2.{100 + i}"))
    before = c.call("ListPolicies", pb.ListRequest())  # raw: 200,000 CIDRs are slow to turn into models
    with pytest.raises(errors.ResourceExhausted) as info:
        c.call("CreatePolicy", pb.Policy(name="one-more", egress=[pb.EgressRule()], destination_cidrs=["10.99.0.0/16"],
                                         egress_source_ip="192.0.2.99"))
    assert info.value.message == (
        "this write would make 200,001 destination CIDRs over all policies, over the cluster's limit "
        "(limit MAX_TOTAL_DESTINATION_CIDRS = 200,000; see docs/limits.md)")
    assert c.call("ListPolicies", pb.ListRequest()) == before
    # A write that shrinks the total passes.
    c.call("UpdatePolicy", pb.Policy(name="p0", egress=[pb.EgressRule()], destination_cidrs=["10.0.0.0/16"],
                                     egress_source_ip="192.0.2.100"))


# --- messages ------------------------------------------------------------------------------------------


def _raw_call(agent, method: str, payload: bytes, max_send: int = 64 * 1024 * 1024):
    """Send `payload` bytes as the request of egress.v1.Egress/`method`, past any client-side check."""
    with grpc.insecure_channel(agent.endpoint, options=[("grpc.max_send_message_length", max_send)]) as ch:
        call = ch.unary_unary(f"/egress.v1.Egress/{method}", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
        return call(payload, timeout=20)


def test_an_oversize_request_is_resource_exhausted_at_the_agent(agent_process):
    """The 600,000-CIDR policy that once made every later write take 11 s never reaches the models."""
    req = pb.Policy(name="huge", egress=[pb.EgressRule()], destination_cidrs=_hosts(600_000),
                    egress_source_ip="192.0.2.100").SerializeToString()
    assert len(req) > limits.MAX_REQUEST_BYTES
    with pytest.raises(grpc.RpcError) as info:
        _raw_call(agent_process, "CreatePolicy", req)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"vs. {limits.MAX_REQUEST_BYTES})" in info.value.details()  # "Received message larger than max (N vs. M)"
    assert agent_process.client.list_policies() == []


def test_the_client_refuses_to_send_an_oversize_request_naming_the_limit(agent_process):
    req = pb.Policy(name="huge", egress=[pb.EgressRule()], destination_cidrs=_hosts(600_000),
                    egress_source_ip="192.0.2.100")
    with pytest.raises(errors.ResourceExhausted) as info:
        agent_process.client.call("CreatePolicy", req)
    assert "Sent message larger than max" in info.value.message
    assert "MAX_REQUEST_BYTES = 1,048,576 bytes per request" in info.value.message
    assert agent_process.client.list_policies() == []


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x02\xc3\x28"],
                         ids=["bad-tag", "truncated", "bad-utf8"])
def test_malformed_protobuf_is_invalid_argument_for_every_method(agent_process, payload):
    service = pb.DESCRIPTOR.services_by_name["Egress"]
    for method in service.methods:
        first = method.input_type.fields_by_number.get(1)
        if payload == b"\x0a\x02\xc3\x28" and (first is None or first.type != first.TYPE_STRING):
            continue  # invalid UTF-8 is malformed only in a string field
        with pytest.raises(grpc.RpcError) as info:
            _raw_call(agent_process, method.name, payload)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.name, info.value.details())
        assert info.value.details().startswith(
            f"malformed request: {len(payload)} bytes that are not a valid {method.input_type.full_name} message")
    assert _stored(agent_process.client) == ([], [], [])
    assert agent_process.client.health().status == "SERVING"
