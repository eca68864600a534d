"""egress_gateway's node_selector and max_ips_per_node, and egress_node's labels, through real Terraform (both
cores) against a real agent whose node carries labels."""

from __future__ import annotations

import pytest

from helpers.agent import start_agent
from helpers.terraform import Acceptance, Terraform, find_diagnostic

pytestmark = pytest.mark.terraform


@pytest.fixture
def labelled_acc(tmp_path, tmp_path_factory, terraform_core) -> Acceptance:
    """worker1 (192.0.2.11/24) labelled egress=yes, zone=z1, with two service CIDRs."""
    with start_agent(tmp_path_factory.mktemp("agent"),
                     extra_args=["--node-label", "egress=yes", "--node-label", "zone=z1",
                                 "--service-cidr", "10.96.0.0/12,10.100.0.0/16"]) as agent:
        yield Acceptance(Terraform(tmp_path, endpoint=agent.endpoint, core=terraform_core), agent)


def gateway(selector: str, cap: str = "") -> str:
    return f"""resource "egress_gateway" "gw" {{
  name         = "edge"
  floating_ips = ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
{cap}
  node_selector {{
{selector}
  }}
}}
"""


EXPRESSIONS = """    match_labels = { egress = "yes" }
    match_expressions {
      key      = "zone"
      operator = "In"
      values   = ["z2", "z1"]
    }
    match_expressions {
      key      = "spare"
      operator = "DoesNotExist"
    }
"""
# The same selector with blocks and values written in another order.
REORDERED = """    match_expressions {
      operator = "DoesNotExist"
      key      = "spare"
    }
    match_expressions {
      key      = "zone"
      operator = "In"
      values   = ["z1", "z2"]
    }
    match_labels = { egress = "yes" }
"""


def test_selector_and_cap_create_no_perpetual_diff_import_update(labelled_acc):
    acc = labelled_acc

    def check_create(plan):
        after = plan.change("egress_gateway.gw")["after"]
        assert after["max_ips_per_node"] == 2
        assert after["node_selector"]["match_labels"] == {"egress": "yes"}
        assert "+ node_selector {" in plan.text and "+ max_ips_per_node = 2" in plan.text

    acc.step(gateway(EXPRESSIONS, "  max_ips_per_node = 2"), check_create)  # the step's refresh plan is empty
    stored = acc.client.get_gateway("edge").obj
    assert stored.max_ips_per_node == 2
    assert [(e.key, e.operator, e.values) for e in stored.node_selector.match_expressions] == [
        ("spare", "DoesNotExist", []), ("zone", "In", ["z1", "z2"])]

    # Expressions and values in any order: nothing to change.
    acc.tf.write(gateway(REORDERED, "  max_ips_per_node = 2"))
    acc.tf.plan_is_empty()

    imported = acc.import_step({"egress_gateway.gw": "edge"})
    assert imported["egress_gateway.gw"]["max_ips_per_node"] == 2

    # The cap leaves the third IP unassigned; the status data source shows the reason.
    acc.step(gateway(REORDERED, "  max_ips_per_node = 2") + """
data "egress_gateway_status" "edge" {
  name = egress_gateway.gw.name
}
""")

    # Changing a label value inside an expression is an in-place update; removing the cap too.
    def check_update(plan):
        assert plan.actions("egress_gateway.gw") == ["update"]
        assert "~ update in-place" in plan.text

    acc.step(gateway(EXPRESSIONS.replace('["z2", "z1"]', '["z1", "z3"]')), check_update)
    stored = acc.client.get_gateway("edge").obj
    assert stored.max_ips_per_node is None
    assert stored.node_selector.match_expressions[1].values == ["z1", "z3"]
    acc.destroy()


def test_node_labels_and_service_cidrs_in_the_egress_node_data_source(labelled_acc):
    acc = labelled_acc
    acc.step('data "egress_node" "w1" {\n  name = "worker1"\n}\n'
             'output "labels" {\n  value = data.egress_node.w1.labels\n}\n'
             'output "service_cidrs" {\n  value = data.egress_node.w1.service_cidrs\n}\n')
    assert acc.tf.run("output", "-json", "labels").stdout.strip().replace(" ", "") == '{"egress":"yes","zone":"z1"}'
    assert acc.tf.run("output", "-json", "service_cidrs").stdout.strip().replace(" ", "") == \
        '["10.96.0.0/12","10.100.0.0/16"]'


def test_a_selector_no_node_matches_warns_at_plan(labelled_acc):
    plan = labelled_acc.tf
    plan.write(gateway('    match_labels = { egress = "no" }'))
    result = plan.plan()
    box = find_diagnostic(result.warnings or result.text, "Warning:", "NoMatchingNode",
                          "gateway 'edge''s node_selector {egress=no} matches none of the nodes")
    assert "node_selector" in box


@pytest.mark.parametrize(
    "cap, selector, needles",
    [
        ("  max_ips_per_node = 0", '    match_labels = { egress = "yes" }', ("max_ips_per_node", "must be at least 1")),
        ("  max_ips_per_node = 1.5", '    match_labels = { egress = "yes" }', ("max_ips_per_node", "whole number")),
        ("", '    match_labels = { "bad key!" = "x" }', ("node_selector", "label key 'bad key!'")),
        ("", '    match_expressions {\n      key = "zone"\n      operator = "Near"\n    }',
         ("operator 'Near' must be one of In, NotIn, Exists, DoesNotExist",)),
    ],
)
def test_bad_placement_is_a_plan_error_and_changes_nothing(labelled_acc, cap, selector, needles):
    res = labelled_acc.expect_failure(gateway(selector, cap))
    find_diagnostic(res.output, "Error:", *needles)
