"""An agent on an etcd that requires TLS client certificates: --etcd-ca / --etcd-cert / --etcd-key end to end."""

from __future__ import annotations

import pytest

from egress_api import models
from helpers.agent import AgentProcess, wait_for
from helpers.etcd import free_port, make_cluster, make_tls

pytestmark = pytest.mark.etcd


@pytest.fixture
def tls_etcd(tmp_path):
    tls = make_tls(tmp_path / "pki")
    cluster = make_cluster(tmp_path / "etcd", size=1, tls=tls)
    try:
        yield cluster.start()
    finally:
        cluster.close()


def test_agent_on_a_tls_etcd_serves_writes_and_reads(tmp_path, tls_etcd):
    tls = tls_etcd.tls
    assert tls_etcd.store_url.startswith("etcd:https://127.0.0.1:")
    agent = AgentProcess(tmp_path / "worker1", node="worker1", extra_args=[
        "--store", tls_etcd.store_url, "--listen", f"127.0.0.1:{free_port()}", "--datapath", "off",
        "--etcd-ca", tls["ca"], "--etcd-cert", tls["cert"], "--etcd-key", tls["key"]])
    try:
        agent.start(timeout=30)
        # Registered under its lease and elected over TLS.
        wait_for(lambda: agent.client.health().leader == "worker1", what="the lone agent to lead")
        assert agent.client.get_node("worker1").state == "Up"

        ips = ["192.0.2.100", "192.0.2.101"]
        created = agent.client.create_gateway(models.Gateway(name="default", floating_ips=ips))
        got = agent.client.get_gateway("default")
        assert got.obj.floating_ips == ips
        assert got.resource_version == created.resource_version
        wait_for(lambda: agent.client.gateway_status("default").floating_ips == dict.fromkeys(ips, "worker1"),
                 what="the leader's assignment written and read over TLS")
    finally:
        agent.close()
