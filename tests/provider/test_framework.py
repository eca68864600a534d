"""Unit tests of the house layer over `tf` (no processes): blocks, types, plan, validation, diagnostics."""

from __future__ import annotations

from tf.gen import tfplugin_pb2 as pb
from tf.types import Unknown
from tf.utils import Diagnostics, read_dynamic_value, to_dynamic_value

from egress_api import models
from egress_provider.framework.diagnostics import add_violations, attribute_path
from egress_provider.framework.servicer import Servicer
from egress_provider.framework.types import CanonicalStringSet, StringMapEmptyIsNull
from egress_provider.provider import EgressProvider
from egress_provider.resources.common import validate_config
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


def test_validate_config_skips_unknown_values_but_checks_known_ones():
    placeholders = {"name": "x", "floating_ips": ["192.0.2.1"]}
    diags = Diagnostics()
    assert validate_config(diags, "gateway", {"name": None, "floating_ips": Unknown}, placeholders) is None
    assert not diags.diagnostics
    # One element unknown, one known and bad: the bad one is reported.
    validate_config(diags, "gateway", {"name": None, "floating_ips": [Unknown, "2001:db8::1"]}, placeholders)
    assert [(d.summary, d.path) for d in diags.diagnostics] == [("Invalid floating_ips", ["floating_ips"])]
    model = validate_config(Diagnostics(), "gateway", {"name": None, "floating_ips": ["192.0.2.2"]}, placeholders)
    assert model == models.Gateway(name="default", floating_ips=["192.0.2.2"])


def test_violation_paths_stop_at_set_indexes():
    assert attribute_path(("egress", 0, "pod_selector", "match_labels")) == ["egress"]
    assert attribute_path(("egress", "1", "pod_selector")) == ["egress"]  # indexes arrive as strings over gRPC
    diags = Diagnostics()
    add_violations(diags, [models.Violation(("egress", 0, "pod_selector", "match_labels"), "bad")], kind="policy", name="p")
    d = diags.diagnostics[0]
    assert (d.summary, d.detail, d.path) == ("Invalid egress.pod_selector.match_labels", "bad", ["egress"])


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
