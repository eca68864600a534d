"""Gateway placement through a real agent's API: node labels, node_selector, max_ips_per_node, their errors,
reasons and events, egressctl status/describe, and the --node-label flag (standalone node worker1)."""

from __future__ import annotations

import json
import subprocess

import pytest

from egress_api import errors, models
from egress_api.v1 import egress_pb2 as pb
from helpers.agent import agent_command, ctl_command, start_agent, wait_for

IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102"]


@pytest.fixture
def labelled(tmp_path_factory):
    """worker1 labelled egress=yes and zone=z1, with two service CIDRs."""
    with start_agent(tmp_path_factory.mktemp("agent"),
                     extra_args=["--node-label", "egress=yes", "--node-label", "topology.kubernetes.io/zone=z1",
                                 "--service-cidr", "10.96.0.0/12,10.100.0.0/16"]) as a:
        yield a


def gateway(**placement) -> models.Gateway:
    return models.parse("gateway", {"name": "edge", "floating_ips": IPS, **placement})


def settled(client, name="edge"):
    def ready():
        st = client.gateway_status(name)
        return st if all("waiting" not in r for r in st.unassigned_reasons.values()) else None

    return wait_for(ready, what="assignment")


def test_node_labels_and_service_cidrs_are_published_and_shown(labelled):
    c = labelled.client
    node = c.get_node("worker1")
    assert node.labels == {"egress": "yes", "topology.kubernetes.io/zone": "z1"}
    assert node.service_cidrs == ["10.96.0.0/12", "10.100.0.0/16"]
    status = subprocess.run([*ctl_command(), "--endpoint", labelled.endpoint, "status"], capture_output=True,
                            text=True, timeout=30, check=True).stdout
    header, row = status.splitlines()[4:6]
    assert header.split()[-4:] == ["IPS", "LABELS", "SERVICE", "CIDRS"]
    assert row.split()[-2:] == ["egress=yes,topology.kubernetes.io/zone=z1", "10.96.0.0/12,10.100.0.0/16"]
    nodes = subprocess.run([*ctl_command(), "--endpoint", labelled.endpoint, "get", "nodes", "-o", "json"],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert json.loads(nodes)[0]["service_cidrs"] == ["10.96.0.0/12", "10.100.0.0/16"]


def test_a_matching_selector_round_trips_and_places(labelled):
    c = labelled.client
    gw = gateway(node_selector={"match_labels": {"egress": "yes"},
                                "match_expressions": [{"key": "topology.kubernetes.io/zone", "operator": "In",
                                                       "values": ["z2", "z1"]}]},
                 max_ips_per_node=2)
    stored = c.create_gateway(gw)
    assert stored.obj == gw and stored.obj.node_selector.match_expressions[0].values == ["z1", "z2"]
    assert c.get_gateway("edge").obj == gw
    st = settled(c)
    # The cap holds: worker1 takes two of edge's three IPs; the third waits, its reason naming the cap.
    assert st.floating_ips == {"192.0.2.100": "worker1", "192.0.2.101": "worker1", "192.0.2.102": ""}
    assert st.unassigned_reasons == {"192.0.2.102": "every Up node that may hold it already holds max_ips_per_node=2 "
                                                    "of gateway 'edge''s IPs (worker1)"}
    out = subprocess.run([*ctl_command(), "--endpoint", labelled.endpoint, "describe", "gateway", "edge"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert "Node Selector:     egress=yes,topology.kubernetes.io/zone in (z1,z2)" in out
    assert "Max IPs Per Node:  2" in out

    # Lifting the cap assigns the third; dropping the selector keeps every IP where it is.
    c.update_gateway(gateway(node_selector={"match_labels": {"egress": "yes"}}))
    assert wait_for(lambda: c.gateway_status("edge").floating_ips["192.0.2.102"] == "worker1", what="third IP")
    c.update_gateway(gateway())
    assert c.get_gateway("edge").obj.node_selector is None and c.get_gateway("edge").obj.max_ips_per_node is None


def test_a_selector_no_node_matches_leaves_ips_unassigned_with_a_reason_and_an_event(labelled):
    c = labelled.client
    gw = gateway(node_selector={"match_labels": {"egress": "no"}})
    dry = c.validate_gateway(gw)
    assert dry.errors == []
    assert [v.path for v in dry.warnings][:1] == [("node_selector",)]
    assert dry.warnings[0].message.startswith("NoMatchingNode: gateway 'edge''s node_selector {egress=no} matches "
                                              "none of the nodes the agent knows (worker1)")
    c.create_gateway(gw)
    reason = "no node in 192.0.2.100's subnet matches gateway 'edge''s node_selector {egress=no} (worker1 do not)"
    assert settled(c).unassigned_reasons["192.0.2.100"] == reason
    events = wait_for(lambda: [e for e in c.list_events("gateway", "edge") if e.reason == "Unassignable"],
                      what="Unassignable events")
    assert f"floating IP 192.0.2.100 cannot be assigned to any node: {reason}" in [e.message for e in events]


@pytest.mark.parametrize(
    "msg, path, message",
    [
        (pb.Gateway(name="edge", floating_ips=IPS, max_ips_per_node=5000), ("max_ips_per_node",), "must be at most 1,024"),
        (pb.Gateway(name="edge", floating_ips=IPS, node_selector=pb.LabelSelector(match_labels={"bad key!": "x"})),
         ("node_selector", "match_labels", "bad key!"), "label key 'bad key!'"),
        (pb.Gateway(name="edge", floating_ips=IPS, node_selector=pb.LabelSelector(
            match_expressions=[pb.LabelSelectorRequirement(key="a", operator="In")])),
         ("node_selector", "match_expressions", 0, "values"), "operator In needs at least one value"),
    ],
)
def test_bad_placement_is_refused_with_its_path_and_changes_nothing(agent_process, msg, path, message):
    c = agent_process.client
    with pytest.raises(errors.InvalidArgument) as info:
        c.call("CreateGateway", msg)
    assert [v.path for v in info.value.violations] == [path]
    assert message in info.value.violations[0].message
    assert c.list_gateways() == []


def test_bad_node_labels_exit_2_naming_the_flag(tmp_path):
    base = ["--node", "worker1", "--node-ip", "192.0.2.11/24", "--socket", str(tmp_path / "a.sock"),
            "--store", f"sqlite:{tmp_path / 's.db'}"]
    for label, message in [("egress", "--node-label egress: expected KEY=VALUE"),
                           ("egress=not ok", "--node-label: label value 'not ok'"),
                           ("-x=y", "--node-label: label key '-x'")]:
        r = subprocess.run([*agent_command(), *base, f"--node-label={label}"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "s.db").exists()


def test_node_labels_from_the_config_file(tmp_path):
    conf = tmp_path / "agent.yaml"
    conf.write_text("node_labels:\n  egress: \"yes\"\n  rack: r7\n")
    with start_agent(tmp_path / "a", extra_args=["--config", str(conf)]) as a:
        assert a.client.get_node("worker1").labels == {"egress": "yes", "rack": "r7"}
