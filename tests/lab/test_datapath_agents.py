"""The agents' datapath in the lab: no leak at pod start, network policy first, two gateways, node death, cleanup."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egress_api import models
from egress_lab import agents, labstate, topology as T
from helpers.agent_lab import eventually

pytestmark = pytest.mark.kernel

FIP, FIP2 = "192.0.2.100", "192.0.2.101"
W1 = "192.0.2.11"
CLI = str(Path(sys.executable).with_name("egress-lab"))


def seed(c, ips=(FIP,), **kw) -> None:
    c.create_gateway(models.Gateway(name="default", floating_ips=list(ips)))
    c.create_policy(
        models.Policy.model_validate(
            {
                "name": kw.get("name", "egress"),
                "egress": kw.get("egress", [{"namespace_selector": {"match_labels": {"user": "alice"}},
                                             "pod_selector": {"match_labels": {"role": "frontend"}}}]),
                "destination_cidrs": ["198.51.100.0/24"],
                "egress_source_ip": ips[0],
            }
        )
    )


SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[2])
ready = False
while time.monotonic() < end:
    try:
        s.sendto(b"x", (sys.argv[1], 9))
    except OSError:
        pass  # no route while the pod's link is still down
    if not ready:
        print("ready", flush=True)
        ready = True
    time.sleep(0.0005)
"""


def test_no_leak_at_pod_start(clean_lab, tmp_path):
    lab = clean_lab
    with lab.client() as c:
        seed(c)
    eventually(lambda: lab.seen_as("fe1"), FIP)
    cap = tmp_path / "ext.pcap"
    dump = subprocess.Popen(
        ["ip", "netns", "exec", T.ext_ns(), "tcpdump", "-i", "eth0", "-nn", "-U", "-w", str(cap), "udp port 9"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    senders = []
    try:
        assert "listening on" in dump.stderr.readline()

        def start_sending(st, pod):
            # The pod's first process sends from its first instant (the chain's ADD has just returned).
            senders.append(subprocess.Popen(["ip", "netns", "exec", T.pod_ns(pod.name), sys.executable, "-c", SENDER,
                                             T.EXT_HOST_IP, "1.5"], stdout=subprocess.PIPE, text=True))
            assert senders[0].stdout.readline().strip() == "ready"

        lab.add_pod("newfe", "worker1", "alice", at_start=start_sending, role="frontend")
        senders[0].wait(timeout=10)
    finally:
        time.sleep(0.2)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=5)
        lab.delete_pod("newfe") if "newfe" in labstate.require().pods else None
    seen = subprocess.run(["tcpdump", "-nn", "-r", str(cap)], capture_output=True, text=True).stdout
    sources = re.findall(r"IP (\d+\.\d+\.\d+\.\d+)\.\d+ > ", seen)
    assert len(sources) > 100, seen[-500:]
    assert set(sources) == {FIP}, f"leaked with another source: {set(sources) - {FIP}}"


def test_network_policy_comes_first_and_two_gateways(clean_lab):
    lab = clean_lab
    with lab.client() as c:
        seed(c, ips=(FIP, FIP2))
        c.create_policy(models.Policy.model_validate({
            "name": "bob", "egress": [{"namespace_selector": {"match_labels": {"user": "bob"}}}],
            "destination_cidrs": ["198.51.100.0/24"], "egress_source_ip": FIP2,
        }))
    eventually(lambda: lab.seen_as("bob1"), FIP2)
    assert lab.whoami("fe1") == FIP
    holders = {lab.holder(FIP), lab.holder(FIP2)}
    assert len(holders) == 2, "the two floating IPs are spread over two nodes"
    subprocess.run([CLI, "deny", "fe1", "198.51.100.10/32"], check=True, capture_output=True, env=lab.env)
    try:
        assert lab.seen_as("fe1") == ""  # dropped by the node's filter, not sent to the gateway
    finally:
        subprocess.run([CLI, "deny", "fe1", "198.51.100.10/32", "--remove"], check=True, capture_output=True, env=lab.env)
    assert lab.whoami("fe1") == FIP


def test_match_expressions_select_in_the_kernel(clean_lab):
    """NotIn and DoesNotExist select by what a pod does not carry: alice's and bob's pods except backends."""
    lab = clean_lab
    with lab.client() as c:
        seed(c, egress=[{
            "namespace_selector": {"match_expressions": [{"key": "user", "operator": "In", "values": ["alice", "bob"]}]},
            "pod_selector": {"match_expressions": [{"key": "role", "operator": "NotIn", "values": ["backend"]},
                                                   {"key": "tier", "operator": "DoesNotExist"}]},
        }])
    eventually(lambda: lab.seen_as("bob1"), FIP)
    assert {pod: lab.whoami(pod) for pod in ("fe1", "fe2", "be1", "paul1")} == {
        "fe1": FIP, "fe2": FIP, "be1": W1, "paul1": "192.0.2.13"}
    lab.label_pod("fe2", tier="web")  # now it has the label that must not exist
    try:
        eventually(lambda: lab.seen_as("fe2"), "192.0.2.12")
    finally:
        lab.label_pod("fe2", tier="-")
    eventually(lambda: lab.seen_as("fe2"), FIP)


def test_node_stop_moves_the_ip_and_cleanup_removes_everything(clean_lab):
    lab = clean_lab
    with lab.client() as c:
        seed(c)
    eventually(lambda: lab.seen_as("fe1"), FIP)
    holder = lab.holder(FIP)
    # A selected pod that is not on the holder keeps probing through the move.
    pod = next(p for p in ("fe1", "fe2", "paul1") if lab.pod(p).node != holder)
    if holder == "worker1":
        pod = "fe2"
    status = subprocess.run([CLI, "status"], check=True, capture_output=True, text=True, env=lab.env).stdout
    assert re.search(rf"gateway default: {re.escape(FIP)} held by {holder}", status)
    assert re.search(rf"{holder} .* running \(\d+\) .*{re.escape(FIP)}", status)

    # An established flow (one ICMP echo id, one conntrack entry) must survive the move too.
    ping = subprocess.Popen(["ip", "netns", "exec", T.pod_ns(pod), "ping", "-D", "-n", "-i", "0.05", T.EXT_HOST_IP],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    lab.node_stop(holder)
    try:
        new = eventually(lambda: lab.holder(FIP) not in ("", holder), True, timeout=15) and lab.holder(FIP)
        moved_at = time.time()
        assert lab.whoami(pod) == FIP  # still the floating IP, now from another node
        time.sleep(1.0)
        ping.terminate()
        replies = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", ping.communicate()[0], re.M)]
        assert [t for t in replies if t > moved_at + 0.5], "the established ping flow did not resume after the move"
        spec = lab.node(holder)
        # What the killed agent left in its node's kernel, and `egress-agent --cleanup` removing it.
        left = lab.run(spec.netns, "nft list tables; ip rule")
        assert "inet egress" in left
        agents.cleanup_node(spec)
        after = lab.run(spec.netns, "nft list tables; ip rule; ip -4 addr show dev eth0; tc filter show dev eth0 ingress")
        assert "inet egress" not in after and "fwmark" not in after and FIP not in after
        for p in labstate.require().pods.values():
            if p.node == holder:
                assert "egress_steer" not in lab.run(spec.netns, f"tc filter show dev {p.host_interface} ingress")
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
        lab.node_start(holder)
    assert lab.holder(FIP) == new  # no flapping back: the IP stays where it moved
    status = subprocess.run([CLI, "status"], check=True, capture_output=True, text=True, env=lab.env).stdout
    assert re.search(rf"{holder} .* running", status)
    assert lab.whoami(pod) == FIP
