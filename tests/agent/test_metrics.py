"""`egress-agent --metrics-listen`: a real agent's /metrics, scraped over HTTP, follows what it does."""

from __future__ import annotations

import socket
import subprocess

import pytest

from egress_api import errors, models
from egress_api.v1 import egress_pb2 as pb
from helpers.agent import agent_command, start_agent, wait_for
from helpers.etcd import free_port
from helpers.metrics import scrape
from seed_objects import GW, policy

#: Every family an agent exports, with or without a datapath (families without data have no samples).
FAMILIES = {
    "egress_floating_ip_holder", "egress_floating_ip_assigned", "egress_floating_ip_moves", "egress_leader_changes",
    "egress_leader", "egress_api_requests", "egress_api_request_duration_seconds",
    "egress_policy_steered_packets", "egress_policy_steered_bytes", "egress_policy_dropped_packets",
    "egress_snat_translated_packets", "egress_snat_translated_bytes", "egress_datapath_apply_duration_seconds",
    "egress_snat_connections", "egress_snat_port_usage_ratio", "egress_datapath_classifier_reattached",
    "egress_garp_repeats_sent",
    "egress_store_healthy", "egress_store_commit_duration_seconds",
}


@pytest.fixture
def metered(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    with start_agent(tmp_path, extra_args=["--metrics-listen", address]) as agent:
        agent.metrics_address = address
        yield agent


def test_every_family_is_exported_and_holders_follow_the_assignments(metered):
    c = metered.client
    c.create_gateway(GW)
    c.create_policy(policy())
    holders = lambda m: {s.labels["ip"]: s.labels["node"] for s in m.samples("egress_floating_ip_holder")}  # noqa: E731
    m = scrape(metered.metrics_address)
    missing = FAMILIES - set(m.families)
    assert not missing, f"not exported: {sorted(missing)}\n{m.text}"
    # Its own registry: the process collector, but not the default registry's Python GC/platform families.
    assert all(name.startswith(("egress_", "process_")) for name in m.families), sorted(m.families)
    assert "process_resident_memory_bytes" in m.families
    assert not any(name.endswith("_created") for f in m.families.values() for name in (s.name for s in f.samples))

    m = wait_for(lambda: (lambda m: m if len(holders(m)) == 3 else None)(scrape(metered.metrics_address)),
                 what="the three floating IPs to have a holder")
    assert holders(m) == {ip: "worker1" for ip in GW.floating_ips}
    assert all(s.labels["gateway"] == "default" for s in m.samples("egress_floating_ip_holder"))
    assert m.value("egress_floating_ip_assigned") == 3
    assert m.value("egress_store_healthy") == 1
    assert m.value("egress_leader") == 1  # standalone: always the leader
    assert m.value("egress_store_commit_duration_seconds_count", result="ok") >= 3  # node, gateway, policy, ...
    assert m.value("egress_floating_ip_moves_total") == 0

    # The IP leaves the gateway: its series goes with it (computed from the store at scrape time).
    c.update_gateway(models.Gateway(name="default", floating_ips=GW.floating_ips[:2]))
    wait_for(lambda: "192.0.2.102" not in holders(scrape(metered.metrics_address)), what="the holder series to go")


def test_api_requests_are_counted_by_method_and_code(metered):
    c = metered.client
    address = metered.metrics_address
    before = scrape(address)
    c.create_gateway(GW)
    with pytest.raises(errors.AlreadyExists):
        c.create_gateway(GW)
    with pytest.raises(errors.NotFound):
        c.get_gateway("nope")
    for _ in range(3):
        c.list_gateways()
    with pytest.raises(errors.InvalidArgument):
        c.call("CreateGateway", pb.Gateway(name="Bad_Name", floating_ips=[]))
    m = scrape(address)

    def moved(method: str, code: str) -> float:
        name = "egress_api_requests_total"
        return m.value(name, method=method, code=code) - before.value(name, method=method, code=code)

    assert moved("CreateGateway", "OK") == 1
    assert moved("CreateGateway", "ALREADY_EXISTS") == 1
    assert moved("CreateGateway", "INVALID_ARGUMENT") == 1
    assert moved("GetGateway", "NOT_FOUND") == 1
    assert moved("ListGateways", "OK") == 3
    latency = "egress_api_request_duration_seconds_count"
    assert m.value(latency, method="ListGateways") - before.value(latency, method="ListGateways") == 3
    # The histogram's buckets are cumulative and end with +Inf = count.
    buckets = m.samples("egress_api_request_duration_seconds_bucket", method="ListGateways")
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == m.value(latency, method="ListGateways")


def test_metrics_are_off_by_default_and_a_bad_address_is_refused(tmp_path):
    # Off by default: the agent logs no metrics endpoint.
    with start_agent(tmp_path / "plain") as agent:
        agent.client.health()
        assert "Prometheus" not in agent.log()

    bad = subprocess.run([*agent_command(), "--node", "w1", "--node-ip", "192.0.2.11/24", "--socket",
                          str(tmp_path / "a.sock"), "--store", f"sqlite:{tmp_path / 's.db'}",
                          "--metrics-listen", "9100"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert "--metrics-listen 9100" in bad.stderr and "host:port" in bad.stderr

    # A taken port: the agent does not start (exit 1) and says why.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([*agent_command(), "--node", "w1", "--node-ip", "192.0.2.11/24", "--socket",
                              str(tmp_path / "b.sock"), "--store", f"sqlite:{tmp_path / 't.db'}",
                              "--metrics-listen", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in out.stderr


def test_metrics_listen_from_the_config_file(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    conf = tmp_path / "agent.yaml"
    conf.write_text(f"metrics_listen: {address}\n")
    with start_agent(tmp_path / "agent", extra_args=["--config", str(conf)]) as agent:
        agent.client.list_gateways()
        assert scrape(address).value("egress_api_requests_total", method="ListGateways", code="OK") == 1
