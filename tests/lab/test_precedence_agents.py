"""Exclusions and priority through the agents (API -> store -> every node's datapath), issue #12.

Every lab agent runs with --service-cidr (topology.SERVICE_CIDR): a policy to
0.0.0.0/0 leaves pod-to-pod and pod-to-service traffic alone.
"""

from __future__ import annotations

import pytest

from egress_api import models
from egress_lab import topology as T
from helpers.agent_lab import eventually
from helpers.lab_services import pod_server, service

pytestmark = pytest.mark.kernel

FIP, FIP2 = "192.0.2.100", "192.0.2.101"
EXT, EXT2 = T.EXT_HOST_IP, T.EXT2_HOST_IP
W1 = "192.0.2.11"
FRONTENDS = [{"namespace_selector": {"match_labels": {"user": "alice"}},
              "pod_selector": {"match_labels": {"role": "frontend"}}}]


def policy(name, cidrs, ip, **kw) -> models.Policy:
    return models.Policy.model_validate({"name": name, "egress": FRONTENDS, "destination_cidrs": cidrs,
                                         "egress_source_ip": ip, **kw})


def test_everything_but_the_cluster_and_the_holes_leaves_with_the_policy_ip(clean_lab):
    lab = clean_lab
    with lab.client() as c:
        c.create_gateway(models.Gateway(name="default", floating_ips=[FIP, FIP2]))
        c.create_policy(policy("all", ["0.0.0.0/0"], FIP, excluded_cidrs=[f"{EXT}/32"]))
        eventually(lambda: lab.seen_as("fe1", EXT2), FIP)
        assert lab.whoami("fe1", EXT) == W1  # excluded: the node's IP
        fe1 = lab.pod("fe1").ip
        with pod_server("paul1", lab.pod("paul1").ip) as backend, \
                service(lab.node("worker1").netns, "10.244.200.10", backend) as vip:
            assert lab.whoami("fe1", backend) == fe1  # pod to pod
            assert lab.whoami("fe1", vip) == fe1  # pod to service (the service CIDR is never steered)

        # A higher-priority policy for the hole's neighbourhood takes it from "all", on every node.
        c.create_policy(policy("narrow", [f"{EXT}/32"], FIP2, priority=10))
        eventually(lambda: lab.seen_as("fe1", EXT), FIP2)
        assert lab.whoami("fe2", EXT) == FIP2  # fe2 runs on a node that may hold either IP
        c.update_policy(policy("all", ["0.0.0.0/0"], FIP, priority=5))  # now "all" outranks it
        eventually(lambda: lab.seen_as("fe1", EXT), FIP)
        assert lab.whoami("fe2", EXT) == FIP
