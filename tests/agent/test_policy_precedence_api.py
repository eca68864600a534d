"""excluded_cidrs and priority through the agent API, and what `describe policy` shows of them (issue #12)."""

from __future__ import annotations

import pytest

from egress_api import errors, models
from egress_api.v1 import egress_pb2 as pb
from helpers.agent import start_agent

from test_egressctl import ctl

GW = models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.101"])


def policy(name, cidrs, ip, **kw) -> models.Policy:
    return models.Policy.model_validate({"name": name, "egress": [{"pod_selector": {"match_labels": {"role": "web"}}}],
                                         "destination_cidrs": cidrs, "egress_source_ip": ip, **kw})


@pytest.fixture
def agent(tmp_path):
    with start_agent(tmp_path, extra_args=["--pod-cidr", "10.244.1.0/24", "--service-cidr", "10.244.200.0/24"]) as a:
        yield a


def test_round_trip_defaults_and_errors_with_paths(agent):
    c = agent.client
    c.create_gateway(GW)
    c.create_policy(policy("all", ["0.0.0.0/0"], "192.0.2.100", excluded_cidrs=["198.51.100.0/24"], priority=7))
    got = c.get_policy("all").obj
    assert (got.excluded_cidrs, got.priority) == (["198.51.100.0/24"], 7)
    # A client that never heard of the fields gets the defaults.
    c.call("CreatePolicy", pb.Policy(name="old", destination_cidrs=["203.0.113.0/24"], egress_source_ip="192.0.2.101",
                                     egress=[pb.EgressRule()]))
    old = c.get_policy("old").obj
    assert (old.excluded_cidrs, old.priority) == ([], 1000)

    with pytest.raises(errors.InvalidArgument) as info:
        c.call("UpdatePolicy", pb.Policy(name="old", destination_cidrs=["203.0.113.0/24"], egress_source_ip="192.0.2.101",
                                         egress=[pb.EgressRule()], excluded_cidrs=["198.51.100.0/24"], priority=-3))
    assert sorted(v.path for v in info.value.violations) == [("excluded_cidrs",), ("priority",)]
    assert c.get_policy("old").obj == old  # nothing written


def test_describe_shows_effective_exclusions_and_shadowing(agent):
    c = agent.client
    c.create_gateway(GW)
    for i in (1, 2):
        c.upsert_pod(models.Pod(name=f"web{i}", namespace="alice", node="worker1", ip=f"10.244.1.{i + 1}",
                                labels={"role": "web"}))
    c.create_policy(policy("all", ["0.0.0.0/0"], "192.0.2.100", excluded_cidrs=["203.0.113.0/24"]))
    c.create_policy(policy("ext", ["198.51.100.0/24"], "192.0.2.101", priority=10))

    d = c.describe_policy("all")
    assert d.exclusions == [
        ("10.244.1.0/24", "pod CIDR of worker1"),
        ("10.244.200.0/24", "service CIDR"),
        ("192.0.2.0/24", "node subnet"),
        ("203.0.113.0/24", "excluded_cidrs"),
    ]
    assert d.shadowed_pods == 2
    assert d.shadowed == [("alice/web1", "0.0.0.0/0", "ext"), ("alice/web2", "0.0.0.0/0", "ext")]
    assert c.describe_policy("ext").shadowed == []  # ext has precedence over all where they overlap

    out = ctl(agent, "describe", "policy", "all").stdout
    assert "Priority:          1000" in out
    assert "    10.244.200.0/24  (service CIDR)" in out and "    203.0.113.0/24  (excluded_cidrs)" in out
    assert "Shadowed:  2 pod(s)" in out and "    alice/web1 -> 0.0.0.0/0: taken by policy ext" in out

    # The effective IP follows the same precedence.
    pod = "web1"
    assert c.effective_ip("alice", pod, "198.51.100.10").policy == "ext"
    assert c.effective_ip("alice", pod, "203.0.113.10").policy == ""
    assert c.effective_ip("alice", pod, "10.244.200.1").policy == ""
    assert c.effective_ip("alice", pod, "198.18.0.1").policy == "all"
