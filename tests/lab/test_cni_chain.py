"""Pods made through the real CNI chain (Debian ptp + host-local, then egress-cni), exec'd as a runtime does.

The seed's scenario, no leak at pod start (and proof that the check would see
one if the wait were bypassed), relabelling, and 50 pods started at once.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from egress_api import models
from egress_lab import agents, cni, labstate, netns, pods, topology as T
from helpers.agent_lab import eventually

pytestmark = pytest.mark.kernel

FIP = "192.0.2.100"
NODE_IP = {"worker1": "192.0.2.11", "worker2": "192.0.2.12", "worker3": "192.0.2.13"}
SEED_POLICY = {  # the seed's EgressNATPolicy: alice's and paul's frontends, to 198.51.100.0/24
    "name": "egress",
    "egress": [{"namespace_selector": {"match_labels": {"user": "alice"}}, "pod_selector": {"match_labels": {"role": "frontend"}}},
               {"namespace_selector": {"match_labels": {"user": "paul"}}, "pod_selector": {"match_labels": {"role": "frontend"}}}],
    "destination_cidrs": ["198.51.100.0/24"],
    "egress_source_ip": FIP,
}
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s.sendto(b"x", (sys.argv[1], 9))
    time.sleep(0.0005)
"""


@pytest.fixture
def seeded(clean_lab):
    with clean_lab.client() as c:
        c.create_gateway(models.Gateway(name="default", floating_ips=[FIP]))
        c.create_policy(models.Policy.model_validate(SEED_POLICY))
    eventually(lambda: clean_lab.seen_as("fe1"), FIP)
    return clean_lab


def test_the_seed_pods_come_through_the_chain_and_leave_as_the_seed_says(seeded):
    lab = seeded
    st = labstate.require()
    with lab.client() as c:
        stored = {f"{p.namespace}/{p.name}": p for p in c.list_pods()}
    for name in ("fe1", "fe2", "be1", "bob1", "paul1"):
        rec = st.pod(name)
        assert rec.wiring == "cni" and rec.interface.startswith("veth"), rec
        assert stored[f"{rec.namespace}/{name}"].interface == rec.interface  # the chain's name, not ours
    for pod in ("fe1", "fe2", "paul1"):  # every node converges on the new policy
        eventually(lambda: lab.seen_as(pod, timeout=3), FIP)
    assert lab.whoami("bob1", timeout=5) == NODE_IP["worker1"]  # not selected: its node's IP
    assert lab.whoami("be1", timeout=5) == NODE_IP["worker1"]
    assert lab.whoami("fe1", T.EXT2_HOST_IP, timeout=5) == NODE_IP["worker1"]  # outside destination_cidrs


def _capture(tmp_path: Path, start_pod) -> list[str]:
    """Source IPs the external host saw from a pod whose first process sends from its first instant."""
    cap = tmp_path / "ext.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", T.ext_ns(), "tcpdump", "-i", "eth0", "-nn", "-U", "-w", str(cap),
                             "udp port 9"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in dump.stderr.readline()
        start_pod().wait(timeout=20)
    finally:
        time.sleep(0.2)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=5)
    seen = subprocess.run(["tcpdump", "-nn", "-r", str(cap)], capture_output=True, text=True).stdout
    return re.findall(r"IP (\d+\.\d+\.\d+\.\d+)\.\d+ > ", seen)


def _sender(pod_ns: str) -> subprocess.Popen:
    """The pod's first process; returns once it is sending."""
    proc = subprocess.Popen(["ip", "netns", "exec", pod_ns, sys.executable, "-c", SENDER, T.EXT_HOST_IP, "1.5"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_no_packet_with_the_node_ip_at_pod_start_and_a_bypassed_wait_is_caught(seeded, tmp_path):
    lab = seeded
    senders = []

    def through_the_chain():
        lab.add_pod("first", "worker1", "alice", role="frontend",
                    at_start=lambda st, pod: senders.append(_sender(T.pod_ns(pod.name))))
        return senders[0]

    try:
        sources = _capture(tmp_path, through_the_chain)
    finally:
        lab.delete_pod("first")
    assert len(sources) > 100
    assert set(sources) == {FIP}, f"leaked with another source: {set(sources) - {FIP}}"

    # Control: the same pod with the wait bypassed -- the chain without egress-cni, the agent told
    # only after the pod's first process started (as a watcher-only design would) -- must be caught.
    spec = lab.node("worker1")
    chain = cni.conflist(spec)
    chain["plugins"] = chain["plugins"][:1]
    pod_ns = T.pod_ns("bypass")
    netns.create(pod_ns)

    def bypassing_the_wait():
        result = cni.add(spec, chain, "bypass", pod_ns, "alice", "bypass", {})
        sender = _sender(pod_ns)
        with lab.client() as c:
            c.upsert_pod(models.Pod(name="bypass", namespace="alice", node="worker1", ip=cni.pod_ip(result),
                                    interface=cni.host_interface(result), labels={"role": "frontend"}))
        return sender

    try:
        leaked = _capture(tmp_path, bypassing_the_wait)
    finally:
        cni.delete(spec, chain, "bypass", pod_ns, "alice", "bypass")
        netns.remove(pod_ns)
        with lab.client() as c:
            c.delete_pod("alice/bypass")
    assert NODE_IP["worker1"] in leaked, "the capture must see the leak a bypassed wait causes"


def test_check_sees_a_missing_classifier_until_the_agent_attaches_it_again(clean_lab):
    lab = clean_lab
    pods.check("fe1")
    pod = labstate.require().pod("fe1")
    spec = lab.node(pod.node)
    log = agents.log_path(pod.node)

    def reattached() -> int:
        return log.read_text(errors="replace").count(f"the egress classifier on {pod.interface} had been removed")

    for _ in range(5):  # the agent's resync (every 2 s) may re-attach between the removal and the CHECK
        before = reattached()
        lab.run(spec.netns, f"tc filter del dev {pod.interface} ingress")
        try:
            pods.check("fe1")
        except cni.CniFailed as err:
            assert re.search(f"code 101.*classifier is not attached to {pod.interface}", str(err)), err
            break
        assert reattached() > before, "CHECK passed without a classifier"
    else:
        pytest.fail("the resync re-attached before every CHECK: cannot see CHECK fail")
    # The agent's next resync attaches it again on its own: until then that pod's traffic would leak.
    eventually(lambda: "egress_steer" in lab.run(spec.netns, f"tc filter show dev {pod.interface} ingress"), True,
               timeout=5)
    pods.check("fe1")
    assert reattached() >= 1
    # As a runtime would: re-create the pod (a new interface, attached before ADD returns).
    lab.delete_pod("fe1")
    lab.add_pod("fe1", pod.node, pod.namespace, **pod.labels)
    pods.check("fe1")
    assert "egress_steer" in lab.run(spec.netns, f"tc filter show dev {labstate.require().pod('fe1').interface} ingress")


def test_a_relabelled_pod_starts_and_stops_being_selected(seeded):
    lab = seeded
    assert lab.whoami("be1") == NODE_IP["worker1"]
    lab.label_pod("be1", role="frontend")
    try:
        eventually(lambda: lab.seen_as("be1"), FIP)
    finally:
        lab.label_pod("be1", role="backend")
    eventually(lambda: lab.seen_as("be1"), NODE_IP["worker1"])


def test_fifty_pods_started_concurrently_through_the_chain_are_all_correct(seeded):
    lab = seeded
    names = [f"burst{i}" for i in range(50)]
    nodes = ("worker1", "worker2", "worker3")
    role = {n: "frontend" if i % 2 == 0 else "backend" for i, n in enumerate(names)}
    node = {n: nodes[i % 3] for i, n in enumerate(names)}
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            list(pool.map(lambda n: lab.add_pod(n, node[n], "alice", role=role[n]), names))
        st = labstate.require()
        ips = [st.pod(n).ip for n in names]
        assert len(set(ips)) == 50 and all(ip.startswith("10.244.") for ip in ips)
        with lab.client() as c:
            stored = {p.name: p for p in c.list_pods() if p.name.startswith("burst")}
        assert {n: (p.ip, p.interface) for n, p in stored.items()} == \
            {n: (st.pod(n).ip, st.pod(n).interface) for n in names}
        with ThreadPoolExecutor(max_workers=8) as pool:
            seen = dict(zip(names, pool.map(lambda n: lab.seen_as(n, timeout=3), names)))
        want = {n: FIP if role[n] == "frontend" else NODE_IP[node[n]] for n in names}
        assert seen == want
    finally:
        with ThreadPoolExecutor(max_workers=50) as pool:
            list(pool.map(lambda n: lab.delete_pod(n) if n in labstate.require().pods else None, names))
    with lab.client() as c:
        assert not [p for p in c.list_pods() if p.name.startswith("burst")]
    for spec in (lab.node(n) for n in nodes):
        links = lab.run(spec.netns, "ip -o link")
        routes = lab.run(spec.netns, "ip route")
        assert not any(st.pod(n).interface in links for n in names if node[n] == spec.name)
        assert not any(f"{st.pod(n).ip} " in routes for n in names if node[n] == spec.name)
