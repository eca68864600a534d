"""The agent's SIGHUP reload, as config.py decides it: node labels merge file-under-flags key by key, a reload
names what cannot change live; and `egress-lab node label`'s kubectl-style K=V / K- arguments."""

from __future__ import annotations

import pytest

from egress_agent import config as cfg
from egress_lab.cli import label_edits


def flags(tmp_path, **extra):
    base = {k: None for k in cfg.KEYS}
    base.update(node="worker1", node_ip="192.0.2.11/24", socket=str(tmp_path / "a.sock"),
                store=f"sqlite:{tmp_path / 's.db'}")
    base.update(extra)
    return base


def conf_file(tmp_path, text: str) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return str(path)


def test_flag_labels_win_over_the_files_key_by_key(tmp_path):
    path = conf_file(tmp_path, "node_labels: {egress: \"no\", rack: r7}\n")
    conf = cfg.build(flags(tmp_path, node_labels=["egress=yes", "zone=z1"]), path)
    assert conf.node.labels == {"egress": "yes", "rack": "r7", "zone": "z1"}
    assert cfg.build(flags(tmp_path), path).node.labels == {"egress": "no", "rack": "r7"}
    assert cfg.merged_labels(["a=1"], {"a": "2", "b": "3"}) == {"a": "2", "b": "3"}  # file mapping, flags list
    assert cfg.merged_labels({"a": "2"}, ["a=1"]) == {"a": "1"}


def test_a_reload_gives_the_files_new_labels_and_names_what_waits_for_a_restart(tmp_path):
    path = conf_file(tmp_path, "node_labels: {egress: \"yes\"}\n")
    running = cfg.build(flags(tmp_path, node_labels=["zone=z1"]), path)
    conf_file(tmp_path, "node_labels: [egress=no]\nlease_ttl: 5\ngarp_interval: 2\npod_cidr: 10.244.9.0/24\n")
    fresh = cfg.build(flags(tmp_path, node_labels=["zone=z1"]), path)
    labels, restart = cfg.live_changes(running, fresh)
    assert labels == {"egress": "no", "zone": "z1"}
    assert restart == ["--garp-interval", "--lease-ttl", "--pod-cidr"]
    assert cfg.live_changes(running, running) == (dict(running.node.labels), [])


def test_routers_found_at_start_are_not_a_change(tmp_path):
    running = cfg.build(flags(tmp_path))
    with_routers = type(running)(**{**running.__dict__, "node": running.node.model_copy(update={"routers": ["192.0.2.1"]})})
    assert cfg.live_changes(with_routers, running) == ({}, [])


def test_a_bad_label_in_the_file_is_a_config_error_naming_it(tmp_path):
    path = conf_file(tmp_path, "node_labels: {egress: \"not ok\"}\n")
    with pytest.raises(cfg.ConfigError, match="--node-label: label value 'not ok'"):
        cfg.build(flags(tmp_path), path)


def test_label_edits_take_kubectl_removals():
    assert label_edits(["egress=yes", "zone-", "rack=-", "empty="]) == {
        "egress": "yes", "zone": "-", "rack": "-", "empty": ""}
    assert label_edits(["example.com/gateway-"]) == {"example.com/gateway": "-"}
    for bad in ("egress", "-", "=x"):
        with pytest.raises(SystemExit, match="KEY=VALUE, or KEY- to remove KEY"):
            label_edits([bad])
