"""Terraform 1.12+ resource identity and 1.14+ list resources (`terraform query`), served over tfplugin6.10."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from egress_api import models
from egress_provider.framework.protocol import PROTOCOL_VERSION
from helpers.terraform import Terraform

REPO = Path(__file__).resolve().parents[2]

ESTATE = """
resource "egress_gateway" "default" {
  floating_ips = ["192.0.2.100", "192.0.2.101"]
}
resource "egress_gateway" "edge" {
  name         = "edge"
  floating_ips = ["192.0.2.110"]
}
resource "egress_nat_policy" "alice" {
  name = "alice"
  egress {
    namespace_selector { match_labels = { user = "alice" } }
    pod_selector       { match_labels = { role = "frontend" } }
  }
  egress {
    namespace_selector { match_labels = { user = "paul" } }
  }
  destination_cidrs = ["198.51.100.0/24", "203.0.113.0/28"]
  egress_source_ip  = "192.0.2.100"
  depends_on        = [egress_gateway.default]
}
"""

IDENTITY_IMPORTS = """
import {
  to       = egress_gateway.default
  identity = { name = "default" }
}
import {
  to       = egress_gateway.edge
  identity = { name = "edge" }
}
import {
  to       = egress_nat_policy.alice
  identity = { name = "alice" }
}
"""


def _summary(plan_text: str) -> str:
    return next(line for line in plan_text.splitlines() if line.startswith("Plan:"))


def test_registry_manifest_states_the_protocol_served():
    manifest = json.loads((REPO / "terraform-registry-manifest.json").read_text())
    assert manifest["metadata"]["protocol_versions"] == [PROTOCOL_VERSION]
    proto = (REPO / "provider/egress_provider/framework/tfplugin6/tfplugin6.proto").read_text()
    assert f"Terraform Plugin RPC protocol version {PROTOCOL_VERSION}\n" in proto


@pytest.mark.terraform
@pytest.mark.terraform_min("1.12", "import by resource identity")
def test_import_by_identity_into_a_fresh_state(acc):
    acc.step(ESTATE)
    applied = acc.tf.state()

    # Terraform keeps each instance's identity in state, as the provider reported it.
    shown = json.loads(acc.tf.run("show", "-json").stdout)
    identities = {r["address"]: r.get("identity") for r in shown["values"]["root_module"]["resources"]}
    assert identities == {
        "egress_gateway.default": {"name": "default"},
        "egress_gateway.edge": {"name": "edge"},
        "egress_nat_policy.alice": {"name": "alice"},
    }

    fresh = Terraform(acc.tf.root, endpoint=acc.agent.endpoint, name="by-identity")
    fresh.write(ESTATE + IDENTITY_IMPORTS)
    plan = fresh.plan()
    assert _summary(plan.text) == "Plan: 3 to import, 0 to add, 0 to change, 0 to destroy."
    fresh.apply_plan()
    assert fresh.state() == applied
    fresh.plan_is_empty()


@pytest.mark.terraform
@pytest.mark.terraform_min("1.12", "import by resource identity")
def test_import_by_identity_of_a_missing_object_says_so(acc):
    tf = acc.tf
    tf.write('resource "egress_gateway" "gw" {\n  name = "nope"\n  floating_ips = ["192.0.2.100"]\n}\n'
             'import {\n  to = egress_gateway.gw\n  identity = { name = "nope" }\n}\n')
    res = tf.run("plan", "-input=false", "-no-color", check=False)
    assert res.code == 1
    assert "Cannot import egress_gateway 'nope': no such gateway" in res.output


LIST_QUERY = """
list "egress_gateway" "all" {
  provider = egress
}
list "egress_nat_policy" "all" {
  provider = egress
}
"""


def _make_estate_outside_terraform(client) -> None:
    """Objects someone made with egressctl: Terraform has never seen them."""
    client.create_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.101"]))
    client.create_gateway(models.Gateway(name="edge", floating_ips=["192.0.2.110"]))
    for name, ip in (("alice", "192.0.2.100"), ("bob", "192.0.2.101")):
        client.create_policy(models.Policy.model_validate({
            "name": name,
            "egress": [{"namespace_selector": {"match_labels": {"user": name}},
                        "pod_selector": {"match_labels": {"role": "frontend"}}}],
            "destination_cidrs": ["198.51.100.0/24"],
            "egress_source_ip": ip,
        }))


@pytest.mark.terraform
@pytest.mark.terraform_min("1.14", "terraform query (list resources)")
def test_query_finds_every_object_and_generates_config_that_plans_empty(acc):
    _make_estate_outside_terraform(acc.client)
    tf = acc.tf
    tf.write("")
    (tf.dir / "estate.tfquery.hcl").write_text(LIST_QUERY)

    listed = tf.run("query", "-no-color")
    found = sorted(line.split()[:2] for line in listed.stdout.splitlines() if line.startswith("list."))
    assert [" ".join(x) for x in found] == [
        "list.egress_gateway.all name=default", "list.egress_gateway.all name=edge",
        "list.egress_nat_policy.all name=alice", "list.egress_nat_policy.all name=bob",
    ], listed.stdout

    tf.run("query", "-no-color", "-generate-config-out=generated.tf")
    generated = (tf.dir / "generated.tf").read_text()
    assert generated.count("import {") == 4 and generated.count("identity = {") == 4, generated
    plan = tf.plan()
    assert _summary(plan.text) == "Plan: 4 to import, 0 to add, 0 to change, 0 to destroy.", plan.text
    before = acc.agent_objects()
    tf.apply_plan()
    assert acc.agent_objects() == before  # importing changes nothing on the agent
    tf.plan_is_empty()
