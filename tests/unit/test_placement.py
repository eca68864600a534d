"""Gateway placement: node_selector and max_ips_per_node narrowing the seed's assignment rules.

Table cases for each rule and reason, then properties (hypothesis): a selected, capped assignment never puts
an IP on a node the selector rejects or over the cap, still obeys the seed's rules among the selected nodes,
and a relabel moves IPs once, never back.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egress_agent.controller.assignment import Placement, assign
from egress_agent.node_info import NodeInfo
from egress_api import models

IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103"]


def node(name, ip="192.0.2.11/24", role="worker", up=True, **labels):
    return NodeInfo(name, role, ip, up, labels=labels)


def sel(**data) -> models.LabelSelector:
    return models.LabelSelector.model_validate(data)


def gw(selector=None, cap=None, name="edge") -> Placement:
    return Placement(name, selector, cap)


def placed(ips, where):
    return {ip: where for ip in ips}


EGRESS = sel(match_labels={"egress": "yes"})


def test_selector_restricts_to_matching_nodes():
    nodes = [node("a", "192.0.2.11/24"), node("b", "192.0.2.12/24", egress="yes"), node("c", "192.0.2.13/24")]
    result = assign(IPS[:2], nodes, {}, placed(IPS[:2], gw(EGRESS)))
    assert result.holders == {"192.0.2.100": "b", "192.0.2.101": "b"}


def test_expressions_select_like_kubernetes():
    expr = sel(match_expressions=[{"key": "zone", "operator": "In", "values": ["z1", "z2"]},
                                  {"key": "spare", "operator": "DoesNotExist"}])
    nodes = [node("a", "192.0.2.11/24", zone="z1", spare=""), node("b", "192.0.2.12/24", zone="z3"),
             node("c", "192.0.2.13/24", zone="z2")]
    assert assign(IPS[:2], nodes, {}, placed(IPS[:2], gw(expr))).holders == {"192.0.2.100": "c", "192.0.2.101": "c"}


def test_seed_rules_apply_among_selected_nodes():
    """Workers before masters, fewest first and name ties, but only among the nodes the selector matches."""
    nodes = [node("m1", "192.0.2.2/24", "master", egress="yes"), node("w1", "192.0.2.11/24", egress="yes"),
             node("w2", "192.0.2.12/24", egress="yes"), node("w3", "192.0.2.13/24")]
    result = assign(IPS[:3], nodes, {}, placed(IPS[:3], gw(EGRESS)))
    assert result.holders == {"192.0.2.100": "w1", "192.0.2.101": "w2", "192.0.2.102": "w1"}
    # With the selected workers Down, the selected master takes them, not the unselected worker.
    down = [n if n.name not in ("w1", "w2") else NodeInfo(n.name, n.role, n.node_ip, False, labels=n.labels)
            for n in nodes]
    assert set(assign(IPS[:3], down, {}, placed(IPS[:3], gw(EGRESS))).holders.values()) == {"m1"}


def test_ips_without_placement_go_anywhere_and_count_toward_fewest_first():
    nodes = [node("a", "192.0.2.11/24", egress="yes"), node("b", "192.0.2.12/24")]
    where = {"192.0.2.100": gw(EGRESS), "192.0.2.101": gw(EGRESS)}  # .102 belongs to an unplaced gateway
    result = assign(IPS[:3], nodes, {}, where)
    assert result.holders == {"192.0.2.100": "a", "192.0.2.101": "a", "192.0.2.102": "b"}


def test_cap_spreads_one_gateways_ips():
    nodes = [node("a", "192.0.2.11/24"), node("b", "192.0.2.12/24")]
    other = {"192.0.2.100": gw(name="other"), "192.0.2.101": gw(name="other")}
    capped = {ip: gw(cap=1) for ip in IPS[2:]}
    result = assign(IPS, nodes, {"192.0.2.100": "a", "192.0.2.101": "a"}, {**other, **capped})
    # The other gateway's IPs do not count toward edge's cap: a still takes one of edge's.
    assert result.held_by("a") == ["192.0.2.100", "192.0.2.101", "192.0.2.103"]
    assert result.held_by("b") == ["192.0.2.102"]


def test_cap_full_leaves_the_rest_unassigned_with_a_reason_naming_it():
    nodes = [node("a", "192.0.2.11/24"), node("b", "192.0.2.12/24")]
    result = assign(IPS[:3], nodes, {}, placed(IPS[:3], gw(cap=1)))
    assert result.holders == {"192.0.2.100": "a", "192.0.2.101": "b", "192.0.2.102": ""}
    assert result.reasons == {"192.0.2.102": "every Up node that may hold it already holds max_ips_per_node=1 "
                                             "of gateway 'edge''s IPs (a, b)"}


@pytest.mark.parametrize(
    "nodes, reason",
    [
        ([node("a"), node("b", "192.0.2.12/24", egress="no")],
         "no node in 192.0.2.100's subnet matches gateway 'edge''s node_selector {egress=yes} (a, b do not)"),
        ([node("a", up=False, egress="yes"), node("b", "192.0.2.12/24")],
         "every node in 192.0.2.100's subnet that gateway 'edge''s node_selector {egress=yes} selects is Down (a)"),
        ([node("a", "198.51.100.11/24", egress="yes")], "no node's subnet contains 192.0.2.100"),
    ],
)
def test_unassignable_reasons_name_the_selector(nodes, reason):
    result = assign(["192.0.2.100"], nodes, {}, placed(["192.0.2.100"], gw(EGRESS)))
    assert result.holders == {"192.0.2.100": ""}
    assert result.reasons == {"192.0.2.100": reason}


def test_relabel_moves_ips_away_once_and_never_back():
    a, b = node("a", "192.0.2.11/24", egress="yes"), node("b", "192.0.2.12/24", egress="yes")
    where = placed(IPS[:2], gw(EGRESS))
    first = assign(IPS[:2], [a, b], {}, where).holders
    assert first == {"192.0.2.100": "a", "192.0.2.101": "b"}

    relabelled = node("a", "192.0.2.11/24", egress="no")
    moved = assign(IPS[:2], [relabelled, b], first, where)
    assert moved.holders == {"192.0.2.100": "b", "192.0.2.101": "b"}
    assert moved.released == {"192.0.2.100": "no longer matches gateway 'edge''s node_selector {egress=yes}"}
    # a matches again: nothing moves back (rule 5 keeps both on b).
    again = assign(IPS[:2], [a, b], moved.holders, where)
    assert again.holders == moved.holders and not again.released


def test_lowering_the_cap_keeps_the_lowest_addresses():
    nodes = [node("a", "192.0.2.11/24"), node("b", "192.0.2.12/24")]
    held = {ip: "a" for ip in IPS}
    result = assign(IPS, nodes, held, placed(IPS, gw(cap=2)))
    assert result.held_by("a") == ["192.0.2.100", "192.0.2.101"]
    assert result.held_by("b") == ["192.0.2.102", "192.0.2.103"]
    assert result.released["192.0.2.102"] == "holds max_ips_per_node=2 of gateway 'edge''s IPs"


def test_placement_of_a_gateway_model():
    g = models.parse("gateway", {"name": "edge", "floating_ips": IPS[:1], "node_selector": {"match_labels": {"egress": "yes"}},
                                 "max_ips_per_node": 3})
    assert Placement.of(g) == Placement("edge", g.node_selector, 3)
    assert Placement.of(g).selects(node("a", egress="yes")) and not Placement.of(g).selects(node("a"))


# --- properties ----------------------------------------------------------------------

KEYS = ["egress", "zone"]
VALUES = ["yes", "no", "z1"]


@st.composite
def selectors(draw):
    labels = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=1))
    exprs = draw(st.lists(st.one_of(
        st.builds(lambda k, vs: {"key": k, "operator": "In", "values": vs}, st.sampled_from(KEYS),
                  st.lists(st.sampled_from(VALUES), min_size=1, max_size=2)),
        st.builds(lambda k, vs: {"key": k, "operator": "NotIn", "values": vs}, st.sampled_from(KEYS),
                  st.lists(st.sampled_from(VALUES), min_size=1, max_size=2)),
        st.builds(lambda k: {"key": k, "operator": "Exists"}, st.sampled_from(KEYS)),
        st.builds(lambda k: {"key": k, "operator": "DoesNotExist"}, st.sampled_from(KEYS)),
    ), max_size=2))
    return draw(st.one_of(st.none(), st.just(sel(match_labels=labels, match_expressions=exprs))))


@st.composite
def placed_clusters(draw):
    nodes = []
    for i in range(draw(st.integers(0, 6))):
        nodes.append(NodeInfo(f"n{i}", draw(st.sampled_from(["worker", "master"])), f"192.0.2.{10 + i}/24",
                              draw(st.booleans()),
                              labels=draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2))))
    gateways = {g: Placement(g, draw(selectors()), draw(st.one_of(st.none(), st.integers(1, 3)))) for g in ("g1", "g2")}
    ips = [f"192.0.2.{100 + i}" for i in range(draw(st.integers(0, 8)))]
    where = {ip: gateways[draw(st.sampled_from(sorted(gateways)))] for ip in ips}
    previous = draw(st.dictionaries(st.sampled_from(ips or ["192.0.2.100"]), st.sampled_from([n.name for n in nodes] + ["gone"])))
    return ips, nodes, previous, where


def _may_hold(n: NodeInfo, ip: str, where: Placement) -> bool:
    return n.up and ipaddress.ip_address(ip) in ipaddress.ip_interface(n.node_ip).network and where.selects(n)


@settings(max_examples=300, deadline=None)
@given(placed_clusters())
def test_selected_and_capped_and_seed_rules_hold(cluster):
    ips, nodes, previous, where = cluster
    result = assign(ips, nodes, previous, where)
    by_name = {n.name: n for n in nodes}
    per_gateway: dict[tuple[str, str], int] = {}
    for ip, holder in result.holders.items():
        if not holder:
            assert result.reasons[ip]
            continue
        assert _may_hold(by_name[holder], ip, where[ip]), f"{ip} on {holder}, which its gateway may not use"
        key = (where[ip].gateway, holder)
        per_gateway[key] = per_gateway.get(key, 0) + 1
        if previous.get(ip) != holder:  # a fresh placement: workers first among the selected nodes
            workers = [n for n in nodes if n.role == "worker" and _may_hold(n, ip, where[ip])]
            assert by_name[holder].role == "worker" or not any(
                per_gateway.get((where[ip].gateway, n.name), 0) < (where[ip].max_per_node or 99) for n in workers)
    for (g, _), count in per_gateway.items():
        cap = next(p.max_per_node for p in where.values() if p.gateway == g)
        assert cap is None or count <= cap
    # An IP is unassigned only when no selected Up node in its subnet had room.
    for ip, holder in result.holders.items():
        if not holder:
            p = where[ip]
            room = [n for n in nodes if _may_hold(n, ip, p)
                    and (p.max_per_node is None or per_gateway.get((p.gateway, n.name), 0) < p.max_per_node)]
            assert not room, f"{ip} unassigned though {room[0].name} could take it"


@settings(max_examples=200, deadline=None)
@given(placed_clusters())
def test_placed_assignment_is_stable_and_deterministic(cluster):
    ips, nodes, previous, where = cluster
    result = assign(ips, nodes, previous, where)
    assert assign(ips, list(reversed(nodes)), previous, where).holders == result.holders
    again = assign(ips, nodes, result.holders, where)
    assert again.holders == result.holders and not again.released  # no flapping


def test_models_validate_placement_with_attribute_paths():
    with pytest.raises(models.InvalidObject) as info:
        models.parse("gateway", {"name": "edge", "floating_ips": IPS[:1], "max_ips_per_node": 0,
                                 "node_selector": {"match_expressions": [{"key": "zone", "operator": "Near"}]}})
    assert {v.path: v.message for v in info.value.violations} == {
        ("max_ips_per_node",): "must be at least 1",
        ("node_selector", "match_expressions", 0, "operator"): "operator 'Near' must be one of In, NotIn, Exists, DoesNotExist",
    }
    with pytest.raises(models.InvalidObject) as info:
        models.parse("node", {"name": "w1", "node_ip": "192.0.2.11/24", "labels": {"egress": "not ok"}})
    assert [v.path for v in info.value.violations] == [("labels", "egress")]
    # Expressions are a set: any order, duplicates folded, values sorted.
    a = sel(match_expressions=[{"key": "b", "operator": "Exists"}, {"key": "a", "operator": "In", "values": ["y", "x"]}])
    b = sel(match_expressions=[{"key": "a", "operator": "In", "values": ["x", "y"]}, {"key": "b", "operator": "Exists"},
                               {"key": "b", "operator": "Exists"}])
    assert a == b and a.text() == "a in (x,y),b"


def test_manifest_spells_placement_like_the_seed_and_round_trips():
    from egress_api import manifest

    text = ("kind: AnthosNetworkGateway\nmetadata: {name: edge}\nspec:\n  floatingIPs: [192.0.2.100]\n"
            "  nodeSelector: {matchLabels: {egress: 'yes'}}\n  maxIPsPerNode: 1\n")
    (doc,) = manifest.load(text, "f")
    assert doc.obj.max_ips_per_node == 1 and doc.obj.node_selector.match_labels == {"egress": "yes"}
    rendered = manifest.render("gateway", doc.obj, 3)
    assert "nodeSelector:" in rendered and "maxIPsPerNode: 1" in rendered
    assert manifest.load(rendered, "f")[0].obj == doc.obj
