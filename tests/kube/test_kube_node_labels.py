"""--node-labels-from-kubernetes: the agent watches its own Node object (fieldSelector metadata.name=NODE) and
relabels its node live from it, under the labels its own configuration gives (flags over --config)."""

from __future__ import annotations

from egress_api import models
from helpers.agent import wait_for

KUBELET = {"kubernetes.io/hostname": "worker1", "kubernetes.io/os": "linux"}  # what the double's kubelet sets


def holder(agent) -> str:
    return agent.client.gateway_status("edge").floating_ips["192.0.2.100"]


def test_node_labels_follow_the_node_object(apiserver, make_kube_agent, tmp_path):
    apiserver.apply_node("worker1", {"egress": "yes", "topology.kubernetes.io/zone": "z1"})
    apiserver.apply_node("worker2", {"egress": "yes"})  # another node's: never read
    agent = make_kube_agent("--node-labels-from-kubernetes", "--node-label", "topology.kubernetes.io/zone=local")
    wait_for(lambda: agent.client.get_node("worker1").labels == {
        **KUBELET, "egress": "yes", "topology.kubernetes.io/zone": "local"}, what="the Node object's labels")
    node_requests = [q for _, path, q in apiserver.requests() if path == "/api/v1/nodes"]
    assert node_requests and all(q.get("fieldSelector") == "metadata.name=worker1" for q in node_requests)

    agent.client.create_gateway(models.parse("gateway", {"name": "edge", "floating_ips": ["192.0.2.100"],
                                                         "node_selector": {"match_labels": {"egress": "yes"}}}))
    wait_for(lambda: holder(agent) == "worker1", what="192.0.2.100 on worker1")

    apiserver.apply_node("worker1", {"egress": "no"})  # kubectl label node worker1 egress=no --overwrite
    wait_for(lambda: holder(agent) == "", what="192.0.2.100 let go after the Node relabel")
    assert agent.client.get_node("worker1").labels == {**KUBELET, "egress": "no",
                                                       "topology.kubernetes.io/zone": "local"}
    assert "node worker1 relabelled from kubernetes Node" in agent.log()

    apiserver.apply_node("worker1", {"egress": "yes"})
    wait_for(lambda: holder(agent) == "worker1", what="192.0.2.100 back on the only node")
    assert [q for _, path, q in apiserver.requests() if path == "/api/v1/nodes" and not q.get("watch")] == \
        node_requests[:1], "one list, then one watch: no re-list for label changes"
    assert agent.client.health().status == "SERVING"


def test_without_the_flag_the_node_object_is_not_read(apiserver, make_kube_agent):
    apiserver.apply_node("worker1", {"egress": "yes"})
    agent = make_kube_agent("--node-label", "rack=r7")
    apiserver.apply_namespace("alice", {})
    wait_for(lambda: "alice" in {n.name for n in agent.client.list_namespaces()}, what="the watcher running")
    assert agent.client.get_node("worker1").labels == {"rack": "r7"}
    assert not [p for _, p, _ in apiserver.requests() if p.startswith("/api/v1/nodes")]
