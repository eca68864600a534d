"""Plan impact (which pods' source IP a policy change moves) and the egress_effective_ip data source."""

from __future__ import annotations

import pytest

from egress_api import models
from helpers.agent import wait_for
from helpers.terraform import Acceptance, Terraform, find_diagnostic

pytestmark = pytest.mark.terraform

RESOURCES = """
resource "egress_gateway" "default" {
  floating_ips = ["192.0.2.100", "192.0.2.101"]
}

resource "egress_nat_policy" "egress" {
  name = "egress"
  egress {
    namespace_selector { match_labels = { user = "alice" } }
    pod_selector       { match_labels = { role = "frontend" } }
  }
  destination_cidrs = ["198.51.100.0/24"]
  egress_source_ip  = "%s"
}
"""

QUERIES = """
data "egress_effective_ip" "alice" {
  namespace   = "alice"
  pod         = "alice-frontend"
  destination = "198.51.100.10"
}

data "egress_effective_ip" "bob" {
  namespace   = "bob"
  pod         = "bob-frontend"
  destination = "198.51.100.10"
}
"""


@pytest.fixture
def acc(agent_process, tmp_path) -> Acceptance:
    c = agent_process.client
    for user in ("alice", "bob"):
        c.upsert_namespace(models.Namespace(name=user, labels={"user": user}))
    c.upsert_pod(models.Pod(name="alice-frontend", namespace="alice", node="worker1", ip="10.244.1.2", labels={"role": "frontend"}))
    c.upsert_pod(models.Pod(name="bob-frontend", namespace="bob", node="worker1", ip="10.244.1.3", labels={"role": "frontend"}))
    return Acceptance(Terraform(tmp_path, endpoint=agent_process.endpoint), agent_process)


def test_plan_shows_impact_and_the_data_source_answers(acc):
    def impact(before: str, after: str):
        def check(plan):
            find_diagnostic(plan.warnings, "Warning: Egress impact: 1 pod(s) change source IP", "egress_nat_policy.egress",
                            "selects 1 pod(s) (alice/alice-frontend)",
                            f"alice/alice-frontend to 198.51.100.0/24: {before} -> {after}")
        return check

    acc.step(RESOURCES % "192.0.2.100", impact("192.0.2.11", "192.0.2.100"))
    state = acc.tf.state()["egress_nat_policy.egress"]
    assert state["selected_pods"] == 1 and state["selected_pods_sample"] == ["alice/alice-frontend"]
    wait_for(lambda: acc.client.describe_policy("egress").holder == "worker1", what="the policy's IP held")

    # A refresh sees a pod started since (the policy's selection, from one listing of every policy).
    acc.client.upsert_pod(models.Pod(name="alice-frontend-2", namespace="alice", node="worker1", ip="10.244.1.4",
                                     labels={"role": "frontend"}))
    acc.tf.run("apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color")
    state = acc.tf.state()["egress_nat_policy.egress"]
    assert state["selected_pods"] == 2 and state["selected_pods_sample"] == ["alice/alice-frontend",
                                                                             "alice/alice-frontend-2"]
    acc.client.delete_pod("alice/alice-frontend-2")

    acc.step(RESOURCES % "192.0.2.100" + QUERIES)
    data = acc.tf.state()
    alice, bob = data["data.egress_effective_ip.alice"], data["data.egress_effective_ip.bob"]
    assert (alice["source_ip"], alice["policy"], alice["holder"], alice["dropped"]) == ("192.0.2.100", "egress", "worker1", False)
    assert (bob["source_ip"], bob["policy"], bob["holder"], bob["dropped"]) == ("192.0.2.11", "", "worker1", False)

    # Moving the source IP: the plan says which pod moves from which IP to which.
    acc.step(RESOURCES % "192.0.2.101" + QUERIES, impact("192.0.2.100", "192.0.2.101"))
    acc.destroy()


def test_gateway_plan_shows_the_pods_whose_policy_it_serves(acc):
    # A policy managed elsewhere (egressctl) uses 192.0.2.102, which no gateway lists: its traffic is dropped.
    acc.client.create_policy(models.Policy.model_validate({
        "name": "elsewhere", "egress": [{"namespace_selector": {"match_labels": {"user": "alice"}}}],
        "destination_cidrs": ["203.0.113.0/24"], "egress_source_ip": "192.0.2.102"}))
    gateway = 'resource "egress_gateway" "default" {\n  floating_ips = [%s]\n}\n'
    acc.step(gateway % '"192.0.2.100"')

    def check(plan):
        find_diagnostic(plan.warnings, "Warning: Egress impact: 1 pod(s) change source IP", "egress_gateway.default",
                        "gateway 'default' adds select 1 pod(s) (alice/alice-frontend)",
                        "alice/alice-frontend to 203.0.113.0/24: dropped -> 192.0.2.102")

    acc.step(gateway % '"192.0.2.100", "192.0.2.102"', check)
    acc.client.delete_policy("elsewhere")
    acc.destroy()


def test_unknown_pod_is_a_clear_error(acc):
    res = acc.expect_failure(QUERIES.replace("bob-frontend", "nobody"), "No pod bob/nobody")
    find_diagnostic(res.output, "Error: No pod bob/nobody", "data.egress_effective_ip.bob")
