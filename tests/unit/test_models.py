"""The shared models: every bad input is rejected with the attribute path that is wrong."""

from __future__ import annotations

import ipaddress

import pytest

from egress_api import models
from egress_api.models import (
    Gateway,
    InvalidObject,
    Policy,
    Violation,
    check_gateway_removal,
    check_references,
    reference_warnings,
    released_in_use,
)


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
    (v,) = vs
    assert v.path == ("egress_source_ip",) and v.message.startswith("set egress_source_ip, or gateway")


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


def test_policy_source_ip_in_no_gateway_is_a_warning_not_an_error():
    """Terraform may create the policy before its gateway: accepted (fail-closed), with a warning."""
    p = Policy.model_validate(policy_data(egress_source_ip="192.0.2.200"))
    assert check_references(p, [GW], []) == []
    (v,) = reference_warnings(p, [GW], [])
    assert v.path == ("egress_source_ip",)
    assert "192.0.2.100, 192.0.2.101" in v.message and "dropped" in v.message
    assert reference_warnings(p, [GW], [], retained=["192.0.2.200"]) == []


def test_policy_before_any_gateway_says_add_one():
    (v,) = reference_warnings(Policy.model_validate(policy_data()), [], [])
    assert "add an egress_gateway" in v.message


def test_two_policies_cannot_share_a_source_ip():
    first = Policy.model_validate(policy_data(name="first"))
    second = Policy.model_validate(policy_data(name="second"))
    (v,) = check_references(second, [GW], [first])
    assert v.path == ("egress_source_ip",) and "'first'" in v.message
    # Updating a policy is not a clash with its own stored version.
    assert check_references(first, [GW], [first]) == []


def test_floating_ip_in_two_gateways_is_a_warning():
    other = Gateway(name="other", floating_ips=["192.0.2.101"])
    assert check_references(other, [GW], []) == []
    (v,) = reference_warnings(other, [GW], [])
    assert v.path == ("floating_ips",) and "'default'" in v.message


def test_gateway_update_dropping_an_ip_a_policy_uses_is_a_warning():
    p = Policy.model_validate(policy_data(egress_source_ip="192.0.2.101"))
    shrunk = Gateway(name="default", floating_ips=["192.0.2.100"])
    assert check_references(shrunk, [GW], [p]) == []
    (v,) = reference_warnings(shrunk, [GW], [p])
    assert v.path == ("floating_ips",) and "192.0.2.101" in v.message and "'egress'" in v.message
    # An IP the policy uses that another gateway lists is not dropped.
    assert released_in_use(shrunk, [Gateway(name="b", floating_ips=["192.0.2.101"])], [p], before=GW) == []


def test_gateway_removal_reports_the_policies_it_leaves():
    p = Policy.model_validate(policy_data())
    (v,) = check_gateway_removal(GW, [p])
    assert "'egress'" in v.message
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


# --- values not known yet (Terraform's unknowns) ---------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from egress_api.models import Pending  # noqa: E402

NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
LABEL_VALUES = st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", fullmatch=True)
SPACES = st.sampled_from(["", " ", "  "])
def _floatable(ip) -> bool:
    try:
        models.check_floatable(str(ip))
    except ValueError:
        return False
    return True


# Valid floating IPs: any unicast address outside the classes that can never float.
IPS = st.builds(lambda pad, ip: pad + str(ip), SPACES, st.ip_addresses(v=4).filter(_floatable))
CIDRS = st.builds(
    lambda ip, bits, form: getattr(ipaddress.ip_network((ip, bits), strict=False), form),
    st.ip_addresses(v=4), st.integers(0, 32), st.sampled_from(["with_prefixlen", "with_netmask", "with_hostmask"]),
)


def _pending_policy(name="p", label="x", cidr="198.51.100.0/24", source="192.0.2.1"):
    return {
        "name": name,
        "egress": [{"pod_selector": {"match_labels": {"app": label}}}],
        "destination_cidrs": [cidr],
        "egress_source_ip": source,
    }


@settings(max_examples=200, deadline=None)
@given(NAMES, LABEL_VALUES, CIDRS, IPS, st.data())
def test_every_beginning_of_a_valid_value_is_accepted_while_the_rest_is_unknown(name, label, cidr, ip, data):
    # Terraform knows only a prefix of a templated value: no prefix of a valid value may be refused.
    cut = lambda value: Pending(value[: data.draw(st.integers(0, len(value)))])  # noqa: E731
    models.parse("policy", _pending_policy(cut(name), cut(label), cut(cidr), cut(ip)))
    models.parse("gateway", {"name": cut(name), "floating_ips": [cut(ip), ip]})


@pytest.mark.parametrize(
    "field, prefix, fragment",
    [
        ("name", "Edge-", "a name starting with 'Edge-' is not valid"),
        ("name", "-edge", "a name starting with '-edge'"),
        ("name", "e" * 64, "is not valid"),
        ("egress_source_ip", "192.0.2.300", "a value starting with '192.0.2.300' is not a valid IPv4 address"),
        ("egress_source_ip", "192.0.2.1.", "is not a valid IPv4 address"),
        ("egress_source_ip", "192.0.02", "is not a valid IPv4 address"),
        ("egress_source_ip", "2001:", "is not a valid IPv4 address"),
        ("destination_cidrs", "10.0.0.0/33", "is not a valid IPv4 CIDR block"),
        ("destination_cidrs", "10.0.0/", "is not a valid IPv4 CIDR block"),
        ("label", "-front", "a label value starting with '-front' is not valid"),
        ("label", "front end", "is not valid"),
    ],
)
def test_a_known_beginning_no_value_can_complete_is_refused(field, prefix, fragment):
    data = _pending_policy(**{"name": {"name": Pending(prefix)}, "egress_source_ip": {"source": Pending(prefix)},
                              "destination_cidrs": {"cidr": Pending(prefix)}, "label": {"label": Pending(prefix)}}[field])
    (v,) = violations("policy", data)
    assert fragment in v.message
    assert v.path[0] == ("egress" if field == "label" else field)


def test_wholly_unknown_attributes_and_blocks_are_checked_later():
    data = {"name": Pending(), "egress": Pending(), "destination_cidrs": Pending(), "egress_source_ip": Pending()}
    assert isinstance(models.parse("policy", data).name, Pending)
    rule = {"namespace_selector": Pending(), "pod_selector": {"match_labels": Pending()}}
    models.parse("policy", _pending_policy() | {"egress": [rule]})
    # Known parts next to unknown ones are still checked.
    vs = violations("gateway", {"name": Pending("gw-"), "floating_ips": [Pending(), "192.0.2.300", Pending("10.")]})
    assert [v.path for v in vs] == [("floating_ips", 1)]


def test_no_pydantic_wording_reaches_a_user():
    vs = violations("policy", {"name": 7, "egress": "x", "destination_cidrs": {"a": 1}, "egress_source_ip": None,
                               "extra": 1})
    messages = {v.path: v.message for v in vs}
    assert messages.pop(("egress_source_ip",)).startswith("set egress_source_ip, or gateway")  # null: not set
    assert messages == {
        ("name",): "must be a string",
        ("egress",): "must be a list",
        ("destination_cidrs",): "must be a list",
        ("extra",): "unknown attribute",
    }
def test_pod_and_namespace_names_are_kubernetes_names():
    ok = models.parse("pod", {"name": "web-7d4b9.v2", "namespace": "alice", "node": "worker1", "ip": "10.244.1.2",
                              "interface": "veth1a2b3c4d"})
    assert ok.name == "web-7d4b9.v2"
    with pytest.raises(models.InvalidObject) as err:
        models.parse("pod", {"name": "Web_1", "namespace": "a.b", "node": "worker1", "ip": "10.244.1.2",
                             "interface": "has space"})
    paths = {v.path for v in err.value.violations}
    assert paths == {("name",), ("namespace",), ("interface",)}
    assert "DNS-1123 subdomain" in str(err.value) and "DNS-1123 label" in str(err.value)
    with pytest.raises(models.InvalidObject):
        models.parse("pod", {"name": "p" * 254, "namespace": "a", "node": "w", "ip": "10.244.1.2"})
    with pytest.raises(models.InvalidObject):
        models.parse("namespace", {"name": "n" * 64})


# --- match_expressions (Kubernetes LabelSelectorRequirement) -----------------------------------------


@pytest.mark.parametrize("op, values, labels, selected", [
    ("In", ["a", "b"], {"k": "a"}, True),
    ("In", ["a", "b"], {"k": "c"}, False),
    ("In", ["a"], {}, False),
    ("NotIn", ["a"], {"k": "b"}, True),
    ("NotIn", ["a"], {}, True),  # an unset label is not in any set
    ("NotIn", ["a"], {"k": "a"}, False),
    ("Exists", [], {"k": ""}, True),
    ("Exists", [], {}, False),
    ("DoesNotExist", [], {}, True),
    ("DoesNotExist", [], {"k": "x"}, False),
])
def test_match_expressions_have_kubernetes_semantics(op, values, labels, selected):
    sel = models.LabelSelector.model_validate({"match_expressions": [{"key": "k", "operator": op, "values": values}]})
    assert sel.matches(labels) is selected


def test_match_labels_and_every_expression_must_hold_and_the_set_is_canonical():
    sel = models.LabelSelector.model_validate({"match_labels": {"app": "shop"}, "match_expressions": [
        {"key": "tier", "operator": "Exists"},
        {"key": "role", "operator": "NotIn", "values": ["b", "a", "b"]},
        {"key": "tier", "operator": "Exists"},  # a duplicate says nothing more
    ]})
    assert [(e.key, e.operator, e.values) for e in sel.match_expressions] == [
        ("role", "NotIn", ["a", "b"]), ("tier", "Exists", [])]
    assert sel.matches({"app": "shop", "tier": "1"}) and not sel.matches({"tier": "1"})
    assert not sel.matches({"app": "shop", "tier": "1", "role": "a"})


def test_manifests_spell_them_as_kubernetes_does():
    from egress_api import manifest

    text = """
kind: EgressNATPolicy
metadata: {name: shop}
spec:
  egressSourceIP: 192.0.2.100
  destinationCIDRs: [198.51.100.0/24]
  egress:
  - podSelector:
      matchExpressions:
      - {key: role, operator: In, values: [frontend]}
"""
    (doc,) = manifest.load(text, "test")
    (rule,) = doc.obj.egress
    assert rule.pod_selector.match_expressions[0].values == ["frontend"]
    assert "matchExpressions" in manifest.render("policy", doc.obj, 1)
