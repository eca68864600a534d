"""egress_nat_policy's excluded_cidrs and priority through real Terraform (both cores), issue #12."""

from __future__ import annotations

import json

import pytest

from helpers.terraform import find_diagnostic

pytestmark = pytest.mark.terraform

GATEWAY = 'resource "egress_gateway" "default" {\n  floating_ips = ["192.0.2.100", "192.0.2.101"]\n}\n'


def policy(name: str, ip: str, cidrs: list[str], extra: str = "") -> str:
    return f"""
resource "egress_nat_policy" "{name}" {{
  name = "{name}"
  egress {{
    pod_selector {{ match_labels = {{ role = "frontend" }} }}
  }}
  destination_cidrs = {json.dumps(cidrs)}
  egress_source_ip  = "{ip}"{extra}
  depends_on        = [egress_gateway.default]
}}
"""


def test_exclusions_and_priority_apply_import_and_plan_empty(acc):
    config = GATEWAY + policy("all", "192.0.2.100", ["0.0.0.0/0"],
                              '\n  excluded_cidrs = ["10.0.0.0/8", "198.51.100.0/24"]\n  priority = 10')  # the agent's order: imports plan empty
    acc.step(config)
    stored = acc.client.get_policy("all").obj
    assert stored.excluded_cidrs == ["10.0.0.0/8", "198.51.100.0/24"] and stored.priority == 10
    acc.tf.plan_is_empty()
    acc.import_step({"egress_gateway.default": "default", "egress_nat_policy.all": "all"})

    # Dropping both attributes is an honest update back to the defaults.
    def check(plan):
        assert plan.change("egress_nat_policy.all")["actions"] == ["update"]
        assert "excluded_cidrs" in plan.text and "priority" in plan.text
    acc.step(GATEWAY + policy("all", "192.0.2.100", ["0.0.0.0/0"]), check)
    stored = acc.client.get_policy("all").obj
    assert stored.excluded_cidrs == [] and stored.priority == 1000
    acc.tf.plan_is_empty()
    # Writing the defaults explicitly: one update that rewrites state only (as reordering a list does), then empty.
    version = acc.client.get_policy("all").resource_version
    acc.step(GATEWAY + policy("all", "192.0.2.100", ["0.0.0.0/0"], "\n  priority = 1000\n  excluded_cidrs = []"))
    assert acc.client.get_policy("all").resource_version == version
    acc.destroy()


def test_state_of_schema_1_upgrades_without_a_change(acc):
    acc.step(GATEWAY + policy("p", "192.0.2.100", ["198.51.100.0/24"]))
    # As the provider before excluded_cidrs and priority (version 2) and gateway (version 3) wrote it.
    acc.tf.rewind_state("egress_nat_policy", now=3, to=1, drop=["excluded_cidrs", "priority", "gateway"])
    res = acc.tf.plan_is_empty()
    assert "upgrade" not in res.output


def test_an_exclusion_outside_the_destinations_fails_at_plan(acc):
    res = acc.expect_failure(GATEWAY + policy("p", "192.0.2.100", ["198.51.100.0/24"],
                                              '\n  excluded_cidrs = ["203.0.113.0/24"]'), "Invalid excluded_cidrs")
    find_diagnostic(res.output, "Invalid excluded_cidrs", "egress_nat_policy.p", "203.0.113.0/24 lies inside no destination")
    res = acc.expect_failure(GATEWAY + policy("p", "192.0.2.100", ["198.51.100.0/24"], "\n  priority = -1"),
                             "Invalid priority")
    find_diagnostic(res.output, "Invalid priority", "egress_nat_policy.p", "between 0 and 65,535")


def test_equal_priority_overlap_is_a_plan_warning_naming_both(acc):
    config = GATEWAY + policy("wide", "192.0.2.100", ["198.51.100.0/24"]) + policy("narrow", "192.0.2.101", ["198.51.100.0/28"])
    plan = acc.step(config)
    diag = find_diagnostic(plan.warnings, "Check priority", "'wide'", "'narrow'")
    assert "198.51.100.0/28 and 198.51.100.0/24" in diag or "198.51.100.0/24 and 198.51.100.0/28" in diag
    # Explicit priorities: no warning.
    plan = acc.step(GATEWAY + policy("wide", "192.0.2.100", ["198.51.100.0/24"], "\n  priority = 10")
                    + policy("narrow", "192.0.2.101", ["198.51.100.0/28"], "\n  priority = 20"))
    assert "Check priority" not in plan.warnings
    acc.destroy()
