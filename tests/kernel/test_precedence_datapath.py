"""Exclusions and priority in the kernel: what source IP the other end sees (issue #12).

A policy to 0.0.0.0/0 changes only traffic that leaves the cluster (pod-to-pod and
pod-to-service traffic keeps the pod's IP and is never steered); an excluded CIDR
leaves with the node IP; priority between overlapping policies decides the source IP
seen by 198.51.100.10, on the source node's classifier and the gateway's SNAT alike.
"""

from __future__ import annotations

import pytest

from egress_lab import topology as T
from helpers.lab import LabPolicy
from helpers.lab_services import pod_server, service

pytestmark = pytest.mark.kernel

EXT, EXT2 = "198.51.100.10", "203.0.113.10"
FIP, FIP2 = "192.0.2.100", "192.0.2.101"
W1 = "192.0.2.11"
SERVICE_CIDR = T.SERVICE_CIDR
SERVICE_IP = "10.244.200.10"


def test_a_policy_to_everything_leaves_pod_and_service_traffic_untouched(clean_lab):
    lab = clean_lab
    lab.service_cidrs = (SERVICE_CIDR,)
    lab.apply([LabPolicy("all", ("0.0.0.0/0",), FIP, "worker2", ("fe1",))])
    assert lab.whoami("fe1") == FIP  # leaving the cluster: the policy's IP
    with pod_server("paul1", lab.pod_ip("paul1")) as backend, service(lab.node("worker1").netns, SERVICE_IP, backend):
        steered = lab.datapath("worker1").counters().steered["all"].packets
        fe1 = lab.pod_ip("fe1")
        assert lab.whoami("fe1", backend) == fe1  # pod to pod (worker1 -> worker3): the pod's own IP
        assert lab.whoami("fe1", SERVICE_IP) == fe1  # pod to service: same
        assert lab.datapath("worker1").counters().steered["all"].packets == steered  # never steered


def test_an_excluded_cidr_leaves_with_the_node_ip(clean_lab):
    lab = clean_lab
    lab.apply([LabPolicy("all", ("198.51.100.0/24", "203.0.113.0/24"), FIP, "worker2", ("fe1", "fe2"),
                         excluded_cidrs=(f"{EXT}/32",))])
    assert lab.whoami("fe1") == W1  # the hole: not steered, the node's masquerade
    assert lab.whoami("fe1", EXT2) == FIP
    assert lab.whoami("fe2") == "192.0.2.12"  # on the gateway itself: its SNAT skips the hole too
    assert lab.whoami("fe2", EXT2) == FIP
    # Another policy covering the hole takes it, on both sides.
    lab.apply([
        LabPolicy("all", ("198.51.100.0/24", "203.0.113.0/24"), FIP, "worker2", ("fe1", "fe2"),
                  excluded_cidrs=(f"{EXT}/32",)),
        LabPolicy("hole", ("198.51.100.0/24",), FIP2, "worker2", ("fe1", "fe2"), priority=2000),
    ])
    assert lab.whoami("fe1") == FIP2
    assert lab.whoami("fe2") == FIP2
    assert lab.whoami("fe1", EXT2) == FIP


@pytest.mark.parametrize("gateways", [("worker2", "worker2"), ("worker2", "worker3")], ids=["one-gateway", "two"])
def test_priority_decides_the_source_ip(clean_lab, gateways):
    lab = clean_lab
    wide_gw, narrow_gw = gateways

    def policies(wide: int, narrow: int):
        return [
            LabPolicy("wide", ("198.51.100.0/24",), FIP, wide_gw, ("fe1", "fe2"), priority=wide),
            LabPolicy("narrow", (f"{EXT}/32",), FIP2, narrow_gw, ("fe1", "fe2"), priority=narrow),
        ]

    lab.apply(policies(wide=10, narrow=1000))  # priority beats the longer prefix
    assert lab.whoami("fe1") == FIP
    assert lab.whoami("fe2") == FIP
    lab.apply(policies(wide=1000, narrow=10))
    assert lab.whoami("fe1") == FIP2
    assert lab.whoami("fe2") == FIP2
    lab.apply(policies(wide=1000, narrow=1000))  # equal: the longest prefix
    assert lab.whoami("fe1") == FIP2
