"""Gateway placement with real agents on etcd: node_selector over --node-label, and a relabel moving IPs once."""

from __future__ import annotations

import time

import pytest

from egress_api import models
from helpers.agent import wait_for
from helpers.agent_group import agreed_status, moves

pytestmark = pytest.mark.etcd

IPS = ["192.0.2.100", "192.0.2.101"]


def relabel(agent, value: str) -> None:
    """Restart `agent` with --node-label egress=VALUE (a relabel by restart; live, by SIGHUP: test_cluster_relabel.py)."""
    agent.extra_args = [a for a in agent.extra_args if not a.startswith("egress=")] + [f"egress={value}"]
    agent.restart()


def test_relabelled_node_loses_its_ips_once_and_never_gets_them_back(empty_group):
    g = empty_group
    w1 = g.add("worker1", "worker", "192.0.2.11/24", extra=["--node-label", "egress=yes"])
    w2 = g.add("worker2", "worker", "192.0.2.12/24", extra=["--node-label", "egress=yes"])
    w3 = g.add("worker3", "worker", "192.0.2.13/24")  # unlabelled: never selected, though it holds nothing
    everyone = [w1, w2, w3]
    w3.client.create_gateway(models.parse("gateway", {
        "name": "default", "floating_ips": IPS, "node_selector": {"match_labels": {"egress": "yes"}}}))
    agreed_status(everyone, lambda s: s.floating_ips == {"192.0.2.100": "worker1", "192.0.2.101": "worker2"},
                  "one IP on each selected worker", timeout=20)
    assert moves(w3) == 0

    relabel(w1, "no")
    st = agreed_status(everyone, lambda s: s.nodes["worker1"] == "Up" and s.floating_ips == dict.fromkeys(IPS, "worker2"),
                       "both IPs on worker2 with worker1 back Up, relabelled", timeout=20)
    assert w1.client.get_node("worker1").labels == {"egress": "no"}
    assert st.unassigned_reasons == {}
    assert moves(w3) == 1
    # Several reconcile passes later (resync every 2 s) nothing has moved again.
    time.sleep(5)
    assert w3.client.gateway_status("default").floating_ips == dict.fromkeys(IPS, "worker2")
    assert moves(w3) == 1

    # Labelled back: it matches again, but nothing moves back to it.
    relabel(w1, "yes")
    wait_for(lambda: w3.client.get_node("worker1").labels == {"egress": "yes"}
             and w3.client.gateway_status("default").nodes["worker1"] == "Up", timeout=20, what="worker1 back, matching")
    time.sleep(5)
    assert w3.client.gateway_status("default").floating_ips == dict.fromkeys(IPS, "worker2")
    assert moves(w3) == 1

    # worker2 stops: its IPs go to the selected worker1, never to the unselected, emptier worker3.
    w2.leave()
    agreed_status([w1, w3], lambda s: s.floating_ips == dict.fromkeys(IPS, "worker1"), "failover within the selector",
                  timeout=20)


def test_no_selected_node_up_leaves_ips_unassigned_naming_the_selector(empty_group):
    g = empty_group
    w1 = g.add("worker1", "worker", "192.0.2.11/24", extra=["--node-label", "egress=yes"])
    w2 = g.add("worker2", "worker", "192.0.2.12/24")
    w2.client.create_gateway(models.parse("gateway", {
        "name": "default", "floating_ips": IPS[:1], "node_selector": {"match_labels": {"egress": "yes"}}}))
    agreed_status([w1, w2], lambda s: s.floating_ips == {"192.0.2.100": "worker1"}, "on worker1", timeout=20)
    w1.leave()
    st = wait_for(lambda: (s := w2.client.gateway_status("default")).floating_ips == {"192.0.2.100": ""} and s,
                  timeout=20, what="unassigned once worker1 is Down")
    assert st.unassigned_reasons == {"192.0.2.100": "every node in 192.0.2.100's subnet that gateway 'default''s "
                                                    "node_selector {egress=yes} selects is Down (worker1)"}
