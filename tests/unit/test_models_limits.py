"""The models' refusals of issue #9: addresses that can never float, per-object limits, Kubernetes names."""

from __future__ import annotations

import pytest

from egress_api import limits, models
from egress_api.models import InvalidObject, Violation


def violations(kind, data) -> list[Violation]:
    with pytest.raises(InvalidObject) as info:
        models.parse(kind, data)
    return info.value.violations


# --- addresses that can never float ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ip, message",
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address: it can never be a floating IP"),
        ("0.0.0.0", "0.0.0.0 is an unspecified ('this network', 0.0.0.0/8) address: it can never be a floating IP"),
        ("0.1.2.3", "0.1.2.3 is an unspecified ('this network', 0.0.0.0/8) address: it can never be a floating IP"),
        ("224.0.0.251", "224.0.0.251 is a multicast address: it can never be a floating IP"),
        ("169.254.1.1", "169.254.1.1 is a link-local address: it can never be a floating IP"),
        ("240.0.0.1", "240.0.0.1 is a reserved address (240.0.0.0/4): it can never be a floating IP"),
        ("255.255.255.255", "255.255.255.255 is the limited broadcast address: it can never be a floating IP"),
    ],
)
def test_address_classes_that_never_float_are_refused_with_their_path(ip, message):
    gw = violations("gateway", {"floating_ips": ["192.0.2.100", ip]})
    assert gw == [Violation(("floating_ips", 1), message)]
    policy = {"name": "p", "egress": [{}], "destination_cidrs": ["198.51.100.0/24"], "egress_source_ip": ip}
    assert violations("policy", policy) == [Violation(("egress_source_ip",), message)]


def test_documentation_and_private_addresses_float():
    for ip in ("192.0.2.100", "198.51.100.7", "203.0.113.1", "10.1.2.3", "172.16.0.9", "100.64.0.1"):
        assert models.parse("gateway", {"floating_ips": [ip]}).floating_ips == [ip]


def test_reserved_addresses_of_the_cluster():
    reserved = models.reserved_addresses(
        [("worker1", "192.0.2.11/24", ["192.0.2.1"]), ("p2p", "198.51.100.4/31", []), ("worker2", "192.0.2.12/24", [])]
    )
    assert reserved == {
        "192.0.2.11": "the address of node 'worker1'",
        "192.0.2.12": "the address of node 'worker2'",
        "192.0.2.0": "the network address of node 'worker1''s subnet 192.0.2.0/24",
        "192.0.2.255": "the broadcast address of node 'worker1''s subnet 192.0.2.0/24",
        "192.0.2.1": "a router of node 'worker1' (a gateway of its routes)",
        "198.51.100.4": "the address of node 'p2p'",  # a /31 has no network or broadcast address
    }
    gw = models.parse("gateway", {"floating_ips": ["192.0.2.1", "192.0.2.100"]})
    assert models.cluster_address_violations(gw, reserved) == [
        Violation(("floating_ips",), "floating IP 192.0.2.1 is a router of node 'worker1' (a gateway of its routes): "
                                     "it can never be a floating IP")
    ]


def test_node_routers_are_canonical_ipv4():
    node = models.parse("node", {"name": "w1", "node_ip": "192.0.2.11/24", "routers": [" 192.0.2.1"]})
    assert node.routers == ["192.0.2.1"]
    assert violations("node", {"name": "w1", "node_ip": "192.0.2.11/24", "routers": ["gw"]})[0].path == ("routers",)


# --- per-object limits -------------------------------------------------------------------------------


def _hosts(n: int) -> list[str]:
    return [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(1, n + 1)]


def test_floating_ips_per_gateway():
    assert len(models.parse("gateway", {"floating_ips": _hosts(limits.MAX_FLOATING_IPS)}).floating_ips) == 1024
    assert violations("gateway", {"floating_ips": _hosts(limits.MAX_FLOATING_IPS + 1)}) == [
        Violation(("floating_ips",), "at most 1,024 floating IP values are allowed, got 1,025 "
                                     "(limit MAX_FLOATING_IPS; see docs/limits.md)")
    ]


def test_destination_cidrs_per_policy():
    cidrs = [f"{h}/32" for h in _hosts(limits.MAX_DESTINATION_CIDRS + 1)]
    ok = {"name": "p", "egress": [{}], "destination_cidrs": cidrs[:-1], "egress_source_ip": "192.0.2.100"}
    assert len(models.parse("policy", ok).destination_cidrs) == 10_000
    assert violations("policy", {**ok, "destination_cidrs": cidrs}) == [
        Violation(("destination_cidrs",), "at most 10,000 destination CIDR values are allowed, got 10,001 "
                                          "(limit MAX_DESTINATION_CIDRS; see docs/limits.md)")
    ]


def test_rules_and_selector_labels_per_policy():
    base = {"name": "p", "destination_cidrs": ["198.51.100.0/24"], "egress_source_ip": "192.0.2.100"}
    assert violations("policy", {**base, "egress": [{}] * 65}) == [
        Violation(("egress",), "at most 64 egress rule values are allowed, got 65 (limit MAX_EGRESS_RULES; see docs/limits.md)")
    ]
    labels = {f"k{i}": "v" for i in range(65)}
    assert violations("policy", {**base, "egress": [{"pod_selector": {"match_labels": labels}}]}) == [
        Violation(("egress", 0, "pod_selector", "match_labels"),
                  "at most 64 label values are allowed, got 65 (limit MAX_SELECTOR_LABELS; see docs/limits.md)")
    ]


def test_label_expressions_per_selector():
    base = {"name": "p", "destination_cidrs": ["198.51.100.0/24"], "egress_source_ip": "192.0.2.100"}
    expressions = [{"key": f"k{i}", "operator": "Exists"} for i in range(65)]
    assert violations("policy", {**base, "egress": [{"namespace_selector": {"match_expressions": expressions}}]}) == [
        Violation(("egress", 0, "namespace_selector", "match_expressions"),
                  "at most 64 label expression values are allowed, got 65 (limit MAX_SELECTOR_LABELS; see docs/limits.md)")
    ]


def test_labels_per_pod_and_namespace():
    labels = {f"k{i}": "v" for i in range(limits.MAX_OBJECT_LABELS + 1)}
    message = "at most 256 label values are allowed, got 257 (limit MAX_OBJECT_LABELS; see docs/limits.md)"
    assert violations("namespace", {"name": "alice", "labels": labels}) == [Violation(("labels",), message)]
    pod = {"name": "a", "namespace": "alice", "node": "w1", "ip": "10.244.1.5", "labels": labels}
    assert violations("pod", pod) == [Violation(("labels",), message)]


# --- Kubernetes names: one store key per pod ------------------------------------------------------------


@pytest.mark.parametrize("name", ["web\n", "web/1", "Web", "-web", "web.", "a" * 254, ""])
def test_pod_names_are_dns1123_subdomains(name):
    pod = {"name": name, "namespace": "alice", "node": "w1", "ip": "10.244.1.5"}
    assert [v.path for v in violations("pod", pod)] == [("name",)]


@pytest.mark.parametrize("namespace", ["alice\n", "a/b", "a.b", "Alice", "a" * 64, ""])
def test_namespace_names_are_dns1123_labels(namespace):
    pod = {"name": "web", "namespace": namespace, "node": "w1", "ip": "10.244.1.5"}
    assert [v.path for v in violations("pod", pod)] == [("namespace",)]
    assert [v.path for v in violations("namespace", {"name": namespace})] == [("name",)]


@pytest.mark.parametrize("kind, data", [
    ("gateway", {"name": "default\n", "floating_ips": ["192.0.2.100"]}),
    ("node", {"name": "worker1\n", "node_ip": "192.0.2.11/24"}),
])
def test_no_name_may_end_in_a_newline(kind, data):
    assert [v.path for v in violations(kind, data)] == [("name",)]


def test_label_keys_and_values_may_not_end_in_a_newline():
    assert violations("namespace", {"name": "a", "labels": {"k\n": "v"}})[0].path == ("labels", "k\n")
    assert violations("namespace", {"name": "a", "labels": {"k": "v\n"}})[0].path == ("labels", "k")


# --- list responses ------------------------------------------------------------------------------------


def test_a_list_over_the_limit_names_it():
    limits.check_list("pods", limits.MAX_LIST_ITEMS)  # at the limit: fine
    with pytest.raises(limits.LimitExceeded) as info:
        limits.check_list("pods", limits.MAX_LIST_ITEMS + 1)
    assert str(info.value) == ("100,001 pods are more than one list response may carry "
                               "(limit MAX_LIST_ITEMS = 100,000; see docs/limits.md)")
