"""Terraform configurations as people write them, through both Terraform builds and a real egress-agent.

Names and CIDRs built with templates, `count.index`, `each.key`, module
variables, functions and other resources' outputs reach the provider as
refined unknowns (validate, plan) and must work everywhere; `terraform test`
runs plan and apply against the agent and against `mock_provider`.
"""

from __future__ import annotations

import json

import pytest

from helpers.terraform import Terraform, TerraformCore, find_diagnostic

pytestmark = pytest.mark.terraform


@pytest.fixture
def build(terraform_core) -> TerraformCore:
    """Each test runs on every Terraform core here (tests/provider/conftest.py parametrizes them)."""
    return terraform_core


REQUIRED = 'terraform {\n  required_providers {\n    egress = { source = "egressnat/egress" }\n  }\n}\n'

# A module whose every name and address comes from its inputs.
MODULE = REQUIRED + """
variable "prefix" { type = string }
variable "octet" { type = number }
variable "teams" { type = set(string) }

resource "egress_gateway" "gw" {
  count        = 2
  name         = "${var.prefix}-gw-${count.index}"
  floating_ips = ["192.0.2.${var.octet + 2 * count.index}", format("192.0.2.%d", var.octet + 2 * count.index + 1)]
}

resource "egress_nat_policy" "team" {
  for_each = var.teams
  name     = "${var.prefix}-${each.key}"
  egress {
    namespace_selector { match_labels = { team = each.key } }
    pod_selector { match_labels = { role = join("-", ["front", "end"]) } }
  }
  destination_cidrs = [cidrsubnet("198.51.100.0/24", 4, index(sort(tolist(var.teams)), each.key))]
  egress_source_ip  = "192.0.2.${var.octet + index(sort(tolist(var.teams)), each.key)}"
  depends_on        = [egress_gateway.gw]
}

# Its name comes from another resource's computed output: unknown until that gateway is applied.
resource "egress_nat_policy" "late" {
  name = "late-${egress_gateway.gw[0].resource_version}"
  dynamic "egress" {
    for_each = toset([var.prefix]) # unknown at validate: the whole set of blocks is
    content {
      pod_selector { match_labels = { app = "${egress.value}-batch" } }
    }
  }
  destination_cidrs = ["203.0.113.0/${24 + 4}"]
  egress_source_ip  = format("192.0.2.%d", var.octet + 3)
  depends_on        = [egress_gateway.gw]
}

output "gateway_names" { value = egress_gateway.gw[*].name }
output "late_name" { value = egress_nat_policy.late.name }
"""

ROOT = REQUIRED + """
variable "prefix" {
  type    = string
  default = "edge"
}

module "edge" {
  source = "./modules/egress"
  prefix = var.prefix
  octet  = 100
  teams  = ["alice", "paul"]
}

output "gateway_names" { value = module.edge.gateway_names }
output "late_name" { value = module.edge.late_name }
"""


def validate(tf: Terraform) -> list[dict]:
    """`terraform validate -json`: its diagnostics, less the notice every dev_overrides run prints."""
    doc = json.loads(tf.run("validate", "-json", check=False).stdout)
    found = [d for d in doc["diagnostics"] if "development overrides" not in d["summary"]]
    assert doc["valid"] == (not any(d["severity"] == "error" for d in found))
    return found


def write_module_config(tf: Terraform) -> None:
    tf.write(ROOT)
    module = tf.dir / "modules" / "egress"
    module.mkdir(parents=True, exist_ok=True)
    (module / "main.tf").write_text(MODULE)


def test_module_with_templates_count_for_each_and_functions_validates_plans_and_applies(agent_process, tmp_path, build):
    tf = Terraform(tmp_path, endpoint=agent_process.endpoint, binary=build)
    write_module_config(tf)
    tf.run("get", "-no-color")  # installs the local module; dev_overrides needs no provider init
    # validate knows no variable: every templated name arrives as a refined unknown.
    assert validate(tf) == []

    plan = tf.plan()
    assert plan.change("module.edge.egress_gateway.gw[1]")["after"]["name"] == "edge-gw-1"
    assert plan.change("module.edge.egress_gateway.gw[1]")["after"]["floating_ips"] == ["192.0.2.102", "192.0.2.103"]
    team = plan.change('module.edge.egress_nat_policy.team["paul"]')["after"]
    assert (team["name"], team["destination_cidrs"], team["egress_source_ip"]) == ("edge-paul", ["198.51.100.16/28"], "192.0.2.101")
    late = plan.change("module.edge.egress_nat_policy.late")
    assert late["after_unknown"]["name"] is True and late["after_unknown"]["id"] is True
    assert late["after"]["destination_cidrs"] == ["203.0.113.0/28"]
    assert late["after"]["egress"] == [{"namespace_selector": None,
                                        "pod_selector": {"match_labels": {"app": "edge-batch"}, "match_expressions": []}}]
    tf.apply_plan()
    tf.plan_is_empty()

    client = agent_process.client
    assert sorted(v.obj.name for v in client.list_gateways()) == ["edge-gw-0", "edge-gw-1"]
    version = client.get_gateway("edge-gw-0").resource_version
    assert sorted(v.obj.name for v in client.list_policies()) == sorted(["edge-alice", "edge-paul", f"late-{version}"])
    assert client.get_policy("edge-alice").obj.egress[0].pod_selector.match_labels == {"role": "front-end"}
    assert tf.outputs() == {"gateway_names": ["edge-gw-0", "edge-gw-1"], "late_name": f"late-{version}"}

    tf.run("destroy", "-input=false", "-no-color", "-auto-approve")
    assert not client.list_gateways() and not client.list_policies()


TEST_REAL = """
variables {
  prefix = "tt"
}

run "plan_names_from_variables" {
  command = plan

  assert {
    condition     = module.edge.gateway_names == ["tt-gw-0", "tt-gw-1"]
    error_message = "gateway names are not built from the prefix"
  }
}

run "apply_against_the_agent" {
  command = apply

  assert {
    condition     = startswith(module.edge.late_name, "late-")
    error_message = "the late policy is not named after the gateway's version"
  }
}
"""

TEST_MOCKED = """
mock_provider "egress" {
  mock_resource "egress_gateway" {
    defaults = {
      resource_version = 7
    }
  }
}

variables {
  prefix = "mock"
}

run "plan_with_the_mock" {
  command = plan

  assert {
    condition     = module.edge.gateway_names[1] == "mock-gw-1"
    error_message = "templated name not planned"
  }
}

run "apply_with_the_mock" {
  assert {
    condition     = module.edge.late_name == "late-7"
    error_message = "the computed value of the mocked gateway did not flow into the name"
  }
}
"""


def test_terraform_test_with_plan_and_apply_runs_against_the_agent_and_a_mock_provider(agent_process, tmp_path, build):
    tf = Terraform(tmp_path, endpoint=agent_process.endpoint, binary=build)
    write_module_config(tf)
    tests = tf.dir / "tests"
    tests.mkdir()
    (tests / "real.tftest.hcl").write_text(TEST_REAL)
    (tests / "mocked.tftest.hcl").write_text(TEST_MOCKED)
    tf.run("get", "-no-color")  # installs the local module; dev_overrides needs no provider init
    # Four runs and their clean-up in one command: a hang guard wider than one plan's, for a loaded machine.
    res = tf.run("test", "-no-color", check=False, timeout=300)
    assert res.code == 0, str(res)
    for line in ("run \"plan_names_from_variables\"... pass", "run \"apply_against_the_agent\"... pass",
                 "run \"plan_with_the_mock\"... pass", "run \"apply_with_the_mock\"... pass",
                 "Success! 4 passed, 0 failed."):
        assert line in res.stdout, str(res)
    # terraform test destroys what its runs created; the mock created nothing on the agent.
    assert not agent_process.client.list_gateways() and not agent_process.client.list_policies()


# Every line number below is asserted: keep the layout.
BAD = REQUIRED + """\
variable "suffix" { type = string }

resource "egress_gateway" "bad" {
  name = "Edge_${var.suffix}"
  floating_ips = [
    "192.0.2.1",
    "2001:db8::1",
    "10.0.0.${var.suffix}",
    "10.0.0.300",
  ]
}

resource "egress_nat_policy" "bad" {
  name = "%s-${var.suffix}"
  egress {
    namespace_selector {
      match_labels = {
        user    = "alice smith"
        "-team" = "x"
        ok      = "fine"
        env     = "prod ${var.suffix}"
      }
    }
    pod_selector { match_labels = { role = "-frontend" } }
  }
  destination_cidrs = ["198.51.100.1/24", "203.0.113.0/33", "10.${var.suffix}.0.0/16"]
  egress_source_ip  = "192.0.2.1.${var.suffix}"
}

resource "egress_nat_policy" "two_rules" {
  name = "two-rules"
  egress {
    pod_selector { match_labels = { "Bad Key" = "x" } }
  }
  egress {
    pod_selector { match_labels = { role = "frontend" } }
  }
  destination_cidrs = ["198.51.100.0/24"]
  egress_source_ip  = "192.0.2.1"
}
""" % ("n" * 64)

LABELS = "egress.namespace_selector.match_labels"
# (summary, line Terraform points at, what the detail says): all of them, from one run.
EXPECTED = {
    ("Invalid name", 9, "a name starting with 'Edge_' is not valid"),
    ("Invalid floating_ips", 10, "'2001:db8::1' is IPv6"),
    ("Invalid floating_ips", 10, "'10.0.0.300' is not a valid IPv4 address"),
    ("Invalid name", 19, f"a name starting with '{'n' * 64}-' is not valid"),
    (f'Invalid {LABELS}["user"]', 23, "label value 'alice smith' must be empty or 1-63 characters"),
    (f'Invalid {LABELS}["-team"]', 24, "label key '-team': name must be 1-63 characters"),
    (f'Invalid {LABELS}["env"]', 26, "a label value starting with 'prod ' is not valid"),
    ('Invalid egress.pod_selector.match_labels["role"]', 29, "label value '-frontend' must be empty"),
    ("Invalid destination_cidrs", 31, "'198.51.100.1/24' has host bits set: did you mean 198.51.100.0/24?"),
    ("Invalid destination_cidrs", 31, "'203.0.113.0/33' is not a valid IPv4 CIDR block"),
    ("Invalid egress_source_ip", 32, "a value starting with '192.0.2.1.' is not a valid IPv4 address"),
    # Two egress blocks: Terraform cannot be told which one (a set); the summary names the key.
    ('Invalid egress.pod_selector.match_labels["Bad Key"]', 35, "label key 'Bad Key': name must be"),
}


def test_every_bad_input_is_reported_at_once_at_its_exact_nested_path(tmp_path, build):
    tf = Terraform(tmp_path, binary=build)
    tf.write(BAD)
    found = validate(tf)
    got = {(d["summary"], d["range"]["start"]["line"], d["detail"]) for d in found}
    for summary, line, fragment in EXPECTED:
        assert any(s == summary and n == line and fragment in detail for s, n, detail in got), (
            f"no {summary!r} at line {line} with {fragment!r} among:\n" + "\n".join(map(str, sorted(got, key=lambda g: g[1]))))
    assert len(found) == len(EXPECTED)  # and nothing else: unknowns with no known start are not errors
    assert all(d["severity"] == "error" for d in found)
    for d in found:  # the provider's words only
        assert "Input should" not in d["detail"] and "String should" not in d["detail"]

    # As a user reads it: the nested map entry is the line shown, inside its resource.
    text = tf.run("validate", "-no-color", check=False).output
    box = find_diagnostic(text, f'Error: Invalid {LABELS}["-team"]', "egress_nat_policy.bad")
    assert 'on main.tf line 24, in resource "egress_nat_policy" "bad": 24:' in box and '"-team" = "x"' in box
