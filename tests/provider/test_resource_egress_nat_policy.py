"""egress_nat_policy through real Terraform against a real egress-agent."""

from __future__ import annotations

import re

import pytest

from egress_api import models
from helpers.terraform import Terraform, find_diagnostic

pytestmark = pytest.mark.terraform

GATEWAY = """
resource "egress_gateway" "default" {
  floating_ips = ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
}
"""


def policy(
    name: str = "egress",
    cidrs: tuple[str, ...] = ("198.51.100.0/24",),
    source_ip: str = "192.0.2.100",
    rules: str | None = None,
    address: str = "egress",
    depends: bool = True,
) -> str:
    if rules is None:  # the seed's rules: role=frontend pods of namespaces user=alice or user=paul
        rules = "".join(
            f"""
  egress {{
    namespace_selector {{ match_labels = {{ user = "{user}" }} }}
    pod_selector       {{ match_labels = {{ role = "frontend" }} }}
  }}"""
            for user in ("alice", "paul")
        )
    quoted = ", ".join(f'"{c}"' for c in cidrs)
    dep = "\n  depends_on = [egress_gateway.default]" if depends else ""
    return f"""
resource "egress_nat_policy" "{address}" {{
  name = "{name}"{rules}
  destination_cidrs = [{quoted}]
  egress_source_ip  = "{source_ip}"{dep}
}}
"""


def test_create_update_import_rename_drift_destroy(acc):
    client = acc.client

    def check_create(plan):
        change = plan.change("egress_nat_policy.egress")
        assert change["actions"] == ["create"]
        after = change["after"]
        assert after["destination_cidrs"] == ["198.51.100.0/24"] and after["egress_source_ip"] == "192.0.2.100"
        assert sorted(r["namespace_selector"]["match_labels"]["user"] for r in after["egress"]) == ["alice", "paul"]
        assert all(r["pod_selector"]["match_labels"] == {"role": "frontend"} for r in after["egress"])
        assert change["after_unknown"]["resource_version"] is True
        assert plan.warnings == ""  # the gateway planned alongside is taken into account
        assert "+ namespace_selector {" in plan.text

    acc.step(GATEWAY + policy(), check_create)
    stored = client.get_policy("egress")
    assert stored.obj.egress_source_ip == "192.0.2.100"
    assert len(stored.obj.egress) == 2

    # In-place update: destination_cidrs grows, a label inside a rule changes, the source IP moves.
    rules = """
  egress {
    namespace_selector { match_labels = { user = "alice" } }
    pod_selector       { match_labels = { role = "frontend" } }
  }
  egress {
    namespace_selector { match_labels = { user = "bob" } }
  }"""

    def check_update(plan):
        change = plan.change("egress_nat_policy.egress")
        assert change["actions"] == ["update"]
        assert sorted(change["after"]["destination_cidrs"]) == ["198.51.100.0/24", "203.0.113.0/24"]
        assert change["after"]["egress_source_ip"] == "192.0.2.101"
        bob = {"namespace_selector": {"match_labels": {"user": "bob"}, "match_expressions": []}, "pod_selector": None}
        assert bob in change["after"]["egress"]  # an absent set of blocks is an empty set in Terraform's JSON
        assert change["after_unknown"]["resource_version"] is True
        assert '+ "203.0.113.0/24"' in plan.text
        # (column alignment follows the longest attribute name shown, e.g. selected_pods_sample)
        assert re.search(r'~ egress_source_ip\s+= "192.0.2.100" -> "192.0.2.101"', plan.text)

    # (In the agent's order, so that the imports below plan empty: see test_large_lists for other orders.)
    acc.step(GATEWAY + policy(cidrs=("198.51.100.0/24", "203.0.113.0/24"), source_ip="192.0.2.101", rules=rules), check_update)
    updated = client.get_policy("egress").obj
    assert updated.destination_cidrs == ["198.51.100.0/24", "203.0.113.0/24"]
    assert models.EgressRule(namespace_selector=models.LabelSelector(match_labels={"user": "bob"})) in updated.egress

    acc.import_step({"egress_gateway.default": "default", "egress_nat_policy.egress": "egress"})

    blk = Terraform(acc.tf.root, endpoint=acc.tf.env["EGRESS_ENDPOINT"], name="import-block")
    acc.tf.copy_config_to(blk)
    (blk.dir / "imports.tf").write_text(
        'import {\n  to = egress_nat_policy.egress\n  id = "egress"\n}\n'
        'import {\n  to = egress_gateway.default\n  id = "default"\n}\n'
    )
    plan = blk.plan()
    assert plan.all_actions() == {"egress_gateway.default": ["no-op"], "egress_nat_policy.egress": ["no-op"]}
    assert "2 to import, 0 to add, 0 to change, 0 to destroy" in plan.text
    blk.apply_plan()
    blk.plan_is_empty()

    # Rename: replacement keeping the same source IP (the old policy is deleted first).
    def check_rename(plan):
        change = plan.change("egress_nat_policy.egress")
        assert change["actions"] == ["delete", "create"]
        assert change["replace_paths"] == [["name"]]
        assert "# forces replacement" in plan.text
        assert plan.warnings == ""  # the replaced policy no longer counts as holding 192.0.2.101

    acc.step(GATEWAY + policy(name="frontend", cidrs=("203.0.113.0/24", "198.51.100.0/24"), source_ip="192.0.2.101", rules=rules), check_rename)
    assert [v.obj.name for v in client.list_policies()] == ["frontend"]

    # Out-of-band delete: the plan re-creates it.
    client.delete_policy("frontend")
    plan = acc.tf.plan()
    assert plan.all_actions() == {"egress_gateway.default": ["no-op"], "egress_nat_policy.egress": ["create"]}
    acc.tf.apply_plan()
    acc.tf.plan_is_empty()

    acc.destroy()


def test_bad_input_fails_at_plan_naming_the_attribute(acc):
    no_rules = ""
    bad_key = '\n  egress {\n    pod_selector { match_labels = { "-role" = "frontend" } }\n  }'
    bad_value = '\n  egress {\n    namespace_selector { match_labels = { user = "alice smith" } }\n  }'
    config = "".join(
        [
            policy(name="malformed", address="malformed", cidrs=("198.51.100.0/33",), depends=False),
            policy(name="ipv6", address="ipv6", cidrs=("2001:db8::/32",), depends=False),
            policy(name="hostbits", address="hostbits", cidrs=("198.51.100.7/24",), depends=False),
            policy(name="sourceip", address="sourceip", source_ip="192.0.2.1000", depends=False),
            policy(name="norules", address="norules", rules=no_rules, depends=False),
            policy(name="badkey", address="badkey", rules=bad_key, depends=False),
            policy(name="badvalue", address="badvalue", rules=bad_value, depends=False),
        ]
    )
    res = acc.expect_failure(config, "Error: Invalid")
    out = res.output
    find_diagnostic(out, "Invalid destination_cidrs", "egress_nat_policy.malformed", "not a valid IPv4 CIDR block")
    find_diagnostic(out, "Invalid destination_cidrs", "egress_nat_policy.ipv6", "IPv4 only")
    find_diagnostic(out, "Invalid destination_cidrs", "egress_nat_policy.hostbits", "has host bits set: did you mean 198.51.100.0/24?")
    find_diagnostic(out, "Invalid egress_source_ip", "egress_nat_policy.sourceip", "not a valid IPv4 address")
    find_diagnostic(out, "Invalid egress", "egress_nat_policy.norules", "at least one egress rule is required")
    find_diagnostic(out, "Invalid egress.pod_selector.match_labels", "egress_nat_policy.badkey", "label key '-role'")
    find_diagnostic(out, "Invalid egress.namespace_selector.match_labels", "egress_nat_policy.badvalue", "'alice smith'")


def test_cross_object_rules_at_plan_and_apply(acc):
    """A source IP in no gateway of the configuration or the agent fails at plan; a source IP that a policy
    outside the configuration uses is only a warning at plan (that policy may be destroyed in this run),
    and the agent refuses it at apply."""
    client = acc.client
    client.create_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.101"]))
    client.create_policy(
        models.Policy(name="existing", egress=[models.EgressRule()], destination_cidrs=["198.51.100.0/24"], egress_source_ip="192.0.2.100")
    )
    stranger = policy(name="stranger", address="stranger", source_ip="192.0.2.50", depends=False)
    twin = policy(name="twin", address="twin", source_ip="192.0.2.100", depends=False)
    res = acc.expect_failure(stranger + twin, phase="plan")
    out = res.output
    find_diagnostic(out, "Error: Invalid egress_source_ip", "egress_nat_policy.stranger",
                    "192.0.2.50 is not a floating IP of any gateway (one of 192.0.2.100, 192.0.2.101)", "fix the configuration")
    find_diagnostic(out, "Warning: Check egress_source_ip", "egress_nat_policy.twin",
                    "already the egress_source_ip of policy 'existing'", "may be destroyed in this run")

    res = acc.expect_failure(twin, phase="apply")
    find_diagnostic(res.output, "Error: Invalid egress_source_ip", "egress_nat_policy.twin", "already the egress_source_ip of policy 'existing'")


def test_unassigned_source_ip_applies_with_a_warning(acc):
    """203.0.113.10 is in no node's subnet (the agent's node is 192.0.2.11/24): stored, with warnings and an event."""
    config = """
resource "egress_gateway" "default" {
  floating_ips = ["203.0.113.10"]
}
""" + policy(source_ip="203.0.113.10")

    def check(plan):
        find_diagnostic(plan.warnings, "Warning: Check floating_ips", "egress_gateway.default", "203.0.113.10 cannot be assigned to any node")

    plan = acc.step(config, check)
    # Terraform plans the policy again just before applying it, once the gateway is stored: now the agent knows.
    find_diagnostic(plan.applied.output, "Warning: Check egress_source_ip", "egress_nat_policy.egress", "UnknownEgressIP: 203.0.113.10 is not assigned")
    desc = acc.client.describe_policy("egress")
    assert desc.holder == "" and any(e.reason == "UnknownEgressIP" for e in desc.events)
    acc.destroy()


def expressions(*exprs: str, labels: str = "") -> str:
    body = (f"match_labels = {labels}\n" if labels else "") + "".join(
        f"      match_expressions {{\n {e}\n }}\n" for e in exprs)
    return f"""
  egress {{
    pod_selector {{
      {body}    }}
  }}"""


def test_match_expressions_in_any_order_never_diff(acc):
    """Kubernetes matchExpressions: a set of requirements (and value sets) whose order is never a change."""
    client = acc.client
    written = expressions('key = "role"\n operator = "NotIn"\n values = ["backend", "batch"]',
                          'key = "tier"\n operator = "Exists"', labels='{ app = "shop" }')

    def check_create(plan):
        assert plan.actions("egress_nat_policy.egress") == ["create"]

    acc.step(GATEWAY + policy(rules=written), check_create)
    (rule,) = client.get_policy("egress").obj.egress
    assert rule.pod_selector.match_labels == {"app": "shop"}
    assert [(e.key, e.operator, e.values) for e in rule.pod_selector.match_expressions] == [
        ("role", "NotIn", ["backend", "batch"]), ("tier", "Exists", [])]

    # The same requirements in another order, values too: no change at all.
    acc.tf.write(GATEWAY + policy(rules=expressions('key = "tier"\n operator = "Exists"',
                                                     'key = "role"\n operator = "NotIn"\n values = ["batch", "backend"]',
                                                     labels='{ app = "shop" }')))
    acc.tf.plan_is_empty()

    # A changed operator is an in-place update.
    changed = expressions('key = "role"\n operator = "In"\n values = ["frontend"]', labels='{ app = "shop" }')

    def check_update(plan):
        assert plan.actions("egress_nat_policy.egress") == ["update"]

    acc.step(GATEWAY + policy(rules=changed), check_update)
    (rule,) = client.get_policy("egress").obj.egress
    assert [(e.key, e.operator, e.values) for e in rule.pod_selector.match_expressions] == [("role", "In", ["frontend"])]
    acc.destroy()


def test_bad_match_expressions_fail_at_plan_with_kubernetes_rules(acc):
    config = "".join([
        policy(name="novalues", address="novalues", depends=False,
               rules=expressions('key = "role"\n operator = "In"')),
        policy(name="extravalues", address="extravalues", depends=False,
               rules=expressions('key = "role"\n operator = "DoesNotExist"\n values = ["x"]')),
        policy(name="badop", address="badop", depends=False,
               rules=expressions('key = "role"\n operator = "Gt"\n values = ["1"]')),
    ])
    res = acc.expect_failure(config, "Error: Invalid")
    out = res.output
    find_diagnostic(out, "Invalid egress.pod_selector.match_expressions.values", "egress_nat_policy.novalues",
                    "operator In needs at least one value")
    find_diagnostic(out, "Invalid egress.pod_selector.match_expressions.values", "egress_nat_policy.extravalues",
                    "operator DoesNotExist takes no values")
    find_diagnostic(out, "Invalid egress.pod_selector.match_expressions.operator", "egress_nat_policy.badop",
                    "must be one of In, NotIn, Exists, DoesNotExist")
