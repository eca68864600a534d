"""egress_nat_policy with `gateway` and no `egress_source_ip`: the agent allocates the IP (issue #12).

Real Terraform (both cores) against a real egress-agent: the plan shows `(known after apply)`, the apply fills it
in, the next plan is empty; another gateway allocates anew; import round-trips; plan errors where the
configuration decides.
"""

from __future__ import annotations

import re

import pytest

from helpers.terraform import Terraform

pytestmark = pytest.mark.terraform

GATEWAYS = """
resource "egress_gateway" "edge" {
  name         = "edge"
  floating_ips = ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
}

resource "egress_gateway" "other" {
  name         = "other"
  floating_ips = ["203.0.113.10"]
}
"""


def policy(address: str = "web", gateway: str = "egress_gateway.edge.name", extra: str = "") -> str:
    return f"""
resource "egress_nat_policy" "{address}" {{
  name              = "{address}"
  destination_cidrs = ["198.51.100.0/24"]
  gateway           = {gateway}{extra}
  egress {{
    pod_selector {{ match_labels = {{ role = "{address}" }} }}
  }}
}}
"""


def test_allocated_ip_is_known_after_apply_stable_and_moves_with_the_gateway(acc):
    def check_create(plan):
        change = plan.change("egress_nat_policy.web")
        assert change["actions"] == ["create"]
        assert change["after_unknown"]["egress_source_ip"] is True
        assert change["after"]["gateway"] == "edge"
        assert re.search(r"\+ egress_source_ip +\= \(known after apply\)", plan.text), plan.text

    acc.step(GATEWAYS + policy() + policy("api"), check_create)  # step: apply, then the next plan is empty
    state = acc.tf.state()
    ips = {state[f"egress_nat_policy.{n}"]["egress_source_ip"] for n in ("web", "api")}
    assert ips == {"192.0.2.100", "192.0.2.101"}  # the two lowest, one each
    stored = acc.client.get_policy("web").obj
    assert stored.gateway == "edge" and stored.egress_source_ip == state["egress_nat_policy.web"]["egress_source_ip"]

    # A change elsewhere keeps the IP: the plan shows it as it is.
    def check_update(plan):
        change = plan.change("egress_nat_policy.web")
        assert change["actions"] == ["update"] and change["after_unknown"].get("egress_source_ip") is not True
        assert change["after"]["egress_source_ip"] == stored.egress_source_ip

    acc.step(GATEWAYS + policy(extra="\n  priority = 10") + policy("api"), check_update)
    assert acc.client.get_policy("web").obj.egress_source_ip == stored.egress_source_ip

    # Another gateway: allocated anew from it.
    def check_move(plan):
        change = plan.change("egress_nat_policy.web")
        assert change["actions"] == ["update"] and change["after_unknown"]["egress_source_ip"] is True
        assert re.search(r'~ egress_source_ip +\= "192\.0\.2\.10[01]" -> \(known after apply\)', plan.text), plan.text

    acc.step(GATEWAYS + policy(gateway="egress_gateway.other.name", extra="\n  priority = 10") + policy("api"),
             check_move)
    assert acc.tf.state()["egress_nat_policy.web"]["egress_source_ip"] == "203.0.113.10"

    # Deleting a policy frees its IP: a new one gets it.
    acc.step(GATEWAYS + policy(gateway="egress_gateway.other.name", extra="\n  priority = 10") + policy("db"))
    assert acc.tf.state()["egress_nat_policy.db"]["egress_source_ip"] in ips


def test_import_round_trips(acc):
    acc.step(GATEWAYS + policy())
    ip = acc.tf.state()["egress_nat_policy.web"]["egress_source_ip"]
    fresh = Terraform(acc.tf.root, endpoint=acc.tf.env["EGRESS_ENDPOINT"], name="imported", core=acc.tf.core)
    fresh.write(GATEWAYS + policy())
    fresh.run("import", "-input=false", "-no-color", "egress_gateway.edge", "edge")
    fresh.run("import", "-input=false", "-no-color", "egress_gateway.other", "other")
    fresh.run("import", "-input=false", "-no-color", "egress_nat_policy.web", "web")
    imported = fresh.state()["egress_nat_policy.web"]
    assert (imported["gateway"], imported["egress_source_ip"]) == ("edge", ip)
    fresh.plan_is_empty()
    # Written with the IP too, the import plans empty as well.
    fresh.write(GATEWAYS + policy(extra=f'\n  egress_source_ip = "{ip}"'))
    fresh.plan_is_empty()


def test_plan_errors_the_configuration_decides(acc):
    acc.expect_failure(GATEWAYS + policy(gateway='"nowhere"'),
                       r"gateway 'nowhere' is neither in this configuration nor on the agent")
    # Four policies allocating from three IPs.
    acc.expect_failure(GATEWAYS + "".join(policy(n) for n in ("a", "b", "c", "d")),
                       r"gateway 'edge' has 3 floating IPs and 3 of them free, but 4 policies of this configuration "
                       r"allocate their source IP from it")
    acc.expect_failure(GATEWAYS + policy(extra='\n  egress_source_ip = "203.0.113.10"'),
                       r"203\.0\.113\.10 is not a floating IP of gateway 'edge'")
    acc.expect_failure(GATEWAYS + """
resource "egress_nat_policy" "none" {
  name              = "none"
  destination_cidrs = ["198.51.100.0/24"]
  egress {}
}
""", r"set egress_source_ip, or gateway")


def test_running_out_at_apply_is_a_clear_error(acc):
    acc.step(GATEWAYS)
    # Another writer (here: the agent's API directly) takes two of edge's IPs after the plan.
    acc.tf.write(GATEWAYS + policy() + policy("api"))
    acc.tf.plan()
    from egress_api import models

    for name, ip in (("x", "192.0.2.100"), ("y", "192.0.2.101")):
        acc.client.create_policy(models.Policy.model_validate(
            {"name": name, "egress": [{}], "destination_cidrs": ["203.0.113.0/24"], "egress_source_ip": ip}))
    res = acc.tf.run("apply", "-input=false", "-no-color", "tfplan", check=False)
    assert res.code != 0
    text = " ".join(res.output.split())
    assert "gateway 'edge' has no free floating IP: 0 of its 3 floating IPs are free" in text
    assert len([p for p in acc.client.list_policies() if p.obj.gateway == "edge"]) == 1  # one got the last IP


def test_a_create_waits_for_a_gateway_terraform_creates_later(acc):
    """A literal gateway name gives Terraform no order: the policy's create waits for the gateway (within its
    create timeout) instead of failing. Here the gateway waits 3 s for a sleeper, so the policy goes first."""
    config = """
resource "terraform_data" "sleeper" {
  provisioner "local-exec" {
    command = "sleep 3"
  }
}

resource "egress_gateway" "late" {
  name         = "late"
  floating_ips = ["192.0.2.120"]
  depends_on   = [terraform_data.sleeper]
}
""" + policy(gateway='"late"')
    plan = acc.step(config)
    assert acc.tf.state()["egress_nat_policy.web"]["egress_source_ip"] == "192.0.2.120"
    out = plan.applied.stdout
    # The policy's create was under way before the gateway's finished.
    assert out.index("egress_nat_policy.web: Creating...") < out.index("egress_gateway.late: Creation complete")


def test_state_of_schema_2_upgrades_without_a_change(acc):
    config = GATEWAYS + policy(gateway="null", extra='\n  egress_source_ip = "192.0.2.101"')
    acc.step(config)
    acc.tf.rewind_state("egress_nat_policy", now=3, to=2, drop=["gateway"])  # as the provider before `gateway`
    res = acc.tf.plan_is_empty()
    assert "upgrade" not in res.output
