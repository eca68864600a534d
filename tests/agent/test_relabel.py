"""Live relabelling of a standalone (SQLite) agent: SIGHUP re-reads --config, rewrites the node record, the
controller re-places what no longer matches; the relabel is audited; without --config SIGHUP only logs."""

from __future__ import annotations

import json

from egress_api import models
from helpers.agent import start_agent, wait_for


def test_sighup_relabels_a_standalone_node_and_its_gateway_follows(tmp_path):
    conf = tmp_path / "agent.yaml"
    conf.write_text("node_labels: {egress: \"yes\"}\n")
    audit = tmp_path / "audit.jsonl"
    with start_agent(tmp_path / "a", extra_args=["--config", str(conf), "--node-label", "zone=z1",
                                                 "--audit-log", str(audit)]) as a:
        c = a.client
        c.create_gateway(models.parse("gateway", {"name": "edge", "floating_ips": ["192.0.2.100"],
                                                  "node_selector": {"match_labels": {"egress": "yes"}}}))
        wait_for(lambda: c.gateway_status("edge").floating_ips == {"192.0.2.100": "worker1"}, what="on worker1")

        conf.write_text("node_labels: {egress: \"no\", zone: z9}\n")  # zone: the flag wins
        a.reload()
        st = wait_for(lambda: (s := c.gateway_status("edge")).floating_ips == {"192.0.2.100": ""} and s,
                      what="192.0.2.100 let go")
        assert "no node in 192.0.2.100's subnet matches gateway 'edge''s node_selector {egress=yes}" in \
            st.unassigned_reasons["192.0.2.100"]
        assert c.get_node("worker1").labels == {"egress": "no", "zone": "z1"}
        lines = [json.loads(line) for line in audit.read_text().splitlines()]
        assert [(r["method"], r["object"], r["outcome"], r["source"], r["labels"]) for r in lines
                if r["method"] == "Relabel"] == [("Relabel", "node/worker1", "OK", "SIGHUP", {"egress": "no", "zone": "z1"})]

        # A malformed label: the file is refused as a whole, nothing changes, and the attempt is audited.
        conf.write_text("node_labels: {\"bad label\": \"yes\"}\n")
        a.reload()
        wait_for(lambda: "SIGHUP: configuration not applied, nothing changed" in a.log(), what="the refusal")
        refused = wait_for(lambda: [r for r in map(json.loads, audit.read_text().splitlines())
                                    if r["method"] == "Relabel" and r["outcome"] == "INVALID_ARGUMENT"],
                           what="the refusal audited")
        assert refused[0]["source"] == "SIGHUP" and refused[0]["labels"] is None and "bad label" in refused[0]["error"]
        assert c.get_node("worker1").labels == {"egress": "no", "zone": "z1"}

        conf.write_text("node_labels: {egress: \"yes\"}\n")
        a.reload()
        wait_for(lambda: c.gateway_status("edge").floating_ips == {"192.0.2.100": "worker1"}, what="back on worker1")


def test_sighup_without_a_config_file_only_says_so(tmp_path):
    with start_agent(tmp_path / "a", extra_args=["--node-label", "egress=yes"]) as a:
        a.reload()
        wait_for(lambda: "SIGHUP: no --config file to re-read" in a.log(), what="the log line")
        assert a.proc.poll() is None
        assert a.client.get_node("worker1").labels == {"egress": "yes"}
