"""Fail static, in the kernel: etcd goes away for everyone and comes back; no floating IP leaves its holder.

The lab (network namespaces, one real egress-agent per node, the kernel
datapath) with its etcd killed -9 for longer than two lease TTLs, then
restarted. A poller reads every node's uplink addresses every 20 ms
throughout: at every poll each floating IP is on its holder and only there.
"""

from __future__ import annotations

import os
import time

import pytest

from egress_api import models
from helpers.agent import wait_for
from helpers.agent_lab import AgentLab, KernelPoller, eventually

pytestmark = pytest.mark.kernel

FIPS = ["192.0.2.100", "192.0.2.101"]
LEASE_TTL = 2.0  # the agents' default (cluster/membership.py)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("kernel fault tests need root (network namespaces, eBPF, nftables): run them as root")
    tag = os.environ.get("EGRESS_TEST_NS_TAG", "eg")
    lab = AgentLab(tmp_path_factory.mktemp("faultlab") / "run", workers=3, masters=0, prefix=tag + "f-")
    try:
        yield lab
    finally:
        lab.close()


def all_serving(lab: AgentLab, nodes: list[str]) -> bool:
    for n in nodes:
        with lab.client(n, timeout=2) as c:
            try:
                if c.health().status != "SERVING":
                    return False
            except Exception:
                return False
    return True


def test_etcd_gone_for_everyone_and_back_never_removes_a_floating_ip(lab):
    nodes = [n.name for n in lab.state.nodes()]
    with lab.client() as c:
        c.create_gateway(models.Gateway(name="default", floating_ips=FIPS))
    holders = wait_for(lambda: (lambda h: h if all(h.values()) else None)({ip: lab.holder(ip) for ip in FIPS}),
                       timeout=10, what="both IPs assigned")
    for ip, node in holders.items():
        eventually(lambda ip=ip, node=node: ip in lab.floating_ips_on(node), True, timeout=10)

    with KernelPoller(lab, nodes) as poller:
        time.sleep(0.5)
        lab.etcd_stop()
        time.sleep(2 * LEASE_TTL + 0.5)  # every session is lost for longer than its TTL
        lab.etcd_start()
        eventually(lambda: all_serving(lab, nodes), True, timeout=20)
        time.sleep(LEASE_TTL + 0.5)  # past the renewals and the controller's first passes after the outage
    assert len(poller.polls) > 100, "the poller was starved"
    assert poller.violations(holders) == []
    assert {ip: lab.holder(ip) for ip in FIPS} == holders  # no assignment changed either
