"""`egress-agent --kubernetes`: namespaces and this node's pods from the Kubernetes API (the API-server double).

The agent is a real process (worker1, sqlite store, no datapath); what it
learned is read back through its API, and selections from its store.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from egress_agent.node.desired import selections
from egress_agent.store.base import POD, NAMESPACE, POLICY
from egress_agent.store.sqlite import SqliteStore
from egress_api import models

from helpers.agent import wait_for
from helpers.cni import egress_conf, invoke, k8s_args, ptp_result

NS_META = "kubernetes.io/metadata.name"  # kube-apiserver puts it on every namespace


def pods_of(agent) -> dict[str, models.Pod]:
    return {f"{p.namespace}/{p.name}": p for p in agent.client.list_pods()}


def namespaces_of(agent) -> dict[str, dict[str, str]]:
    return {n.name: dict(n.labels) for n in agent.client.list_namespaces()}


def lists(apiserver, resource: str) -> int:
    """List requests (not watches) the agent made for `resource`."""
    return sum(1 for method, path, q in apiserver.requests()
               if path.endswith(f"/{resource}") and q.get("watch") not in ("1", "true"))


def cluster(apiserver) -> None:
    apiserver.apply_namespace("alice", {"user": "alice"})
    apiserver.apply_namespace("bob", {"user": "bob"})
    apiserver.apply_pod("alice", "fe1", "worker1", {"role": "frontend"}, pod_ip="10.244.1.2", uid="uid-fe1")
    apiserver.apply_pod("bob", "bob1", "worker1", {"role": "frontend"}, pod_ip="10.244.1.3", uid="uid-bob1")
    apiserver.apply_pod("alice", "fe2", "worker2", {"role": "frontend"}, pod_ip="10.244.2.2")  # another node's
    apiserver.apply_pod("alice", "starting", "worker1", {"role": "frontend"})  # no IP yet: CNI will tell


def test_initial_list_adopts_pods_that_ran_before_the_agent(apiserver, make_kube_agent):
    cluster(apiserver)
    agent = make_kube_agent()
    pods = wait_for(lambda: len(pods_of(agent)) == 2 and pods_of(agent), what="the two running pods")
    assert pods["alice/fe1"] == models.Pod(name="fe1", namespace="alice", node="worker1", ip="10.244.1.2",
                                           uid="uid-fe1", labels={"role": "frontend"})
    assert pods["bob/bob1"].ip == "10.244.1.3"
    assert namespaces_of(agent)["alice"] == {"user": "alice", NS_META: "alice"}
    watched = [q for _, path, q in apiserver.requests() if path == "/api/v1/pods"]
    assert watched and all(q.get("fieldSelector") == "spec.nodeName=worker1" for q in watched)
    assert agent.client.health().status == "SERVING"


def test_label_changes_pod_deletion_and_namespace_relabel_reach_the_store(apiserver, make_kube_agent):
    cluster(apiserver)
    agent = make_kube_agent()
    wait_for(lambda: "alice/fe1" in pods_of(agent), what="fe1")
    store = SqliteStore(str(agent.store_path))
    policy = models.Policy.model_validate({
        "name": "alice", "egress": [{"namespace_selector": {"match_labels": {"user": "alice"}},
                                     "pod_selector": {"match_labels": {"role": "frontend"}}}],
        "destination_cidrs": ["198.51.100.0/24"], "egress_source_ip": "192.0.2.100"})
    selected = lambda: selections(store.snapshot([POD, NAMESPACE, POLICY]), [policy])["alice"]  # noqa: E731
    try:
        wait_for(lambda: selected() == {"10.244.1.2"}, what="fe1 selected")
        apiserver.apply_pod("alice", "fe1", "worker1", {"role": "backend"}, pod_ip="10.244.1.2", uid="uid-fe1")
        wait_for(lambda: selected() == set(), what="fe1 no longer selected after kubectl label")
        apiserver.apply_namespace("bob", {"user": "alice"})  # every pod of bob's namespace is re-selected
        wait_for(lambda: selected() == {"10.244.1.3"}, what="bob1 selected through its namespace")
        apiserver.delete_pod("bob", "bob1")
        wait_for(lambda: "bob/bob1" not in pods_of(agent), what="bob1 removed")
        assert selected() == set()
        apiserver.delete_namespace("alice")
        wait_for(lambda: "alice" not in namespaces_of(agent) and "alice/fe1" not in pods_of(agent),
                 what="alice and its pods removed")
    finally:
        store.close()
    assert lists(apiserver, "pods") == 1 and lists(apiserver, "namespaces") == 1, "no re-list for plain changes"


@pytest.mark.parametrize("abrupt", [False, True], ids=["stream-ends", "connection-cut"])
def test_a_dropped_watch_resumes_without_relisting(apiserver, make_kube_agent, abrupt):
    cluster(apiserver)
    agent = make_kube_agent()
    wait_for(lambda: "alice/fe1" in pods_of(agent), what="fe1")
    watches = sum(1 for _, p, q in apiserver.requests() if p == "/api/v1/pods" and q.get("watch"))
    apiserver.drop_watches(abrupt=abrupt)
    apiserver.apply_pod("alice", "fe1", "worker1", {"role": "db"}, pod_ip="10.244.1.2", uid="uid-fe1")
    apiserver.apply_namespace("alice", {"user": "alice", "tier": "gold"})
    wait_for(lambda: pods_of(agent)["alice/fe1"].labels == {"role": "db"}, what="the change made during the drop")
    wait_for(lambda: namespaces_of(agent)["alice"].get("tier") == "gold", what="the namespace change")
    resumed = [q for _, p, q in apiserver.requests() if p == "/api/v1/pods" and q.get("watch")][watches:]
    assert resumed and resumed[0].get("resourceVersion") not in (None, "", "0"), resumed
    assert resumed[0].get("allowWatchBookmarks") == "true"
    assert lists(apiserver, "pods") == 1 and lists(apiserver, "namespaces") == 1


def test_410_gone_relists(apiserver, make_kube_agent):
    cluster(apiserver)
    agent = make_kube_agent()
    wait_for(lambda: "alice/fe1" in pods_of(agent), what="fe1")
    apiserver.apply_pod("alice", "fe1", "worker1", {"role": "db"}, pod_ip="10.244.1.2", uid="uid-fe1")
    wait_for(lambda: pods_of(agent)["alice/fe1"].labels == {"role": "db"}, what="the first change")
    apiserver.set_down(True)  # the agent misses what follows, then its resourceVersion is compacted away
    apiserver.delete_pod("bob", "bob1")
    apiserver.apply_pod("alice", "fe1", "worker1", {"role": "frontend"}, pod_ip="10.244.1.2", uid="uid-fe1")
    apiserver.compact()
    apiserver.set_down(False)
    wait_for(lambda: lists(apiserver, "pods") == 2, timeout=15, what="a re-list after 410 Gone")
    wait_for(lambda: set(pods_of(agent)) == {"alice/fe1"} and pods_of(agent)["alice/fe1"].labels["role"] == "frontend",
             timeout=10, what="the store to match the re-list (bob1 gone, fe1 relabelled)")


def test_apiserver_down_at_start_agent_serves_and_says_so(apiserver, make_kube_agent):
    cluster(apiserver)
    apiserver.set_down(True)
    agent = make_kube_agent(start=False)
    agent.proc = subprocess.Popen(agent.args, stdout=open(agent.log_path, "ab"), stderr=subprocess.STDOUT)

    def degraded():
        try:
            h = agent.client.health()
        except Exception:
            return None
        return h if h.status == "DEGRADED" else None

    health = wait_for(degraded, timeout=20, what="a DEGRADED health")
    assert "kubernetes API" in health.detail and health.store_ok
    agent.client.create_gateway(models.Gateway(floating_ips=["192.0.2.100"]))  # the API serves meanwhile
    apiserver.set_down(False)
    wait_for(lambda: agent.client.health().status == "SERVING", timeout=15, what="SERVING once the apiserver is back")
    wait_for(lambda: set(pods_of(agent)) == {"alice/fe1", "bob/bob1"}, what="the pods adopted after the fact")


def _cni_add(agent, name="starting", ip="10.244.1.9", uid="", **conf):
    return invoke("ADD", egress_conf(str(agent.pod_socket), ptp_result(ip, "veth0starting"), **conf),
                  args=k8s_args("alice", name, uid))


def test_cni_add_joins_the_pods_labels_from_the_watch(apiserver, make_kube_agent):
    cluster(apiserver)
    agent = make_kube_agent()
    res = _cni_add(agent)
    assert res.status == 0, res.stdout + res.stderr
    pod = pods_of(agent)["alice/starting"]
    assert (pod.ip, pod.interface, pod.labels) == ("10.244.1.9", "veth0starting", {"role": "frontend"})
    apiserver.apply_pod("alice", "starting", "worker1", {"role": "backend"}, pod_ip="10.244.1.9")
    wait_for(lambda: pods_of(agent)["alice/starting"].labels == {"role": "backend"}, what="the relabel")
    assert pods_of(agent)["alice/starting"].interface == "veth0starting"  # the CNI's half is kept


def test_cni_add_waits_for_the_pod_to_arrive_and_fails_closed_when_it_does_not(apiserver, make_kube_agent):
    cluster(apiserver)
    agent = make_kube_agent("--kube-label-wait", "2")
    start = time.monotonic()
    res = _cni_add(agent, name="ghost")
    assert res.status == 1 and res.error_code == 11, res.stdout
    assert 2 <= time.monotonic() - start < 10 and "has not arrived from the Kubernetes API" in res.json["msg"]
    assert "alice/ghost" not in pods_of(agent)
    # A pod that arrives while its ADD waits gets in, with its labels.
    timer = threading.Timer(0.5, lambda: apiserver.apply_pod("alice", "late", "worker1", {"role": "frontend"},
                                                              uid="uid-late"))
    timer.start()
    res = _cni_add(agent, name="late", uid="uid-late")
    timer.join()
    assert res.status == 0, res.stdout
    assert pods_of(agent)["alice/late"].labels == {"role": "frontend"}
