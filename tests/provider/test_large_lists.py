"""`destination_cidrs` and `floating_ips` are lists with set semantics (Terraform core checks sets
quadratically; lists linearly).

The scale itself is measured in bench/terraform_scale.py; these tests pin the semantics.
"""

from __future__ import annotations

import json

import pytest

from helpers.terraform import find_diagnostic

pytestmark = pytest.mark.terraform

GATEWAY = 'resource "egress_gateway" "default" {\n  floating_ips = ["192.0.2.100"]\n}\n'


def policy(cidrs: list[str]) -> str:
    return GATEWAY + f"""
resource "egress_nat_policy" "p" {{
  name = "p"
  egress {{
    pod_selector {{ match_labels = {{ role = "frontend" }} }}
  }}
  destination_cidrs = {json.dumps(cidrs)}
  egress_source_ip  = "192.0.2.100"
  depends_on        = [egress_gateway.default]
}}
"""


def test_order_is_kept_in_state_and_never_written_to_the_agent(acc):
    acc.step(policy(["203.0.113.0/24", "198.51.100.0/24", "192.0.2.128/25"]))
    stored = acc.client.get_policy("p")
    assert stored.obj.destination_cidrs == ["192.0.2.128/25", "198.51.100.0/24", "203.0.113.0/24"]
    assert acc.tf.state()["egress_nat_policy.p"]["destination_cidrs"] == ["203.0.113.0/24", "198.51.100.0/24", "192.0.2.128/25"]

    # Reordering: an honest in-place update of the list that changes nothing on the agent.
    def check(plan):
        change = plan.change("egress_nat_policy.p")
        assert change["actions"] == ["update"]
        assert change["after_unknown"].get("resource_version") is not True  # no write is coming
    acc.step(policy(["192.0.2.128/25", "203.0.113.0/24", "198.51.100.0/24"]), check)
    assert acc.client.get_policy("p").resource_version == stored.resource_version


def test_a_cidr_listed_twice_fails_at_plan_naming_the_attribute(acc):
    acc.expect_failure(policy(["198.51.100.0/24", "203.0.113.0/24", "198.51.100.0/24"]), "Invalid destination_cidrs")
    res = acc.tf.run("plan", "-input=false", "-no-color", check=False)
    diag = find_diagnostic(res.output, "Invalid destination_cidrs")
    assert "198.51.100.0/24 is listed twice" in diag and 'egress_nat_policy.p' in diag


def test_state_written_when_it_was_a_set_upgrades_without_a_change(acc):
    acc.step(policy(["198.51.100.0/24", "203.0.113.0/24"]))
    # As provider versions with set-typed destination_cidrs and floating_ips wrote it (before the
    # attributes of versions 2 and 3).
    acc.tf.rewind_state("egress_nat_policy", now=3, to=0, drop=["excluded_cidrs", "priority", "gateway"])
    acc.tf.rewind_state("egress_gateway", now=1, to=0)
    res = acc.tf.plan_is_empty()
    assert "upgrade" not in res.output  # no "Using default upgrade" warning


def gateway(ips: list[str]) -> str:
    return f'resource "egress_gateway" "default" {{\n  floating_ips = {json.dumps(ips)}\n}}\n'


def test_floating_ips_keep_their_order_in_state_and_a_duplicate_fails_at_plan(acc):
    acc.step(gateway(["192.0.2.102", "192.0.2.100", "192.0.2.101"]))
    stored = acc.client.get_gateway("default")
    assert stored.obj.floating_ips == ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
    assert acc.tf.state()["egress_gateway.default"]["floating_ips"] == ["192.0.2.102", "192.0.2.100", "192.0.2.101"]
    acc.step(gateway(["192.0.2.100", "192.0.2.101", "192.0.2.102"]))  # reordered: nothing written to the agent
    assert acc.client.get_gateway("default").resource_version == stored.resource_version
    acc.expect_failure(gateway(["192.0.2.100", "192.0.2.100"]), "Invalid floating_ips")
