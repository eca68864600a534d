"""`egressctl apply -f` and `egressctl edit` (EDITOR is a small script) against a real agent."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from egress_api import models
from helpers.agent import ctl_command

SEED_STYLE = """\
kind: AnthosNetworkGateway
apiVersion: networking.gke.io/v1alpha1
metadata:
  name: default
spec:
  floatingIPs:
  - 192.0.2.100
  - 192.0.2.101
---
kind: EgressNATPolicy
apiVersion: networking.gke.io/v1alpha1
metadata:
  name: egress
spec:
  egress:
  - namespaceSelector:
      matchLabels:
        user: alice
    podSelector:
      matchLabels:
        role: frontend
  destinationCIDRs:
  - 198.51.100.0/24
  egressSourceIP: 192.0.2.100
"""


def ctl(endpoint: str, *args, stdin: str = "", env: dict | None = None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EGRESS_ENDPOINT")}
    full_env.update(env or {})
    return subprocess.run([*ctl_command(), "--endpoint", endpoint, *args], input=stdin, capture_output=True,
                          text=True, env=full_env, timeout=30)


def objects(client):
    return ({v.obj.name: (v.obj, v.resource_version) for v in client.list_gateways()},
            {v.obj.name: (v.obj, v.resource_version) for v in client.list_policies()})


def editor(tmp_path, body: str) -> str:
    """An $EDITOR: a script that edits the file it is given."""
    script = tmp_path / "editor.py"
    script.write_text(f"#!{sys.executable}\nimport sys\npath = sys.argv[1]\ntext = open(path).read()\n{body}\n"
                      "open(path, 'w').write(text)\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_apply_seed_style_yaml_then_json_update_is_idempotent(agent_process, tmp_path):
    c = agent_process.client
    f = tmp_path / "egress.yaml"
    f.write_text(SEED_STYLE)
    r = ctl(agent_process.endpoint, "apply", "-f", str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["gateway 'default' created", "policy 'egress' created"]
    gws, pols = objects(c)
    assert gws["default"][0].floating_ips == ["192.0.2.100", "192.0.2.101"]
    assert pols["egress"][0].egress[0].namespace_selector.match_labels == {"user": "alice"}

    r = ctl(agent_process.endpoint, "apply", "-f", str(f))  # again: nothing changes, versions stay
    assert r.stdout.splitlines() == ["gateway 'default' unchanged", "policy 'egress' unchanged"]
    assert objects(c) == (gws, pols)

    # JSON with Terraform's snake_case spelling, from stdin: an update in place.
    doc = [{"kind": "policy", "metadata": {"name": "egress"},
            "spec": {"egress": [{"pod_selector": {"match_labels": {"role": "frontend"}}}],
                     "destination_cidrs": ["203.0.113.0/24"], "egress_source_ip": "192.0.2.101"}}]
    r = ctl(agent_process.endpoint, "apply", "-f", "-", stdin=json.dumps(doc))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "policy 'egress' configured"
    p = c.get_policy("egress")
    assert (p.obj.destination_cidrs, p.obj.egress_source_ip) == (["203.0.113.0/24"], "192.0.2.101")
    assert p.resource_version > pols["egress"][1]


def test_apply_refuses_invalid_files_and_changes_nothing(agent_process, tmp_path):
    c = agent_process.client
    f = tmp_path / "egress.yaml"
    f.write_text(SEED_STYLE)
    assert ctl(agent_process.endpoint, "apply", "-f", str(f)).returncode == 0
    before = objects(c)
    cases = {
        # a bad value in the second document: the valid first one is not written either
        SEED_STYLE.replace("192.0.2.101", "192.0.2.102").replace("198.51.100.0/24", "198.51.100.0/33"):
            "(document 2): invalid policy 'egress': destination_cidrs.0: '198.51.100.0/33' is not a valid IPv4 CIDR",
        # a rule across objects, checked against the agent plus the file: one source IP, two policies
        SEED_STYLE + "---\n" + SEED_STYLE.split("---\n")[1].replace("name: egress", "name: twin"):
            "192.0.2.100 is already the egress_source_ip of policy 'egress'",
        "kind: Deployment\nmetadata: {name: x}\nspec: {}\n": "kind 'Deployment' is not one of",
        "kind: policy\nmetadata: {name: egress}\nspec: {egress: [{}], destination_cidrs: [198.51.100.0/24], "
        "egress_source_ip: 192.0.2.100, colour: blue}\n": "colour: unknown attribute",
        "kind: [unclosed\n": "not YAML or JSON",
        SEED_STYLE.split("---")[1].replace("name: egress", "name: egress\n  resourceVersion: 1"):
            "names resourceVersion 1, the agent has",
    }
    for text, message in cases.items():
        f.write_text(text)
        r = ctl(agent_process.endpoint, "apply", "-f", str(f))
        assert r.returncode == 1 and message in r.stderr, (message, r.stderr)
        assert "nothing was changed" in r.stderr, r.stderr
        assert objects(c) == before
    r = ctl(agent_process.endpoint, "apply", "-f", str(tmp_path / "missing.yaml"))
    assert r.returncode == 1 and "cannot read" in r.stderr


def test_edit_applies_with_the_resource_version_guard(agent_process, tmp_path):
    c = agent_process.client
    f = tmp_path / "egress.yaml"
    f.write_text(SEED_STYLE)
    assert ctl(agent_process.endpoint, "apply", "-f", str(f)).returncode == 0
    v0 = c.get_policy("egress").resource_version

    ed = editor(tmp_path, "text = text.replace('198.51.100.0/24', '203.0.113.0/24')")
    r = ctl(agent_process.endpoint, "edit", "policy", "egress", env={"EDITOR": ed})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "policy 'egress' edited"
    p = c.get_policy("egress")
    assert p.obj.destination_cidrs == ["203.0.113.0/24"] and p.resource_version > v0

    # Unchanged file: cancelled, nothing written.
    r = ctl(agent_process.endpoint, "edit", "policy", "egress", env={"EDITOR": "true"})
    assert r.stdout.strip() == "Edit cancelled, no changes made."
    assert c.get_policy("egress").resource_version == p.resource_version

    # Someone else writes while the editor is open: the edit is refused, their change stays.
    other = models.Policy(**{**p.obj.model_dump(), "destination_cidrs": ["198.51.100.0/25"]})
    ed = editor(tmp_path, f"""\
import subprocess
subprocess.run({[*ctl_command(), "--endpoint", agent_process.endpoint, "apply", "-f", "-"]!r}, check=True,
               input='kind: policy\\nmetadata: {{name: egress}}\\nspec: {json.dumps(other.model_dump(mode="json", exclude={"name"}, exclude_none=True))}\\n', text=True)
text = text.replace('203.0.113.0/24', '203.0.113.128/25')""")
    r = ctl(agent_process.endpoint, "edit", "policy", "egress", env={"EDITOR": ed})
    assert r.returncode == 1
    assert "someone changed it since it was read" in r.stderr and "Your edit is kept in" in r.stderr, r.stderr
    assert c.get_policy("egress").obj.destination_cidrs == ["198.51.100.0/25"]

    # An invalid edit: refused with the attribute, the object unchanged.
    before = c.get_policy("egress")
    ed = editor(tmp_path, "text = text.replace('egressSourceIP: 192.0.2.100', 'egressSourceIP: 192.0.2.999')")
    r = ctl(agent_process.endpoint, "edit", "policy", "egress", env={"EDITOR": ed})
    assert r.returncode == 1 and "egress_source_ip" in r.stderr and "nothing was changed" in r.stderr, r.stderr
    assert c.get_policy("egress") == before


def test_endpoint_list_fails_over_to_a_live_agent(agent_process, tmp_path):
    dead = f"unix://{tmp_path}/nobody.sock"
    r = ctl(f"{dead},{agent_process.endpoint}", "get", "gateways")
    assert r.returncode == 0, r.stderr
    r = ctl(f"{dead},unix://{tmp_path}/nobody2.sock", "get", "gateways")
    assert r.returncode == 1 and "cannot reach any egress-agent" in r.stderr, r.stderr
