"""The default deployment: one node, the embedded store, the kernel datapath, in a namespace of its own."""

from __future__ import annotations

import subprocess

import pytest

from egress_api import models
from helpers.agent import AgentProcess, agent_command, wait_for
from helpers.lab import PREFIX

pytestmark = pytest.mark.kernel

NS = PREFIX + "standalone"
FIP = "192.0.2.100"


@pytest.fixture
def node_ns():
    """A namespace with an uplink eth0 at 192.0.2.11/24 (a veth whose peer stays in the namespace)."""
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)  # left over by a crashed run
    subprocess.run(["ip", "netns", "add", NS], check=True)

    def run(*argv: str) -> str:
        return subprocess.run(["ip", "netns", "exec", NS, *argv], check=True, capture_output=True, text=True).stdout

    run("ip", "link", "set", "lo", "up")
    run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    run("ip", "addr", "add", "192.0.2.11/24", "dev", "eth0")
    run("ip", "link", "set", "eth0", "up")
    run("ip", "link", "set", "peer0", "up")
    try:
        yield run
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def test_standalone_agent_programs_its_namespace_and_cleans_up(tmp_path, node_ns):
    run = node_ns
    root_tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    agent = AgentProcess(tmp_path, netns=NS, extra_args=[
        "--interface", "eth0", "--pod-cidr", "10.244.1.0/24", "--datapath", "kernel"])
    with agent:
        agent.start()
        c = agent.client
        c.create_gateway(models.Gateway(name="default", floating_ips=[FIP]))
        c.create_policy(models.Policy.model_validate({
            "name": "egress",
            "egress": [{"namespace_selector": {"match_labels": {"user": "alice"}}}],
            "destination_cidrs": ["198.51.100.0/24"],
            "egress_source_ip": FIP,
        }))
        wait_for(lambda: f"{FIP}/32" in run("ip", "-br", "addr", "show", "eth0"), what="the floating IP on eth0")
        # No pod is selected, so no selection group has a SNAT map yet; the held IP's counter is there.
        wait_for(lambda: f'{FIP} : "snat_{FIP.replace(".", "_")}"' in run("nft", "list", "table", "inet", "egress"),
                 what="the SNAT counter of the held IP")
        assert c.describe_policy("egress").holder == "worker1"

        c.delete_policy("egress")
        c.delete_gateway("default")
        wait_for(lambda: FIP not in run("ip", "-br", "addr", "show", "eth0"), what="the floating IP released")

    out = run(*agent_command(), "--cleanup", "--interface", "eth0")
    assert "removed the egress datapath" in out
    assert "egress" not in run("nft", "list", "tables")
    # Everything happened inside the namespace: the root namespace's ruleset is as it was.
    assert subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout == root_tables
