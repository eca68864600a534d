"""Real Terraform against a 3-agent cluster: apply through node A, read status through node B.

The provider's `endpoint` may be any node: desired state, node states and the
assignment come from etcd, so every agent answers the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.agent import AgentProcess, wait_for
from helpers.terraform import Terraform

pytestmark = [pytest.mark.etcd, pytest.mark.terraform]

COMPLETE = Path(__file__).resolve().parents[2] / "examples" / "complete" / "main.tf"
NODES = ("worker1", "worker2", "master1")

# Data sources only: what one node's endpoint says about the gateway and every node.
READ_STATUS = """
variable "endpoint" {
  type = string
}

provider "egress" {
  endpoint = var.endpoint
}

data "egress_gateway_status" "default" {
  name = "default"
}

data "egress_node" "n" {
  for_each = toset(["worker1", "worker2", "master1"])
  name     = each.key
}

output "gateway_nodes" {
  value = data.egress_gateway_status.default.nodes
}

output "floating_ips" {
  value = data.egress_gateway_status.default.floating_ips
}

output "nodes" {
  value = { for k, n in data.egress_node.n : k => {
    role = n.role, state = n.state, node_ip = n.node_ip, floating_ips = n.floating_ips
  } }
}
"""


def tcp_endpoint(agent: AgentProcess) -> str:
    """The agent's --listen host:port: what a provider on another machine would use."""
    return agent.extra_args[agent.extra_args.index("--listen") + 1]


def read_status(tmp_path: Path, name: str, endpoint: str) -> dict:
    tf = Terraform(tmp_path, name=name)
    tf.write(READ_STATUS)
    tf.apply("-var", f"endpoint={endpoint}")  # no resources: reads the data sources into the outputs
    return tf.outputs()


def test_apply_through_one_node_read_and_plan_through_another(group, tmp_path):
    a, b = group["worker1"], group["worker2"]
    tf = Terraform(tmp_path, name="apply")
    tf.write(COMPLETE.read_text())
    tf.apply("-var", f"endpoint={tcp_endpoint(a)}")
    # Nothing waits for the leader to assign; every agent converges within milliseconds.
    wait_for(lambda: all(all(ag.client.gateway_status("default").floating_ips.values()) for ag in group.running()),
             what="every agent to see the assignment")

    via_a = read_status(tmp_path, "read-a", tcp_endpoint(a))
    via_b = read_status(tmp_path, "read-b", tcp_endpoint(b))
    assert via_b == via_a

    # The seed's rules: workers only while one can take an IP, balanced, ties by name.
    assert via_b["gateway_nodes"] == {"worker1": "Up", "worker2": "Up", "master1": "Up"}
    assert via_b["floating_ips"] == {"192.0.2.100": "worker1", "192.0.2.101": "worker2", "192.0.2.102": "worker1"}
    assert via_b["nodes"] == {
        "worker1": {"role": "worker", "state": "Up", "node_ip": "192.0.2.11/24",
                    "floating_ips": ["192.0.2.100", "192.0.2.102"]},
        "worker2": {"role": "worker", "state": "Up", "node_ip": "192.0.2.12/24", "floating_ips": ["192.0.2.101"]},
        "master1": {"role": "master", "state": "Up", "node_ip": "192.0.2.21/24", "floating_ips": []},
    }
    # The apply's own outputs (read through A during the apply) say the same.
    assert tf.outputs()["floating_ips"] == via_b["floating_ips"]

    # The same configuration and state, planned through B: nothing to change.
    res = tf.run("plan", "-input=false", "-no-color", "-detailed-exitcode", "-var", f"endpoint={tcp_endpoint(b)}",
                 check=False)
    assert res.code == 0, f"expected an empty plan through worker2:\n{res}"
    assert "No changes." in res.stdout
