"""Live relabelling on etcd: an agent re-reads its --config on SIGHUP and rewrites its node record under the
same lease; the leader moves the IPs of a holder that no longer matches once, and never back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from egress_api import models
from helpers.agent import wait_for
from helpers.agent_group import agreed_status, moves

pytestmark = pytest.mark.etcd

IPS = ["192.0.2.100", "192.0.2.101"]


def write_labels(path: Path, **labels: str) -> None:
    path.write_text("node_labels:\n" + "".join(f"  {k}: {v!r}\n" for k, v in labels.items()))


def relabel(agent, path: Path, **labels: str) -> None:
    write_labels(path, **labels)
    agent.reload()


def moved(agent, ip: str) -> int:
    """FloatingIPMoved events naming `ip` (folded repeats counted)."""
    return sum(e.count for e in agent.client.list_events("gateway", "default")
               if e.reason == "FloatingIPMoved" and ip in e.message)


@pytest.fixture
def labelled(empty_group, tmp_path):
    """worker1 and worker2 labelled egress=yes through their --config files, worker3 unlabelled; a gateway
    selecting egress=yes with one IP on each of worker1 and worker2."""
    g = empty_group
    confs = {n: tmp_path / f"{n}.yaml" for n in ("worker1", "worker2")}
    for path in confs.values():
        write_labels(path, egress="yes")
    w1 = g.add("worker1", "worker", "192.0.2.11/24", extra=["--config", str(confs["worker1"])])
    w2 = g.add("worker2", "worker", "192.0.2.12/24", extra=["--config", str(confs["worker2"])])
    w3 = g.add("worker3", "worker", "192.0.2.13/24")
    w3.client.create_gateway(models.parse("gateway", {
        "name": "default", "floating_ips": IPS, "node_selector": {"match_labels": {"egress": "yes"}}}))
    agreed_status([w1, w2, w3], lambda s: s.floating_ips == {"192.0.2.100": "worker1", "192.0.2.101": "worker2"},
                  "one IP on each selected worker", timeout=20)
    return g, confs


def test_sighup_relabel_moves_the_holders_ip_once_and_never_back(labelled):
    g, confs = labelled
    w1, w2, w3 = g["worker1"], g["worker2"], g["worker3"]
    everyone = [w1, w2, w3]
    lease_before = w1.log().count("registered in etcd")

    relabel(w1, confs["worker1"], egress="no")
    agreed_status(everyone, lambda s: s.floating_ips == dict.fromkeys(IPS, "worker2"),
                  "192.0.2.100 moved to worker2", timeout=10)
    st = w3.client.gateway_status("default")
    assert st.nodes["worker1"] == "Up" and st.unassigned_reasons == {}  # never Down: same process, same lease
    assert w3.client.get_node("worker1").labels == {"egress": "no"}
    assert (moved(w3, "192.0.2.100"), moved(w3, "192.0.2.101")) == (1, 0)
    assert [e.message for e in w3.client.list_events("gateway", "default") if e.reason == "FloatingIPMoved"] == [
        "floating IP 192.0.2.100 moved from worker1 to worker2: worker1 no longer matches gateway 'default''s node_selector "
        "{egress=yes}"]
    assert "node worker1 relabelled from SIGHUP: egress=yes -> egress=no" in w1.log()
    assert w1.log().count("registered in etcd") == lease_before  # rewritten under the lease it had
    # Several reconcile passes later (resync every 2 s) nothing has moved back or again.
    time.sleep(5)
    assert w3.client.gateway_status("default").floating_ips == dict.fromkeys(IPS, "worker2")
    assert moves(w3) == 1

    # Labelled back: worker1 matches again, but a stable holder keeps what it holds.
    relabel(w1, confs["worker1"], egress="yes")
    wait_for(lambda: w3.client.get_node("worker1").labels == {"egress": "yes"}, timeout=10, what="worker1 relabelled back")
    time.sleep(5)
    assert w3.client.gateway_status("default").floating_ips == dict.fromkeys(IPS, "worker2")
    assert moves(w3) == 1


def test_a_bad_label_on_sighup_is_refused_and_changes_nothing(labelled):
    g, confs = labelled
    w1, w3 = g["worker1"], g["worker3"]
    relabel(w1, confs["worker1"], egress="not ok")
    wait_for(lambda: "SIGHUP: configuration not applied, nothing changed: --node-label: label value 'not ok'" in w1.log(),
             timeout=10, what="the refusal in worker1's log")
    time.sleep(3)  # a pass or two of the controller
    assert w3.client.get_node("worker1").labels == {"egress": "yes"}
    assert w3.client.gateway_status("default").floating_ips == {"192.0.2.100": "worker1", "192.0.2.101": "worker2"}
    assert moves(w3) == 0
    assert w1.proc.poll() is None  # SIGHUP never stops the agent


def test_settings_that_cannot_change_live_are_named_and_left_alone(labelled):
    g, confs = labelled
    w2, w3 = g["worker2"], g["worker3"]
    # role is also a flag here (--role worker): flags win, so only the two file-only settings differ.
    confs["worker2"].write_text("node_labels: {egress: \"yes\", rack: r7}\nlease_ttl: 5\ngarp_repeats: 1\nrole: master\n")
    w2.reload()
    wait_for(lambda: w3.client.get_node("worker2").labels == {"egress": "yes", "rack": "r7"}, timeout=10,
             what="worker2's new label")
    assert "SIGHUP: --garp-repeats, --lease-ttl changed but cannot change live: restart the agent to apply them" in w2.log()
    assert w3.client.get_node("worker2").role == "worker"
