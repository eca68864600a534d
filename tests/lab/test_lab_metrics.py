"""The lab agents' /metrics: packet counters follow real traffic, and applies are timed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from egress_api import models
from egress_lab import agents
from helpers.agent_lab import eventually
from helpers.metrics import Scrape

pytestmark = pytest.mark.kernel

FIP = "192.0.2.100"
REQUESTS = 5


def scrape(lab, node: str) -> Scrape:
    return Scrape(agents.metrics(lab.node(node)))


def test_packet_counters_follow_traffic_and_applies_are_timed(clean_lab):
    lab = clean_lab
    with lab.client() as c:
        c.create_gateway(models.Gateway(name="default", floating_ips=[FIP]))
        c.create_policy(models.Policy.model_validate({
            "name": "egress",
            "egress": [{"namespace_selector": {"match_labels": {"user": "alice"}},
                        "pod_selector": {"match_labels": {"role": "frontend"}}}],
            "destination_cidrs": ["198.51.100.0/24"],
            "egress_source_ip": FIP,
        }))
    eventually(lambda: lab.seen_as("fe1"), FIP)
    gw = lab.holder(FIP)
    # A selected pod on another node than the holder (fe1 on worker1, fe2 on worker2), so traffic crosses nodes.
    pod = next(p for p in ("fe1", "fe2") if lab.pod(p).node != gw)
    src = lab.pod(pod).node
    before_src, before_gw = scrape(lab, src), scrape(lab, gw)

    for _ in range(REQUESTS):
        assert lab.whoami(pod) == FIP
    after_src, after_gw = scrape(lab, src), scrape(lab, gw)

    def moved(before: Scrape, after: Scrape, name: str, **labels) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    # Each request is a TCP connection: at least SYN, request and FIN leave the pod.
    assert moved(before_src, after_src, "egress_policy_steered_packets_total", policy="egress") >= 3 * REQUESTS
    assert moved(before_src, after_src, "egress_policy_steered_bytes_total", policy="egress") > 0
    assert moved(before_gw, after_gw, "egress_snat_translated_packets_total", egress_ip=FIP) >= 3 * REQUESTS
    assert moved(before_gw, after_gw, "egress_snat_translated_bytes_total", egress_ip=FIP) > 0
    assert after_src.value("egress_policy_dropped_packets_total", policy="egress") == 0
    # Conntrack keeps each closed connection a while (TIME_WAIT), SNATed to the floating IP on the holder;
    # all went to one destination (the external host's port 80), far below its 64512 source ports.
    assert after_gw.value("egress_snat_connections", egress_ip=FIP) >= REQUESTS
    ratio = after_gw.value("egress_snat_port_usage_ratio", egress_ip=FIP)
    assert REQUESTS / 64512 <= ratio < 0.01
    assert not after_src.samples("egress_snat_connections")  # only the holder translates
    # Steering is counted where the pod runs: the holder's own selected pod sent nothing.
    assert moved(before_gw, after_gw, "egress_policy_steered_packets_total", policy="egress") == 0
    # The holder series names the node that answered, on every agent.
    assert {s.labels["node"] for s in after_src.samples("egress_floating_ip_holder", ip=FIP)} == {gw}
    for node in {src, gw}:
        assert scrape(lab, node).value("egress_datapath_apply_duration_seconds_count", result="ok") >= 1


def test_egress_lab_prints_a_nodes_metrics(clean_lab):
    cli = str(Path(sys.executable).with_name("egress-lab"))
    out = subprocess.run([cli, "node", "metrics", "worker2"], capture_output=True, text=True, timeout=30,
                         env=clean_lab.env)
    assert out.returncode == 0, out.stderr
    assert Scrape(out.stdout).value("egress_store_healthy") == 1
