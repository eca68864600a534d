"""Writes whose outcome is unknown: Terraform never loses an object the agent kept.

The agent is paused with SIGSTOP in the middle of a real apply (its requests
queue up and it applies them when resumed with SIGCONT), which is how the
issue's "48 policies on the agent, 44 in state" happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from egress_api import models
from egress_provider.resources.lifecycle import request_id
from helpers.agent import ctl_command
from helpers.terraform import Terraform, find_diagnostic

pytestmark = pytest.mark.terraform


def many_policies(n: int, create_timeout: str = "") -> str:
    """A gateway with n floating IPs and n policies p0..p{n-1}, one source IP each: n + 1 resources.

    Written out literally (no count): values built from count.index reach a provider as
    refined unknowns at validation, which is not what these tests are about.
    """
    timeouts = f'  timeouts {{\n    create = "{create_timeout}"\n  }}\n' if create_timeout else ""
    ips = [f"192.0.2.{100 + i}" for i in range(n)]
    out = ['provider "egress" {\n  timeout = 1\n}\n',
           'resource "egress_gateway" "gw" {\n  floating_ips = [' + ", ".join(f'"{ip}"' for ip in ips) + "]\n}\n"]
    for i, ip in enumerate(ips):
        out.append(f"""\
resource "egress_nat_policy" "p{i}" {{
  name = "p{i}"
  egress {{
    pod_selector {{ match_labels = {{ app = "a{i}" }} }}
  }}
  destination_cidrs = ["198.51.100.0/24"]
  egress_source_ip  = "{ip}"
{timeouts}  depends_on        = [egress_gateway.gw]
}}
""")
    return "\n".join(out)


def agent_names(client) -> set[str]:
    return {v.obj.name for v in client.list_policies()}


def state_names(tf: Terraform) -> set[str]:
    return {v["name"] for a, v in tf.state().items() if a.startswith("egress_nat_policy.")}


def apply_pausing_agent(tf: Terraform, agent, pause_s: float, after_policies: int) -> subprocess.CompletedProcess:
    """`terraform apply` during which the agent is stopped for `pause_s` once it holds `after_policies` policies."""
    proc = subprocess.Popen([*tf.core.argv, "apply", "-auto-approve", "-no-color", "-input=false"], cwd=tf.dir,
                            env=tf.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = agent.client
    try:
        deadline = time.monotonic() + 90
        while len(agent_names(client)) < after_policies:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the apply never got going"
            time.sleep(0.02)
        os.kill(agent.proc.pid, signal.SIGSTOP)
        time.sleep(pause_s)
    finally:
        os.kill(agent.proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_agent_paused_mid_apply_past_the_create_timeout_next_apply_adopts_what_it_kept(agent_process, tmp_path):
    """50 resources; creates time out after 3 s while the agent sleeps 8 s: outcome unknown, then adopted."""
    tf = Terraform(tmp_path, endpoint=agent_process.endpoint)
    tf.write(many_policies(49, create_timeout="3s"))
    first = apply_pausing_agent(tf, agent_process, pause_s=8, after_policies=5)
    output = first.stdout + first.stderr
    assert first.returncode == 1, output
    box = find_diagnostic(output, "Error: The outcome of create egress_nat_policy")
    assert "is unknown" in box and "the same request id" in box and "timeouts" in box, box
    assert "cannot reach egress-agent" not in output and "is it running?" not in output

    # The resumed agent applied writes Terraform has no record of (or none: both must end equal).
    kept_not_recorded = agent_names(agent_process.client) - state_names(tf)

    second = tf.apply()
    assert "already exists" not in second.output, second.output
    assert agent_names(agent_process.client) == state_names(tf) == {f"p{i}" for i in range(49)}
    tf.plan_is_empty()
    for name, values in ((v["name"], v) for a, v in tf.state().items() if a.startswith("egress_nat_policy.")):
        assert values["resource_version"] == agent_process.client.get_policy(name).resource_version
    print(f"objects the agent kept that the first apply did not record: {len(kept_not_recorded)}")


def test_agent_paused_shorter_than_the_timeout_is_resolved_within_the_apply(agent_process, tmp_path):
    """Each call gives up after 1 s, the agent sleeps 4 s: the same write is retried and answered once."""
    tf = Terraform(tmp_path, endpoint=agent_process.endpoint)
    tf.write(many_policies(12))
    res = apply_pausing_agent(tf, agent_process, pause_s=4, after_policies=2)
    output = res.stdout + res.stderr
    assert res.returncode == 0, output
    box = find_diagnostic(output, "Warning: The outcome of create egress_nat_policy", "was unknown; resolved")
    assert "a retry with the same request id was answered by" in box and "applied exactly once" in box, box
    assert agent_names(agent_process.client) == state_names(tf) == {f"p{i}" for i in range(12)}
    tf.plan_is_empty()


def test_next_apply_adopts_its_own_lost_write_silently_and_anything_else_only_with_a_warning(agent_process, tmp_path):
    """An object the agent kept from Terraform's own create is taken as the create's answer; an identical one
    someone else made is adopted too (what create_before_destroy of a fixed name needs), but with a warning."""
    c = agent_process.client
    tf = Terraform(tmp_path, endpoint=agent_process.endpoint)
    config = many_policies(2)
    gw = models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.101"])
    p0 = models.Policy(name="p0", egress=[{"pod_selector": {"match_labels": {"app": "a0"}}}],
                       destination_cidrs=["198.51.100.0/24"], egress_source_ip="192.0.2.100")
    # What a create that reached the agent but never answered leaves behind: the object, under Terraform's id.
    c.create_gateway(gw, request_id=request_id("create", "gateway", gw))
    c.create_policy(p0, request_id=request_id("create", "policy", p0))
    # p1 made by an operator with egressctl, identical to what Terraform would create.
    doc = ('kind: policy\nmetadata: {name: p1}\nspec: {egress: [{pod_selector: {match_labels: {app: a1}}}], '
           'destination_cidrs: [198.51.100.0/24], egress_source_ip: 192.0.2.101}\n')
    r = subprocess.run([*ctl_command(), "--endpoint", agent_process.endpoint, "apply", "-f", "-"], input=doc,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr

    tf.write(config)
    res = tf.apply()
    box = find_diagnostic(res.output, "Warning: Adopted the existing policy 'p1'")
    assert "If another Terraform configuration also manages it" in box
    assert "Adopted the existing policy 'p0'" not in res.output  # its own write: the answer it lost
    assert set(tf.state()) == {"egress_gateway.gw", "egress_nat_policy.p0", "egress_nat_policy.p1"}
    assert tf.state()["egress_nat_policy.p0"]["resource_version"] == c.get_policy("p0").resource_version
    tf.plan_is_empty()
