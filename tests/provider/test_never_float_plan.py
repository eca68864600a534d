"""Addresses that can never float fail `terraform plan`, in the provider's words, and nothing is written.

The address classes (loopback, multicast, ...) come from the shared models at validate time; the
cluster's own addresses (here the agent's node address 192.0.2.11 and its subnet's broadcast address)
from the agent's ValidateGateway during the plan.
"""

from __future__ import annotations

import pytest

from helpers.terraform import find_diagnostic

pytestmark = pytest.mark.terraform


def _gateway(address: str, name: str, ips: list[str]) -> str:
    quoted = ", ".join(f'"{ip}"' for ip in ips)
    return f'resource "egress_gateway" "{address}" {{\n  name         = "{name}"\n  floating_ips = [{quoted}]\n}}\n'


def test_address_classes_that_never_float_fail_at_plan(acc):
    config = _gateway("loop", "loop", ["192.0.2.100", "127.0.0.1"]) + _gateway("multi", "multi", ["224.0.0.1"])
    res = acc.expect_failure(config, r"Error: Invalid floating_ips")
    find_diagnostic(res.output, "Error: Invalid floating_ips", "egress_gateway.loop",
                    "127.0.0.1 is a loopback address: it can never be a floating IP")
    find_diagnostic(res.output, "Error: Invalid floating_ips", "egress_gateway.multi",
                    "224.0.0.1 is a multicast address: it can never be a floating IP")


def test_the_clusters_own_addresses_fail_at_plan(acc):
    res = acc.expect_failure(_gateway("gw", "default", ["192.0.2.100", "192.0.2.11", "192.0.2.255"]),
                             r"Error: Invalid floating_ips")
    find_diagnostic(res.output, "Error: Invalid floating_ips", "egress_gateway.gw",
                    "floating IP 192.0.2.11 is the address of node 'worker1': it can never be a floating IP")
    find_diagnostic(res.output, "Error: Invalid floating_ips", "egress_gateway.gw",
                    "floating IP 192.0.2.255 is the broadcast address of node 'worker1''s subnet 192.0.2.0/24")
