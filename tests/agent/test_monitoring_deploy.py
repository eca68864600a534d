"""deploy/prometheus/rules.yaml and deploy/grafana/: well-formed, and using only metrics a real agent exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from helpers.agent_group import AgentGroup
from helpers.etcd import free_port, make_cluster
from helpers.metrics import scrape

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yaml"
DASHBOARD = DEPLOY / "grafana" / "egress-dashboard.json"
DURATION = re.compile(r"^\d+[smhd]$")
#: Series Prometheus itself makes for every target, not the agent.
SYNTHETIC = {"up"}
#: The sample names each metric type has in the text format.
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",)}


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    assert set(doc) == {"groups"}
    out = []
    for group in doc["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"], group.get("name")
        out += group["rules"]
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """Every sample name a real agent of a cluster (on etcd) can carry, from the families it declares."""
    tmp_path = tmp_path_factory.mktemp("exported")
    etcd = make_cluster(tmp_path / "etcd", size=1)
    group = AgentGroup(tmp_path, etcd)
    try:
        etcd.start()
        address = f"127.0.0.1:{free_port()}"
        group.add("worker1", extra=["--metrics-listen", address])
        m = scrape(address)
    finally:
        group.close()
        etcd.close()
    return {f.name + suffix for f in m.families.values() for suffix in SUFFIXES[f.type]}


def test_rules_are_well_formed():
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in rules():
        name = rule["alert"]
        assert re.fullmatch(r"Egress[A-Za-z]+", name), name
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert "for" not in rule or DURATION.match(rule["for"]), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        expr = rule["expr"]
        for opening, closing in ("()", "[]", "{}"):
            assert expr.count(opening) == expr.count(closing), f"{name}: unbalanced {opening}{closing}"


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers not called as functions, outside {...}/[...]/"..."
    and outside label lists (`by (...)`, `on (...)`, ...)."""
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", promql)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    used = {m for m in re.findall(r"\b([a-z_][a-z0-9_]*)\b(?!\s*\()", expr) if m.startswith("egress_")}
    return used | {m for m in SYNTHETIC if re.search(rf"\b{m}\b(?!\s*\()", expr)}


@pytest.mark.etcd
def test_rules_use_only_metrics_the_agent_exports(exported):
    for rule in rules():
        used = metric_names(rule["expr"])
        assert used, f"{rule['alert']} uses no egress metric"
        unknown = used - exported - SYNTHETIC
        assert not unknown, f"{rule['alert']} uses metrics the agent does not export: {sorted(unknown)}"


def panels() -> list[dict]:
    dash = json.loads(DASHBOARD.read_text())
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource"}
    return dash["panels"]


def test_dashboard_is_well_formed():
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in panels():
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]


@pytest.mark.etcd
def test_dashboard_uses_only_metrics_the_agent_exports(exported):
    seen = set()
    for p in panels():
        for target in p.get("targets", []):
            used = metric_names(target["expr"])
            assert used, f"panel {p['title']!r} reads no egress metric"
            unknown = used - exported
            assert not unknown, f"panel {p['title']!r} uses metrics the agent does not export: {sorted(unknown)}"
            seen |= used
    # Every family the agent exports is on the dashboard somewhere (its suffix forms count once).
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in exported if n.startswith("egress_")}
    assert families - {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in seen} == set()
