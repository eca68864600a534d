"""`egress-lab node label`: lab nodes carry labels (their agents' --config node_labels, applied by SIGHUP), and a
gateway's node_selector puts its floating IP on a selected node's uplink, moving it once when that node is
relabelled: live, the agent keeps running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from egress_api import models
from helpers.agent import wait_for

pytestmark = pytest.mark.kernel

CLI = str(Path(sys.executable).with_name("egress-lab"))


def label(node: str, *pairs: str) -> str:
    r = subprocess.run([CLI, "node", "label", node, *pairs], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def agent_pid(node: str) -> int:
    from egress_lab import agents, labstate

    return labstate.require().processes[agents.agent_key(node)]


def test_relabel_moves_the_floating_ip_between_uplinks(clean_lab):
    lab = clean_lab
    pids = {n: agent_pid(n) for n in ("worker2", "worker3")}
    try:
        assert label("worker2", "egress=yes") == "node worker2: egress=yes\n"
        label("worker3", "egress=yes")
        with lab.client() as c:
            assert c.get_node("worker2").labels == {"egress": "yes"}
            c.create_gateway(models.parse("gateway", {"name": "default", "floating_ips": ["192.0.2.100"],
                                                      "node_selector": {"match_labels": {"egress": "yes"}}}))
        # worker1 holds nothing and is a worker, but is not selected: worker2 (by name) takes it.
        wait_for(lambda: "192.0.2.100" in lab.floating_ips_on("worker2"), timeout=20, what="192.0.2.100 on worker2")
        label("worker2", "egress=no")
        wait_for(lambda: "192.0.2.100" in lab.floating_ips_on("worker3"), timeout=20, what="192.0.2.100 on worker3")
        assert "192.0.2.100" not in lab.floating_ips_on("worker2")
        assert "192.0.2.100" not in lab.floating_ips_on("worker1")
        assert lab.holder("192.0.2.100") == "worker3"
        with lab.client() as c:
            assert [e.reason for e in c.list_events("gateway", "default")].count("FloatingIPMoved") == 1
        assert {n: agent_pid(n) for n in pids} == pids  # relabelled live: no agent restarted
    finally:
        label("worker2", "egress-")  # kubectl's removal
        label("worker3", "egress=-")
