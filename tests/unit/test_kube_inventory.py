"""KubeInventory: the join of Kubernetes metadata (labels) with CNI ADDs (IP, interface), on a real SQLite store.

Objects are the kubernetes client's own models, as the watch delivers them.
"""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes.client import V1Namespace, V1ObjectMeta, V1Pod, V1PodSpec, V1PodStatus

from egress_agent.kube.inventory import KubeInventory
from egress_agent.server.pods import LabelsUnknown
from egress_agent.store.base import NAMESPACE, POD
from egress_agent.store.sqlite import SqliteStore
from egress_api import models


def kpod(name, labels, uid="u1", ip=None, node="worker1", phase="Running", ns="alice"):
    return V1Pod(metadata=V1ObjectMeta(name=name, namespace=ns, uid=uid, labels=labels),
                 spec=V1PodSpec(containers=[], node_name=node), status=V1PodStatus(phase=phase, pod_ip=ip))


def kns(name, labels):
    return V1Namespace(metadata=V1ObjectMeta(name=name, labels=labels))


def cni_pod(name="fe1", uid="u1") -> models.Pod:
    return models.Pod(name=name, namespace="alice", node="worker1", ip="10.244.1.5", interface="veth1", uid=uid)


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


def test_cni_add_takes_labels_from_the_watch_and_relabels_keep_the_cni_half(store):
    inv = KubeInventory(store, "worker1", label_wait=1)
    inv.pods_listed([kpod("fe1", {"role": "frontend"})])
    pod, _ = inv.upsert(cni_pod())
    assert pod.labels == {"role": "frontend"} and pod.interface == "veth1"
    inv.pod_event("MODIFIED", kpod("fe1", {"role": "backend"}, ip="10.244.1.5"))
    stored = store.get(POD, "alice/fe1").value
    assert stored["labels"] == {"role": "backend"} and stored["interface"] == "veth1"
    inv.pod_event("DELETED", kpod("fe1", {"role": "backend"}))
    assert store.get(POD, "alice/fe1") is None


def test_an_add_for_a_recreated_pod_waits_for_the_new_uid(store):
    inv = KubeInventory(store, "worker1", label_wait=0.3)
    inv.pods_listed([kpod("fe1", {"role": "old"}, uid="old")])
    with pytest.raises(LabelsUnknown, match="uid new"):
        inv.upsert(cni_pod(uid="new"))
    threading.Timer(0.1, lambda: inv.pod_event("ADDED", kpod("fe1", {"role": "new"}, uid="new"))).start()
    start = time.monotonic()
    pod, _ = inv.upsert(cni_pod(uid="new"))
    assert pod.labels == {"role": "new"} and time.monotonic() - start < 0.3


def test_list_adopts_running_pods_only(store):
    found = {"10.244.1.2": "veth2"}
    inv = KubeInventory(store, "worker1", find_interface=lambda ip: found.get(ip, ""))
    inv.pods_listed([kpod("a", {}, ip="10.244.1.2"), kpod("b", {}, uid="u2"),  # no IP yet: CNI will tell
                     kpod("c", {}, uid="u3", ip="10.244.1.4", phase="Succeeded")])
    assert [r.name for r in store.list(POD)] == ["alice/a"]
    assert store.get(POD, "alice/a").value["interface"] == "veth2"
    assert store.get(POD, "alice/b") is None and store.get(POD, "alice/c") is None


def test_a_relist_removes_what_was_deleted_while_not_watching(store):
    inv = KubeInventory(store, "worker1")
    inv.namespaces_listed([kns("alice", {"user": "alice"}), kns("bob", {})])
    inv.pods_listed([kpod("a", {}, ip="10.244.1.2")])
    inv.namespaces_listed([kns("alice", {"user": "carol"})])
    inv.pods_listed([])
    assert store.get(NAMESPACE, "bob") is None and store.get(NAMESPACE, "alice").value["labels"] == {"user": "carol"}
    assert store.get(POD, "alice/a") is None
