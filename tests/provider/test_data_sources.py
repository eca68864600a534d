"""egress_gateway_status and egress_node, read through Terraform from a real agent (examples/complete)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.terraform import find_diagnostic

pytestmark = pytest.mark.terraform

COMPLETE = Path(__file__).resolve().parents[2] / "examples" / "complete" / "main.tf"


def test_complete_example_outputs_the_status(acc):
    """The complete example applies, plans empty, and its outputs are the agent's assignment."""

    def check(plan):
        assert plan.all_actions() == {
            "data.egress_gateway_status.default": ["read"],  # deferred: it depends on the gateway
            "data.egress_node.this": ["read"],
            "egress_gateway.default": ["create"],
            "egress_nat_policy.egress": ["create"],
        }
        assert plan.warnings == ""

    acc.step(COMPLETE.read_text(), check)
    out = acc.tf.outputs()
    # One worker (192.0.2.11/24): it holds every floating IP.
    assert out["gateway_nodes"] == {"worker1": "Up"}
    assert out["floating_ips"] == {"192.0.2.100": "worker1", "192.0.2.101": "worker1", "192.0.2.102": "worker1"}
    assert out["node"] == {
        "name": "worker1",
        "role": "worker",
        "state": "Up",
        "node_ip": "192.0.2.11/24",
        "floating_ips": ["192.0.2.100", "192.0.2.101", "192.0.2.102"],
    }
    assert acc.client.gateway_status("default").floating_ips == out["floating_ips"]

    # The agent keeps everything across a restart (sqlite store): Terraform sees no change.
    acc.agent.restart()
    acc.tf.plan_is_empty()
    assert acc.tf.outputs()["floating_ips"] == out["floating_ips"]
    acc.destroy()


def test_unknown_names_are_diagnostics_on_name(acc):
    config = """
data "egress_node" "ghost" {
  name = "worker9"
}
data "egress_gateway_status" "ghost" {
  name = "nope"
}
"""
    res = acc.expect_failure(config)
    find_diagnostic(res.output, "Error: No egress node named 'worker9'", "data.egress_node.ghost", 'name = "worker9"')
    find_diagnostic(res.output, "Error: No egress_gateway named 'nope'", "data.egress_gateway_status.ghost")


def test_policy_status_gives_the_holder_and_conditions_a_check_block_can_use(acc):
    config = COMPLETE.read_text() + """
data "egress_policy_status" "egress" {
  name = egress_nat_policy.egress.name
}

output "policy_holder" {
  value = data.egress_policy_status.egress.holder
}

output "policy_conditions" {
  value = data.egress_policy_status.egress.conditions
}

output "gateway_ready_reason" {
  value = data.egress_gateway_status.default.condition_reasons["Ready"]
}

check "egress_ready" {
  assert {
    condition     = data.egress_policy_status.egress.conditions["Ready"] == "True"
    error_message = data.egress_policy_status.egress.condition_messages["Ready"]
  }
}
"""
    acc.step(config)
    out = acc.tf.outputs()
    assert out["policy_holder"] == "worker1"
    # This agent runs no kernel datapath (--datapath off): nothing to program, so Programmed is Unknown.
    assert out["policy_conditions"] == {"Ready": "True", "IPAssigned": "True", "Programmed": "Unknown"}
    assert out["gateway_ready_reason"] == "AssignedNoDatapath"
    acc.destroy()
