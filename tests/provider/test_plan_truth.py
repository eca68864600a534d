"""`terraform plan` fails on what can never apply as written, and only warns on what it cannot know.

Each always-failing configuration exits non-zero at plan, with both
Terraform cores, whatever order Terraform plans the resources in (no
`depends_on`), and the agent is left unchanged.
"""

from __future__ import annotations

import pytest

from helpers.terraform import Acceptance, Terraform, TerraformError, find_diagnostic

pytestmark = pytest.mark.terraform


@pytest.fixture
def acc(agent_process, tmp_path) -> Acceptance:
    return Acceptance(Terraform(tmp_path, endpoint=agent_process.endpoint), agent_process)


def gateway(ips, address: str = "default", name: str = "default") -> str:
    quoted = ", ".join(f'"{ip}"' for ip in ips) if isinstance(ips, (list, tuple)) else ips
    value = f"[{quoted}]" if isinstance(ips, (list, tuple)) else ips
    return f"""
resource "egress_gateway" "{address}" {{
  name         = "{name}"
  floating_ips = {value}
}}
"""


def policy(source_ip: str, name: str = "egress") -> str:
    return f"""
resource "egress_nat_policy" "{name}" {{
  name = "{name}"
  egress {{
    namespace_selector {{ match_labels = {{ user = "alice" }} }}
  }}
  destination_cidrs = ["198.51.100.0/24"]
  egress_source_ip  = "{source_ip}"
}}
"""


def test_always_failing_configurations_fail_at_plan(acc):
    # A source IP in no gateway of the configuration (nor of the agent, which has none).
    res = acc.expect_failure(gateway(["192.0.2.100"]) + policy("192.0.2.50"), "Invalid egress_source_ip")
    find_diagnostic(res.output, "Error: Invalid egress_source_ip", "egress_nat_policy.egress",
                    "192.0.2.50 is not a floating IP of any gateway (one of 192.0.2.100)")

    # Two gateways of the configuration claiming one floating IP (whichever Terraform plans second says so).
    res = acc.expect_failure(
        gateway(["192.0.2.100", "192.0.2.101"]) + gateway(["192.0.2.101"], address="b", name="b") + policy("192.0.2.100"),
        "Invalid floating_ips",
    )
    find_diagnostic(res.output, "Error: Invalid floating_ips", "floating IP 192.0.2.101 already belongs to gateway")

    # A gateway change that removes an IP a policy that stays uses: shrinking it, or removing the gateway.
    acc.step(gateway(["192.0.2.100", "192.0.2.101"]) + policy("192.0.2.100"))
    res = acc.expect_failure(gateway(["192.0.2.101"]) + policy("192.0.2.100"), "Invalid")
    find_diagnostic(res.output, "Error: Invalid", "192.0.2.100")
    res = acc.expect_failure(policy("192.0.2.100"), "Invalid")
    # Which of the two plans says it depends on Terraform's order: the policy's, when the gateway's destroy is
    # planned first; else the stored gateway may still stay (managed elsewhere) while the policy plans, and the
    # gateway's destroy is the error. Either way the plan fails and names the IP.
    try:
        find_diagnostic(res.output, "Error: Invalid egress_source_ip", "192.0.2.100", "not a floating IP of any gateway")
    except TerraformError:
        find_diagnostic(res.output, "Error: Invalid floating_ips", "192.0.2.100", "which stays")
    acc.destroy()


def test_what_plan_cannot_know_is_a_warning_never_an_error(acc):
    """The gateway's IPs come from a variable (unknown to `terraform validate`): the policy plans cleanly."""
    config = (
        'variable "ips" {\n  type    = list(string)\n  default = ["192.0.2.100", "192.0.2.101"]\n}\n'
        + gateway("var.ips")
        + policy("192.0.2.100")
    )
    acc.tf.write(config)
    for _ in range(2):  # Terraform plans the two in either order
        acc.tf.plan()  # raises on a plan error
    acc.tf.apply_plan()
    acc.tf.plan_is_empty()
    acc.destroy()
