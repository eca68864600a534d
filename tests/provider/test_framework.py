"""Unit tests of the house layer over `tf` (no processes): blocks, types, plan, validation, diagnostics."""

from __future__ import annotations

import pytest
from tf.gen import tfplugin_pb2 as pb
from tf.types import Unknown
from tf.utils import Diagnostics, read_dynamic_value, to_dynamic_value

from egress_api import models
from egress_provider.framework.diagnostics import Locator, add_violations, attribute_path
from egress_provider.framework.servicer import Servicer
from egress_provider.framework.types import CanonicalStringSet, StringMapEmptyIsNull
from egress_provider.framework.unknowns import RefinedUnknown, WireError, is_unknown, known_prefix
from egress_provider.provider import EgressProvider
from egress_provider.resources.common import validate_config
from egress_provider.resources.egress_gateway import EgressGateway
from egress_provider.resources.egress_nat_policy import EgressNatPolicy

EGRESS = next(b for b in EgressNatPolicy.get_schema().block_types if b.type_name == "egress")


def rule(ns=None, pod=None):
    sel = lambda labels: None if labels is None else {"match_labels": labels}  # noqa: E731
    return {"namespace_selector": sel(ns), "pod_selector": sel(pod)}


def test_set_of_blocks_compares_nested_blocks_and_ignores_order():
    a = [rule({"user": "alice"}, {"role": "frontend"}), rule({"user": "paul"}, {"role": "frontend"})]
    assert EGRESS.semantically_equal(a, list(reversed(a)))
    # tf's own SetNestedBlock looks only at attributes (these elements have none) and calls these equal.
    assert not EGRESS.semantically_equal(a, [rule({"user": "alice"}, {"role": "frontend"}), rule({"user": "bob"}, {"role": "frontend"})])
    assert not EGRESS.semantically_equal([rule({"user": "alice"})], [rule(None, {"user": "alice"})])
    # null and {} match_labels mean the same (every label matches); Unknown is never equal to a value.
    assert EGRESS.semantically_equal([rule({}, None)], [{"namespace_selector": {"match_labels": None}, "pod_selector": None}])
    assert not EGRESS.semantically_equal(a, Unknown)


def test_single_nested_block_round_trip():
    selector = next(b for b in EGRESS.block.block_types if b.type_name == "pod_selector")
    assert selector.encode(None) is None and selector.decode(None) is None
    assert selector.decode(selector.encode({"match_labels": {"role": "frontend"}})) == {"match_labels": {"role": "frontend"}}
    assert pb.Schema.NestedBlock.NestingMode.Name(selector.to_pb().nesting) == "SINGLE"


def test_canonical_types():
    cidrs = CanonicalStringSet(models.parse_ipv4_cidr)
    assert cidrs.semantically_equal(["198.51.100.0/24", "203.0.113.0/24"], [" 203.0.113.0/24", "198.51.100.0/24"])
    assert not cidrs.semantically_equal(["198.51.100.0/24"], ["198.51.101.0/24"])
    assert not cidrs.semantically_equal(["198.51.100.0/24"], None)
    assert StringMapEmptyIsNull().semantically_equal(None, {})


GATEWAY_SCHEMA = EgressGateway.get_schema()
POLICY_SCHEMA = EgressNatPolicy.get_schema()


def test_validate_config_defers_unknown_values_but_checks_known_ones_and_known_prefixes():
    diags = Diagnostics()
    assert validate_config(diags, "gateway", {"name": None, "floating_ips": Unknown}) is None
    assert not diags.diagnostics
    # One element unknown, one known and bad: the bad one is reported, at the set (Terraform has no order for it).
    config = {"name": RefinedUnknown(not_null=True, prefix="gw-"), "floating_ips": [Unknown, "2001:db8::1"]}
    validate_config(diags, "gateway", config, Locator(GATEWAY_SCHEMA, config))
    assert [(d.summary, d.path) for d in diags.diagnostics] == [("Invalid floating_ips", ["floating_ips"])]
    # A known prefix that no value can complete is reported now.
    diags = Diagnostics()
    config = {"name": RefinedUnknown(prefix="Gw_"), "floating_ips": [RefinedUnknown(prefix="192.0.2.300")]}
    validate_config(diags, "gateway", config, Locator(GATEWAY_SCHEMA, config))
    assert [(d.path, d.detail) for d in diags.diagnostics] == [
        (["name"], "a name starting with 'Gw_' is not valid: use 1-63 lower-case letters, digits or '-', "
                   "starting and ending with a letter or digit (e.g. 'default')"),
        (["floating_ips"], "a value starting with '192.0.2.300' is not a valid IPv4 address (e.g. 192.0.2.100)"),
    ]
    model = validate_config(Diagnostics(), "gateway", {"name": None, "floating_ips": ["192.0.2.2"]})
    assert model == models.Gateway(name="default", floating_ips=["192.0.2.2"])


def test_violations_are_placed_at_exact_paths_through_blocks_and_map_keys():
    one_rule = {"egress": [rule(None, {"Bad Key": "x"})]}
    at = Locator(POLICY_SCHEMA, one_rule)
    loc = ("egress", 0, "pod_selector", "match_labels", "Bad Key")
    # A set of one block is addressed as its element 0: Terraform then finds the block as written.
    assert at.locate(loc) == (["egress", (0,), "pod_selector", "match_labels", ("Bad Key",)],
                              'egress.pod_selector.match_labels["Bad Key"]')
    # Map keys that look like numbers stay keys (the agent's paths come back with digit strings as ints).
    assert at.locate(("egress", "0", "pod_selector", "match_labels", 7))[0][-1] == ("7",)
    # In a set of several blocks the element cannot be told to Terraform: the path stops, the label does not.
    two_rules = {"egress": [rule(None, {"Bad Key": "x"}), rule({"user": "alice"})]}
    assert Locator(POLICY_SCHEMA, two_rules).locate(loc) == (["egress"], 'egress.pod_selector.match_labels["Bad Key"]')
    # A set of strings stops at the attribute.
    assert at.locate(("destination_cidrs", 2)) == (["destination_cidrs"], "destination_cidrs")
    diags = Diagnostics()
    add_violations(diags, [models.Violation(loc, "bad")], kind="policy", name="p", at=at)
    d = diags.diagnostics[0]
    assert (d.summary, d.detail) == ('Invalid egress.pod_selector.match_labels["Bad Key"]', "bad")
    steps = d.to_pb().attribute.steps
    assert [s.WhichOneof("selector") for s in steps] == [
        "attribute_name", "element_key_int", "attribute_name", "attribute_name", "element_key_string"]
    # Without a schema at hand (agent errors about other objects), the path stops at the first index.
    assert attribute_path(("egress", 1, "pod_selector")) == ["egress"]


# msgpack bytes as go-cty writes them (assembled by hand here, not by our encoder).
WHOLLY_UNKNOWN = bytes([0xD4, 0x00, 0x00])  # fixext1, type 0, one zero byte
NOT_NULL_PREFIX_GW = bytes([0xD7, 0x0C, 0x82, 0x01, 0xC2, 0x02, 0xA3]) + b"gw-"  # fixext8 type 12: {1: false, 2: "gw-"}
NUMBER_BOUNDS = bytes([0xC7, 0x0B, 0x0C, 0x83, 0x01, 0xC2, 0x03, 0x92, 0x00, 0xC3, 0x04, 0x92, 0x0A, 0xC2])  # [0, 10)
LENGTH_BOUNDS = bytes([0xC7, 0x05, 0x0C, 0x82, 0x05, 0x01, 0x06, 0x03])  # {5: 1, 6: 3}
NOT_TYPE_12 = bytes([0xC7, 0x03, 0x05, 0x81, 0x01, 0xC2])


def _decode(raw: bytes):
    return read_dynamic_value(pb.DynamicValue(msgpack=raw))


def test_refined_unknowns_decode_with_their_refinements_and_encode_back_byte_for_byte():
    assert _decode(WHOLLY_UNKNOWN) is Unknown
    gw = _decode(NOT_NULL_PREFIX_GW)
    assert isinstance(gw, RefinedUnknown) and gw.not_null and gw.prefix == "gw-" and known_prefix(gw) == "gw-"
    assert is_unknown(gw) and gw in (None, Unknown)  # what tf's own collection types test
    bounded = _decode(NUMBER_BOUNDS)
    assert (bounded.number_min, bounded.number_max) == ((0, True), (10, False))
    assert (_decode(LENGTH_BOUNDS).length_min, _decode(LENGTH_BOUNDS).length_max) == (1, 3)
    for raw in (WHOLLY_UNKNOWN, NOT_NULL_PREFIX_GW, NUMBER_BOUNDS, LENGTH_BOUNDS):
        assert to_dynamic_value(_decode(raw)).msgpack == raw
    # Inside an object, as Terraform sends a config.
    obj = b"\x82\xa4name" + NOT_NULL_PREFIX_GW + b"\xacfloating_ips" + WHOLLY_UNKNOWN
    assert to_dynamic_value(_decode(obj)).msgpack == obj
    # Any extension of 0 or 1 bytes is wholly unknown; a longer one must be type 12.
    assert _decode(bytes([0xC7, 0x00, 0x05])) is Unknown
    with pytest.raises(WireError):
        _decode(NOT_TYPE_12)


def test_an_unreadable_value_is_a_diagnostic_not_a_crash():
    request = pb.ValidateResourceConfig.Request(type_name="egress_gateway", config=pb.DynamicValue(msgpack=NOT_TYPE_12))
    resp = Servicer(EgressProvider()).ValidateResourceConfig(request, None)
    assert [d.summary for d in resp.diagnostics] == ["Terraform sent a value the egress provider cannot read"]


def _plan(servicer, prior, proposed, config, type_name="egress_gateway"):
    resp = servicer.PlanResourceChange(
        pb.PlanResourceChange.Request(
            type_name=type_name,
            prior_state=to_dynamic_value(prior) if prior is not None else pb.DynamicValue(msgpack=b"\xc0"),
            proposed_new_state=to_dynamic_value(proposed) if proposed is not None else pb.DynamicValue(msgpack=b"\xc0"),
            config=to_dynamic_value(config),
        ),
        None,
    )
    return resp, read_dynamic_value(resp.planned_state)


def test_plan_runs_the_hook_on_create_defaults_name_and_marks_version_unknown_on_update():
    servicer = Servicer(EgressProvider())  # not configured: plan hooks skip the agent
    config = {"id": None, "name": None, "floating_ips": ["192.0.2.100"], "resource_version": None}
    resp, planned = _plan(servicer, None, dict(config), config)
    assert not resp.diagnostics
    assert planned["name"] == "default" and planned["id"] == "default"  # the hook ran on create
    assert planned["resource_version"] is Unknown

    prior = {"id": "default", "name": "default", "floating_ips": ["192.0.2.100"], "resource_version": 7}
    resp, planned = _plan(servicer, prior, dict(prior), config)
    assert planned["resource_version"] == 7 and not resp.requires_replace  # nothing changed: version kept

    changed = dict(prior, floating_ips=["192.0.2.100", "192.0.2.101"])
    resp, planned = _plan(servicer, prior, changed, dict(config, floating_ips=changed["floating_ips"]))
    assert planned["resource_version"] is Unknown and not resp.requires_replace

    # Removing `name` from config means "default", not "keep prior": a replacement.
    prior_edge = dict(prior, id="edge", name="edge")
    resp, planned = _plan(servicer, prior_edge, dict(prior_edge), config)
    assert planned["name"] == "default"
    assert [[s.attribute_name for s in p.steps] for p in resp.requires_replace] == [["name"]]

    resp, planned = _plan(servicer, prior, None, None)  # destroy plan (plan_destroy capability)
    assert not resp.diagnostics and planned is None
