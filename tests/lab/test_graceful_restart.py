"""Restarting agents costs no traffic and moves nothing: SIGTERM (`systemctl restart`, upgrades) and a
crash (kill -9, restarted by systemd), whose node stays alive and refuses the probes meanwhile.

alice's frontend fe2 on worker2 leaves through worker1, which holds the floating IP: worker2's eBPF
classifier steers it, worker1's nftables SNAT it. With fe2 pinging the external host every 10 ms, the
holder's agent and then the steering node's agent are restarted. Every probe must be answered, the
floating IP must stay on worker1 at every poll of the kernels, and no FloatingIPMoved event may fire.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from egress_api import models
from egress_lab import agents, build, labstate, topology as T
from helpers.agent_lab import KernelPoller, eventually

pytestmark = pytest.mark.kernel

FIP = "192.0.2.100"


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
def test_restarting_the_holder_and_the_steering_node_loses_no_probe(clean_lab, kill):
    with clean_lab.client() as c:
        c.create_gateway(models.Gateway(name="default", floating_ips=[FIP]))
        c.create_policy(models.Policy.model_validate({
            "name": "egress", "egress_source_ip": FIP, "destination_cidrs": ["198.51.100.0/24"],
            "egress": [{"namespace_selector": {"match_labels": {"user": "alice"}},
                        "pod_selector": {"match_labels": {"role": "frontend"}}}]}))
    eventually(lambda: clean_lab.holder(FIP), "worker1")
    eventually(lambda: clean_lab.seen_as("fe2"), FIP)
    st = labstate.require()
    pids = {n: st.processes[agents.agent_key(n)] for n in ("worker1", "worker2")}

    ping = subprocess.Popen(["ip", "netns", "exec", T.pod_ns("fe2"), "ping", "-D", "-n", "-i", "0.01", T.EXT_HOST_IP],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with KernelPoller(clean_lab, ["worker1", "worker2", "worker3", "master1"]) as poller:
            time.sleep(0.5)
            took = {n: build.agent_restart(n, kill=kill) for n in ("worker1", "worker2")}  # then the same flags
            time.sleep(0.5)
    finally:
        ping.send_signal(2)  # SIGINT: ping prints its summary
        out = ping.communicate(timeout=10)[0]
    sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    assert sent > 100 and received == sent, f"{sent - received} of {sent} probes lost:\n{out[-1500:]}"
    answered = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
    gap = max(b - a for a, b in zip(answered, answered[1:]))
    assert poller.violations({FIP: "worker1"}) == []
    assert all(labstate.require().processes[agents.agent_key(n)] != pid for n, pid in pids.items())
    assert all(t < 30 for t in took.values()), took

    with clean_lab.client("worker3") as c:
        assert [e for e in c.list_events("gateway", "default") if e.reason == "FloatingIPMoved"] == []
        assert {n.name: n.state for n in c.list_nodes()} == dict.fromkeys(["master1", "worker1", "worker2", "worker3"], "Up")
        # The restarted nodes applied everything again: the policy is Ready, programmed on all four nodes.
        ready = eventually(lambda: {x.type: (x.status, x.reason) for x in c.describe_policy("egress").conditions},
                           {"Ready": ("True", "Ready"), "IPAssigned": ("True", "Assigned"),
                            "Programmed": ("True", "Applied")})
        assert ready and "applied on every Up node (4)" in c.describe_policy("egress").conditions[2].message
    assert clean_lab.seen_as("fe2") == FIP
    log = agents.log_path("worker1").read_text(errors="replace")
    if not kill:
        assert "restarting; the cluster keeps its floating IPs" in log
    assert "at start: no longer assigned" not in log  # adopted, not released and taken again
    print(f"restart ({'kill -9' if kill else 'SIGTERM'}): {sent} probes at 10 ms, {received} answered, longest gap {gap * 1000:.0f} ms; agents healthy after "
          + ", ".join(f"{n} {t:.2f}s" for n, t in took.items()))
