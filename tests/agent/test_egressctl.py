"""egressctl (the installed console script) against a real agent."""

from __future__ import annotations

import json
import os
import subprocess

from egress_api import models
from helpers.agent import ctl_command, wait_for

from seed_objects import GW, policy


def ctl(agent, *args, env_endpoint=False):
    env = {**os.environ}
    env.pop("EGRESS_ENDPOINT", None)
    argv = [*ctl_command()]
    if env_endpoint:
        env["EGRESS_ENDPOINT"] = agent.endpoint
    elif agent is not None:
        argv += ["--endpoint", agent.endpoint]
    return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=30)


def seeded(agent):
    c = agent.client
    c.create_gateway(models.Gateway(name="default", floating_ips=[*GW.floating_ips, "203.0.113.10"]))
    c.create_policy(policy())
    c.create_policy(policy("far", source="203.0.113.10"))
    wait_for(lambda: c.list_events("policy", "far"), what="controller pass")
    return c


def test_get_tables_and_json(agent_process):
    seeded(agent_process)
    r = ctl(agent_process, "get", "gateways")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "FLOATING", "IPS", "VERSION"]
    assert lines[1].split()[:2] == ["default", "192.0.2.100,192.0.2.101,192.0.2.102,203.0.113.10"]

    r = ctl(agent_process, "get", "policies", "-o", "json", env_endpoint=True)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [p["name"] for p in rows] == ["egress", "far"]
    assert rows[0]["egress"][1] == {"namespace_selector": {"match_labels": {"user": "paul"}, "match_expressions": []},
                                    "pod_selector": None}
    assert rows[0]["resource_version"] > 0
    r = ctl(agent_process, "get", "policies")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "IP", "GATEWAY", "DESTINATIONS", "PRIORITY", "RULES", "VERSION"]
    assert lines[1].split()[0] == "egress" and lines[1].split()[4] == "1000"  # the default: lower wins
    assert lines[1].split()[2] == "-"  # an explicit IP, no gateway named

    r = ctl(agent_process, "get", "nodes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split() == ["worker1", "worker", "Up", "192.0.2.11/24", "192.0.2.100,192.0.2.101,192.0.2.102",
                                                "-", "-"]  # no --node-label, no --service-cidr


def test_describe_gateway_and_policy(agent_process):
    seeded(agent_process)
    r = ctl(agent_process, "describe", "gateway", "default")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Name:              default" in out
    assert "    worker1: Up" in out
    assert "    192.0.2.100: worker1" in out
    assert "    203.0.113.10: <unassigned> (no node's subnet contains 203.0.113.10)" in out
    assert "Warning" in out and "Unassignable" in out

    r = ctl(agent_process, "describe", "policy", "far")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Namespace Selector:  user=alice" in out and "Pod Selector:        role=frontend" in out
    assert "Pod Selector:        <all>" in out  # the omitted selector of rule 1
    assert "Egress Source IP:  203.0.113.10" in out
    assert "Holder:  <none>" in out
    event_line = next(line for line in out.splitlines() if "UnknownEgressIP" in line)
    assert event_line.split()[:2] == ["Warning", "UnknownEgressIP"] and event_line.split()[3] == "1"

    r = ctl(agent_process, "describe", "policy", "egress")
    assert "Holder:  worker1" in r.stdout and "Events:  <none>" in r.stdout


def test_status(agent_process):
    seeded(agent_process)
    r = ctl(agent_process, "status")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Leader:  worker1 (standalone)" in out
    assert f"Store:   sqlite:{agent_process.store_path} (ok)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(("192.", "203."))}
    assert rows["192.0.2.100"] == ["default", "worker1"]
    assert rows["203.0.113.10"][:2] == ["default", "<unassigned:"]


def test_delete_and_errors(agent_process):
    seeded(agent_process)
    # A gateway in use is deleted; the IPs its policies use are retained (see the agent API tests).
    r = ctl(agent_process, "delete", "gateway", "default")
    assert (r.returncode, r.stdout.strip()) == (0, "gateway 'default' deleted"), r.stderr
    for name in ("egress", "far"):
        r = ctl(agent_process, "delete", "policy", name)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"policy {name!r} deleted"
    r = ctl(agent_process, "delete", "gateway", "default")
    assert (r.returncode, r.stderr.strip()) == (1, "egressctl: gateway 'default' not found")
    r = ctl(agent_process, "get", "gateways")
    assert r.stdout.strip() == "No gateways found."

    r = ctl(agent_process, "describe", "policy", "nope")
    assert (r.returncode, r.stderr.strip()) == (1, "egressctl: policy 'nope' not found")


def test_no_endpoint_or_no_agent(tmp_path):
    r = ctl(None, "get", "gateways")
    assert r.returncode == 1 and "set EGRESS_ENDPOINT" in r.stderr
    r = subprocess.run(
        [*ctl_command(), "--endpoint", f"unix://{tmp_path}/none.sock", "status"], capture_output=True, text=True
    )
    assert r.returncode == 1
    assert r.stderr.startswith(f"egressctl: cannot reach egress-agent at unix://{tmp_path}/none.sock: is it running?")
    assert len(r.stderr.strip().splitlines()) == 1
