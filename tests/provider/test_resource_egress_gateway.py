"""egress_gateway through real Terraform against a real egress-agent."""

from __future__ import annotations

import pytest

from egress_api import models
from helpers.terraform import Terraform, find_diagnostic

pytestmark = pytest.mark.terraform


def gateway(ips: list[str], name: str | None = None, address: str = "gw") -> str:
    name_line = f'  name         = "{name}"\n' if name else ""
    quoted = ", ".join(f'"{ip}"' for ip in ips)
    return f'resource "egress_gateway" "{address}" {{\n{name_line}  floating_ips = [{quoted}]\n}}\n'


def test_create_update_import_rename_drift_destroy(acc):
    client = acc.client

    # Create: attribute-level plan; name defaults to "default"; set order does not matter.
    def check_create(plan):
        change = plan.change("egress_gateway.gw")
        assert change["actions"] == ["create"]
        assert change["after"]["name"] == "default"
        assert change["after"]["id"] == "default"
        assert sorted(change["after"]["floating_ips"]) == ["192.0.2.100", "192.0.2.101"]
        assert change["after_unknown"]["resource_version"] is True
        assert '+ resource "egress_gateway" "gw"' in plan.text
        assert '+ floating_ips     = [' in plan.text

    acc.step(gateway(["192.0.2.101", "192.0.2.100"]), check_create)
    stored = client.get_gateway("default")
    assert stored.obj.floating_ips == ["192.0.2.100", "192.0.2.101"]

    # In-place update of floating_ips; resource_version becomes unknown; the agent gets the new set.
    def check_update(plan):
        change = plan.change("egress_gateway.gw")
        assert change["actions"] == ["update"]
        assert sorted(change["after"]["floating_ips"]) == ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
        assert change["after_unknown"].get("resource_version") is True
        assert "~ update in-place" in plan.text
        assert '+ "192.0.2.102"' in plan.text

    acc.step(gateway(["192.0.2.102", "192.0.2.100", "192.0.2.101"]), check_update)
    updated = client.get_gateway("default")
    assert updated.obj.floating_ips == ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
    assert updated.resource_version > stored.resource_version
    # The agent stores the IPs sorted, and so does an import: written that way, an import plans empty.
    acc.step(gateway(["192.0.2.100", "192.0.2.101", "192.0.2.102"]))  # a list reordered: state only
    assert client.get_gateway("default").resource_version == updated.resource_version

    # Import (CLI) into a fresh state equals the applied state, and plans empty.
    imported = acc.import_step({"egress_gateway.gw": "default"})
    assert imported["egress_gateway.gw"]["resource_version"] == updated.resource_version

    # Import block: a plan that imports and changes nothing, applied, then an empty plan.
    blk = Terraform(acc.tf.root, endpoint=acc.tf.env["EGRESS_ENDPOINT"], name="import-block")
    blk.write(gateway(["192.0.2.100", "192.0.2.101", "192.0.2.102"]) + 'import {\n  to = egress_gateway.gw\n  id = "default"\n}\n')
    plan = blk.plan()
    change = plan.change("egress_gateway.gw")
    assert change["actions"] == ["no-op"] and change["importing"]["id"] == "default"
    assert "1 to import, 0 to add, 0 to change, 0 to destroy" in plan.text
    blk.apply_plan()
    blk.plan_is_empty()

    # Rename: replacement, shown as "forces replacement".
    def check_rename(plan):
        change = plan.change("egress_gateway.gw")
        assert change["actions"] == ["delete", "create"]
        assert change["replace_paths"] == [["name"]]
        assert "# forces replacement" in plan.text
        assert "-/+ resource" in plan.text

    acc.step(gateway(["192.0.2.100", "192.0.2.101", "192.0.2.102"], name="edge"), check_rename)
    assert [v.obj.name for v in client.list_gateways()] == ["edge"]

    # Out-of-band delete: refresh drops it from state, the plan re-creates it.
    client.delete_gateway("edge")
    plan = acc.tf.plan()
    assert plan.actions("egress_gateway.gw") == ["create"]
    assert "egress_gateway.gw will be created" in plan.text
    acc.tf.apply_plan()
    acc.tf.plan_is_empty()
    assert client.get_gateway("edge").obj.floating_ips == ["192.0.2.100", "192.0.2.101", "192.0.2.102"]

    acc.destroy()


def test_stale_resource_version_is_a_conflict(acc):
    """Two pipelines: a change made elsewhere after Terraform's last read is not overwritten."""
    acc.step(gateway(["192.0.2.100"]))
    other = acc.client.update_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.110"]))

    acc.tf.write(gateway(["192.0.2.100", "192.0.2.101"]))
    res = acc.tf.apply("-refresh=false", check=False)
    assert res.code != 0
    box = find_diagnostic(res.output, "Error: Conflict", "egress_gateway.gw", "resource_version is stale")
    assert "terraform plan" in box
    assert acc.client.get_gateway("default") == other  # nothing overwritten

    # With a refresh, Terraform sees the other change and its plan replaces it knowingly.
    plan = acc.tf.plan()
    assert '~ "192.0.2.110" -> "192.0.2.101"' in plan.text  # a list: the element in that place changes
    acc.tf.apply_plan()
    assert acc.client.get_gateway("default").obj.floating_ips == ["192.0.2.100", "192.0.2.101"]
    acc.destroy()


def test_bad_input_fails_at_plan_naming_the_attribute(acc):
    config = (
        gateway(["192.0.2.300"], name="malformed", address="malformed")
        + gateway(["2001:db8::1"], name="ipv6", address="ipv6")
        + gateway([], name="empty", address="empty")
        + gateway(["192.0.2.100"], name="Not_A_Name", address="badname")
    )
    res = acc.expect_failure(config, r"Error: Invalid floating_ips")
    find_diagnostic(res.output, "Error: Invalid floating_ips", "egress_gateway.malformed", "'192.0.2.300' is not a valid IPv4 address")
    find_diagnostic(res.output, "Error: Invalid floating_ips", "egress_gateway.ipv6", "IPv4 only")
    find_diagnostic(res.output, "Error: Invalid floating_ips", "egress_gateway.empty", "at least one floating IP is required")
    find_diagnostic(res.output, "Error: Invalid name", "egress_gateway.badname", "is not a valid name")


def test_floating_ip_of_a_gateway_outside_the_configuration_is_a_warning(acc):
    """`other` is not in this configuration: it may be an orphan this run destroys, or managed elsewhere.

    The provider cannot tell, so the plan warns; the agent accepts the shared IP (assigned once) and
    records a FloatingIPShared warning. Two gateways *of the configuration* sharing one fail at plan
    (tests/provider/test_plan_truth.py).
    """
    acc.client.create_gateway(models.Gateway(name="other", floating_ips=["192.0.2.100"]))

    def check(plan):
        find_diagnostic(plan.warnings, "Warning: Check floating_ips", "egress_gateway.gw",
                        "already belongs to gateway 'other'", "may be destroyed in this run")

    acc.step(gateway(["192.0.2.100", "192.0.2.101"]), check)
    assert sorted(g.obj.name for g in acc.client.list_gateways()) == ["default", "other"]
