"""NodeLabels (egress_agent.relabel) on a real SQLite store: configuration over the Node object's labels, refusals
that change nothing, the record and the controller's view written together, one audit line per attempt."""

from __future__ import annotations

import json

import pytest

from egress_agent.controller.nodes import StandaloneNodes
from egress_agent.relabel import NodeLabels, standalone_writer
from egress_agent.server.audit import AuditLog
from egress_agent.store.base import NODE
from egress_agent.store.sqlite import SqliteStore
from egress_api import models


@pytest.fixture
def parts(tmp_path):
    store = SqliteStore(str(tmp_path / "state.db"))
    node = models.parse("node", {"name": "worker1", "node_ip": "192.0.2.11/24", "labels": {"egress": "yes"}})
    view = StandaloneNodes(node)
    audit = AuditLog(str(tmp_path / "audit.jsonl"), "worker1")
    labels = NodeLabels(node, standalone_writer(store, view), audit)
    yield labels, store, view, tmp_path / "audit.jsonl"
    audit.close()
    store.close()


def record_labels(store) -> dict:
    return store.get(NODE, "worker1").value["labels"]


def test_configuration_wins_over_the_node_object_and_each_source_keeps_its_own(parts):
    labels, store, view, _ = parts
    assert labels.from_kubernetes({"egress": "no", "topology.kubernetes.io/zone": "z1"})
    assert labels.node.labels == {"egress": "yes", "topology.kubernetes.io/zone": "z1"}  # egress: configured
    assert labels.from_config({"rack": "r7"})  # the file no longer says egress: the Node's value shows
    assert labels.node.labels == {"egress": "no", "rack": "r7", "topology.kubernetes.io/zone": "z1"}
    assert labels.from_kubernetes({})  # the Node lost its labels (or was deleted): configuration only
    assert labels.node.labels == {"rack": "r7"}
    assert record_labels(store) == {"rack": "r7"} and view()[0].labels == {"rack": "r7"}


def test_a_refused_relabel_changes_nothing_and_is_audited(parts):
    labels, store, view, audit = parts
    labels.from_kubernetes({"zone": "z1"})
    assert not labels.from_config({"egress": "not ok"})
    assert labels.node.labels == {"egress": "yes", "zone": "z1"} and view()[0].labels == labels.node.labels
    assert record_labels(store) == {"egress": "yes", "zone": "z1"}
    assert labels.from_kubernetes({"zone": "z2"})  # the refused configuration did not replace the kept one
    assert labels.node.labels == {"egress": "yes", "zone": "z2"}
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["method"], r["source"], r["outcome"]) for r in lines] == [
        ("Relabel", "kubernetes Node", "OK"), ("Relabel", "SIGHUP", "INVALID_ARGUMENT"),
        ("Relabel", "kubernetes Node", "OK")]


def test_an_unwritable_store_keeps_the_old_labels_everywhere(parts):
    labels, store, view, _ = parts
    store.close()  # every commit fails from now on
    assert not labels.from_config({"egress": "no"})
    assert labels.node.labels == {"egress": "yes"} and view()[0].labels == {"egress": "yes"}
