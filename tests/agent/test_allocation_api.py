"""Allocated source IPs through a real agent's API and egressctl (issue #12)."""

from __future__ import annotations

import pytest

from egress_api import errors, models
from egress_api.v1 import egress_pb2 as pb
from helpers.agent import start_agent

from test_egressctl import ctl

IPS = ["192.0.2.102", "192.0.2.100", "192.0.2.101"]


def policy(name, **kw) -> models.Policy:
    return models.Policy.model_validate({"name": name, "egress": [{"pod_selector": {"match_labels": {"role": "web"}}}],
                                         "destination_cidrs": ["198.51.100.0/24"], **kw})


@pytest.fixture
def agent(tmp_path):
    with start_agent(tmp_path) as a:
        a.client.create_gateway(models.Gateway(name="edge", floating_ips=IPS))
        yield a


def test_create_allocates_update_keeps_delete_frees(agent):
    c = agent.client
    a = c.create_policy(policy("a", gateway="edge"))
    assert (a.obj.gateway, a.obj.egress_source_ip) == ("edge", "192.0.2.100")
    assert c.get_policy("a").obj == a.obj
    b = c.create_policy(policy("b", gateway="edge"))
    assert b.obj.egress_source_ip == "192.0.2.101"
    # An update without an IP keeps the allocated one.
    a2 = c.update_policy(policy("a", gateway="edge", priority=10), resource_version=a.resource_version)
    assert a2.obj.egress_source_ip == "192.0.2.100" and a2.obj.priority == 10
    c.delete_policy("a")
    assert c.create_policy(policy("c", gateway="edge")).obj.egress_source_ip == "192.0.2.100"


def test_a_client_sending_no_gateway_and_no_ip_gets_the_rule(agent):
    with pytest.raises(errors.InvalidArgument) as info:
        agent.client.call("CreatePolicy", pb.Policy(name="x", destination_cidrs=["198.51.100.0/24"],
                                                    egress=[pb.EgressRule()]))
    (v,) = info.value.violations
    assert v.path == ("egress_source_ip",) and "or gateway" in v.message


def test_exhaustion_and_a_missing_gateway_are_clear_errors(agent):
    c = agent.client
    for name in ("a", "b", "c"):
        c.create_policy(policy(name, gateway="edge"))
    with pytest.raises(errors.FailedPrecondition) as info:
        c.create_policy(policy("d", gateway="edge"))
    (v,) = info.value.violations
    assert v.path == ("gateway",)
    assert v.message == ("gateway 'edge' has no free floating IP: 0 of its 3 floating IPs are free (used by policies "
                         "'a', 'b', 'c'). Add floating IPs to the gateway, delete a policy using one, or name another "
                         "gateway")
    with pytest.raises(errors.NotFound):
        c.get_policy("d")  # nothing written
    with pytest.raises(errors.FailedPrecondition, match="gateway 'nope' does not exist.*egress_gateway.NAME.name"):
        c.create_policy(policy("e", gateway="nope"))
    # The dry run says the same.
    result = c.validate_policy(policy("d", gateway="edge"))
    assert [e.path for e in result.errors] == [("gateway",)]


def test_explicit_ips_are_checked_against_allocated_ones_and_the_gateway(agent):
    c = agent.client
    c.create_policy(policy("a", gateway="edge"))
    with pytest.raises(errors.InvalidArgument, match="192.0.2.100 is already the egress_source_ip of policy 'a'"):
        c.create_policy(policy("b", egress_source_ip="192.0.2.100"))
    with pytest.raises(errors.InvalidArgument) as info:
        c.create_policy(policy("b", gateway="edge", egress_source_ip="203.0.113.9"))
    assert [v.path for v in info.value.violations] == [("egress_source_ip",)]
    assert "not a floating IP of gateway 'edge'" in info.value.violations[0].message
    both = c.create_policy(policy("b", gateway="edge", egress_source_ip="192.0.2.102"))
    assert both.obj.egress_source_ip == "192.0.2.102"
    # The next allocation skips both taken IPs.
    assert c.create_policy(policy("c", gateway="edge")).obj.egress_source_ip == "192.0.2.101"


def test_egressctl_shows_the_gateway(agent):
    c = agent.client
    c.create_policy(policy("a", gateway="edge"))
    c.create_policy(policy("b", egress_source_ip="192.0.2.102"))
    out = ctl(agent, "get", "policies").stdout
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert "GATEWAY" in out.splitlines()[0]
    assert lines["a"][1:3] == ["192.0.2.100", "edge"] and lines["b"][1:3] == ["192.0.2.102", "-"]
    described = ctl(agent, "describe", "policy", "a").stdout
    assert "Egress Source IP:  192.0.2.100" in described and "Gateway:           edge" in described


ALLOCATING_MANIFEST = """\
kind: EgressNATPolicy
apiVersion: networking.gke.io/v1alpha1
metadata:
  name: reports
spec:
  egress:
  - podSelector:
      matchLabels:
        app: reports
  destinationCIDRs:
  - 198.51.100.0/24
  gateway: edge
"""


def test_egressctl_apply_allocates_once_then_reports_unchanged(agent):
    from test_egressctl_apply import ctl as ctl_apply

    first = ctl_apply(agent.endpoint, "apply", "-f", "-", stdin=ALLOCATING_MANIFEST)
    assert first.returncode == 0, first.stderr
    assert "policy 'reports' created" in first.stdout
    assert agent.client.get_policy("reports").obj.egress_source_ip == "192.0.2.100"
    again = ctl_apply(agent.endpoint, "apply", "-f", "-", stdin=ALLOCATING_MANIFEST)
    assert again.returncode == 0 and "policy 'reports' unchanged" in again.stdout, again.stdout + again.stderr
