"""The shared models: every bad input is rejected with the attribute path that is wrong."""

from __future__ import annotations

import pytest

from egress_api import models
from egress_api.models import Gateway, InvalidObject, Policy, Violation, check_gateway_removal, check_references


def policy_data(**overrides):
    data = {
        "name": "egress",
        "egress": [
            {"namespace_selector": {"match_labels": {"user": "alice"}}, "pod_selector": {"match_labels": {"role": "frontend"}}}
        ],
        "destination_cidrs": ["198.51.100.0/24"],
        "egress_source_ip": "192.0.2.100",
    }
    data.update(overrides)
    return data


def violations(kind, data) -> list[Violation]:
    with pytest.raises(InvalidObject) as info:
        models.parse(kind, data)
    assert info.value.violations, "InvalidObject must carry violations"
    return info.value.violations


# --- gateways -----------------------------------------------------------------------


def test_gateway_canonicalises_and_sorts_floating_ips():
    gw = models.parse("gateway", {"name": "default", "floating_ips": ["192.0.2.101", " 192.0.2.9", "192.0.2.100"]})
    assert gw.floating_ips == ["192.0.2.9", "192.0.2.100", "192.0.2.101"]


def test_gateway_name_defaults_to_default():
    assert models.parse("gateway", {"floating_ips": ["192.0.2.100"]}).name == "default"


@pytest.mark.parametrize(
    "ips, path, fragment",
    [
        (["192.0.2.300"], ("floating_ips", 0), "not a valid IPv4 address"),
        (["not-an-ip"], ("floating_ips", 0), "not a valid IPv4 address"),
        (["2001:db8::1"], ("floating_ips", 0), "IPv4 only"),
        (["192.0.2.100", "192.0.2.100"], ("floating_ips",), "listed twice"),
        ([], ("floating_ips",), "at least one floating IP is required"),
    ],
)
def test_gateway_bad_floating_ips(ips, path, fragment):
    (v,) = violations("gateway", {"name": "default", "floating_ips": ips})
    assert v.path == path
    assert fragment in v.message


@pytest.mark.parametrize("name", ["Default", "-gw", "gw_1", "a" * 64, ""])
def test_gateway_bad_name(name):
    (v,) = violations("gateway", {"name": name, "floating_ips": ["192.0.2.100"]})
    assert v.path == ("name",)


def test_gateway_unknown_attribute_is_named():
    (v,) = violations("gateway", {"name": "default", "floating_ips": ["192.0.2.100"], "floating_ip": "x"})
    assert v.path == ("floating_ip",)
    assert v.message == "unknown attribute"


# --- policies ------------------------------------------------------------------------


def test_policy_valid_and_canonical():
    p = models.parse("policy", policy_data(destination_cidrs=["203.0.113.0/24", "198.51.100.0/24"]))
    assert p.destination_cidrs == ["198.51.100.0/24", "203.0.113.0/24"]
    assert p.selects({"user": "alice"}, {"role": "frontend"})
    assert not p.selects({"user": "bob"}, {"role": "frontend"})


def test_omitted_selector_matches_everything():
    p = models.parse("policy", policy_data(egress=[{"namespace_selector": {"match_labels": {"user": "paul"}}}]))
    assert p.egress[0].pod_selector is None
    assert p.selects({"user": "paul"}, {"anything": "x"})
    assert models.parse("policy", policy_data(egress=[{}])).selects({}, {})


@pytest.mark.parametrize(
    "overrides, path, fragment",
    [
        ({"destination_cidrs": ["198.51.100.1/24"]}, ("destination_cidrs", 0), "host bits set"),
        ({"destination_cidrs": ["198.51.100.0/33"]}, ("destination_cidrs", 0), "not a valid IPv4 CIDR"),
        ({"destination_cidrs": ["198.51.100.0"]}, ("destination_cidrs", 0), "no prefix length"),
        ({"destination_cidrs": ["2001:db8::/32"]}, ("destination_cidrs", 0), "IPv4 only"),
        ({"destination_cidrs": []}, ("destination_cidrs",), "at least one destination CIDR"),
        ({"egress_source_ip": "192.0.2"}, ("egress_source_ip",), "not a valid IPv4 address"),
        ({"egress_source_ip": "2001:db8::1"}, ("egress_source_ip",), "IPv4 only"),
        ({"egress": []}, ("egress",), "at least one egress rule"),
    ],
)
def test_policy_bad_input(overrides, path, fragment):
    (v,) = violations("policy", policy_data(**overrides))
    assert v.path == path
    assert fragment in v.message


@pytest.mark.parametrize(
    "rule, path",
    [
        ({"pod_selector": {"match_labels": {"bad key!": "x"}}}, ("egress", 0, "pod_selector", "match_labels", "bad key!")),
        ({"pod_selector": {"match_labels": {"role": "-frontend"}}}, ("egress", 0, "pod_selector", "match_labels", "role")),
        ({"namespace_selector": {"match_labels": {"Example.com/user": "a"}}}, ("egress", 0, "namespace_selector", "match_labels", "Example.com/user")),
        ({"namespace_selector": {"match_labels": {"user": "a" * 64}}}, ("egress", 0, "namespace_selector", "match_labels", "user")),
        ({"pod_selector": {"labels": {}}}, ("egress", 0, "pod_selector", "labels")),
    ],
)
def test_policy_bad_labels_report_the_rule_path(rule, path):
    vs = violations("policy", policy_data(egress=[{}, rule]))
    assert [v.path for v in vs] == [(path[0], 1, *path[2:])]


def test_valid_label_forms_are_accepted():
    labels = {"example.com/team": "a.b_c-d", "role": "", "x": "Y9"}
    p = models.parse("policy", policy_data(egress=[{"pod_selector": {"match_labels": labels}}]))
    assert p.egress[0].pod_selector.match_labels == labels


def test_every_violation_is_reported_at_once():
    vs = violations("policy", {"name": "x", "egress": [], "destination_cidrs": ["1.2.3.4/8"], "egress_source_ip": "::1"})
    assert {v.path for v in vs} == {("egress",), ("destination_cidrs", 0), ("egress_source_ip",)}


def test_missing_attribute():
    vs = violations("policy", {"name": "egress", "egress": [{}], "destination_cidrs": ["198.51.100.0/24"]})
    assert vs == [Violation(("egress_source_ip",), "this attribute is required")]


def test_invalid_object_message_names_paths():
    with pytest.raises(InvalidObject) as info:
        models.parse("policy", policy_data(egress=[{"pod_selector": {"match_labels": {"role": "-x"}}}]))
    assert "egress.0.pod_selector.match_labels" in str(info.value)


# --- inventory ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, path",
    [
        ({"name": "w1", "node_ip": "192.0.2.11"}, ("node_ip",)),
        ({"name": "Worker_1", "node_ip": "192.0.2.11/24"}, ("name",)),
        ({"name": "w1", "node_ip": "2001:db8::1/64"}, ("node_ip",)),
        ({"name": "w1", "node_ip": "192.0.2.11/24", "role": "boss"}, ("role",)),
        ({"name": "w1", "node_ip": "192.0.2.11/24", "pod_cidr": "10.244.1.1/24"}, ("pod_cidr",)),
    ],
)
def test_node_bad_input(data, path):
    (v,) = violations("node", data)
    assert v.path == path


def test_pod_and_namespace():
    pod = models.parse("pod", {"name": "web", "namespace": "alice", "node": "worker1", "ip": "10.244.1.5", "labels": {"role": "frontend"}})
    assert pod.ip == "10.244.1.5"
    (v,) = violations("pod", {"name": "web", "namespace": "alice", "node": "worker1", "ip": "10.244.1.500"})
    assert v.path == ("ip",)
    (v,) = violations("namespace", {"name": "alice", "labels": {"user": "not valid"}})
    assert v.path == ("labels", "user")


# --- cross-object rules -----------------------------------------------------------------


GW = Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.101"])


def test_policy_source_ip_must_be_a_floating_ip():
    p = Policy.model_validate(policy_data(egress_source_ip="192.0.2.200"))
    (v,) = check_references(p, [GW], [])
    assert v.path == ("egress_source_ip",)
    assert "192.0.2.100, 192.0.2.101" in v.message


def test_policy_before_any_gateway_says_create_one():
    (v,) = check_references(Policy.model_validate(policy_data()), [], [])
    assert "create an egress_gateway first" in v.message


def test_two_policies_cannot_share_a_source_ip():
    first = Policy.model_validate(policy_data(name="first"))
    second = Policy.model_validate(policy_data(name="second"))
    (v,) = check_references(second, [GW], [first])
    assert v.path == ("egress_source_ip",) and "'first'" in v.message
    # Updating a policy is not a clash with its own stored version.
    assert check_references(first, [GW], [first]) == []


def test_floating_ip_in_two_gateways():
    other = Gateway(name="other", floating_ips=["192.0.2.101"])
    (v,) = check_references(other, [GW], [])
    assert v.path == ("floating_ips",) and "'default'" in v.message


def test_gateway_update_cannot_drop_an_ip_a_policy_uses():
    p = Policy.model_validate(policy_data(egress_source_ip="192.0.2.101"))
    shrunk = Gateway(name="default", floating_ips=["192.0.2.100"])
    (v,) = check_references(shrunk, [GW], [p])
    assert v.path == ("floating_ips",) and "192.0.2.101" in v.message


def test_gateway_removal_blocked_while_in_use():
    p = Policy.model_validate(policy_data())
    (v,) = check_gateway_removal(GW, [p])
    assert "delete that policy first" in v.message
    assert check_gateway_removal(GW, []) == []


# --- proto conversion ------------------------------------------------------------------


def test_convert_round_trips_policies_exactly():
    from egress_api import convert
    from egress_api.v1 import egress_pb2 as pb

    p = models.parse(
        "policy",
        policy_data(egress=[{"pod_selector": {"match_labels": {}}}, {"namespace_selector": {"match_labels": {"user": "paul"}}}]),
    )
    msg = convert.policy_to_proto(p, resource_version=7)
    assert msg.resource_version == 7
    assert msg.egress[0].HasField("pod_selector") and not msg.egress[0].HasField("namespace_selector")
    back = convert.policy_from_proto(pb.Policy.FromString(msg.SerializeToString()))
    assert back == p
    assert back.egress[0].pod_selector is not None and back.egress[0].namespace_selector is None


def test_convert_violations_keep_int_indexes():
    from egress_api import convert

    vs = [Violation(("egress", 2, "pod_selector", "match_labels"), "bad"), Violation((), "whole object")]
    assert convert.violations_from_bytes(convert.violations_to_bytes(vs)) == vs
