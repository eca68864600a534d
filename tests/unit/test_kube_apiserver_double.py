"""The Kubernetes API-server double, driven by the two real Python clients (`kubernetes`, `lightkube`).

If both clients list, watch, resume, get 410 Gone and read bookmarks the way
they do against kube-apiserver, code under test that uses either can trust it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
from urllib.error import HTTPError

import lightkube
import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException
from lightkube import Client, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Namespace, Pod

from helpers.kube_apiserver import KubeApiServerDouble

WAIT = 5.0  # seconds an expected event may take on a busy shared machine


@pytest.fixture
def double():
    with KubeApiServerDouble() as d:
        d.bookmark_interval = 0.2
        d.apply_namespace("alice", {"team": "frontend"})
        d.apply_namespace("bob", {"team": "backend"})
        d.apply_pod("alice", "web", "worker1", {"app": "web"}, pod_ip="10.244.1.5")
        d.apply_pod("alice", "batch", "worker2", {"app": "batch"}, pod_ip="10.244.2.7")
        d.apply_pod("bob", "db", "worker1", {"app": "db"})
        yield d


@pytest.fixture
def kubeconfig(double, tmp_path):
    return double.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def core(kubeconfig) -> k8s_client.CoreV1Api:
    api_client = k8s_config.new_client_from_config(str(kubeconfig))
    yield k8s_client.CoreV1Api(api_client)
    api_client.close()


@pytest.fixture
def lk(kubeconfig) -> Client:
    return Client(KubeConfig.from_file(str(kubeconfig)), trust_env=False)


class Collector:
    """Runs a watch iterator in a thread and hands its events to the test."""

    def __init__(self, events):
        self.queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(events,), daemon=True)
        self._thread.start()

    def _run(self, events) -> None:
        try:
            for event in events:
                self.queue.put(event)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e
        self.queue.put(None)

    def take(self, n: int) -> list:
        out = []
        deadline = time.monotonic() + WAIT
        while len(out) < n:
            item = self.queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            if item is None:
                raise AssertionError(f"watch ended after {out}: {self.error!r}")
            out.append(item)
        return out

    def finished(self) -> BaseException | None:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the watch did not end"
        return self.error


def lk_events(collector: Collector, n: int) -> list[tuple[str, str, str]]:
    return [(t, o.metadata.name, o.metadata.resourceVersion) for t, o in collector.take(n)]


def watches(double) -> list[dict]:
    return [q for m, p, q in double.requests() if q.get("watch") in ("true", "1")]


# --- lists ------------------------------------------------------------------------------------------


def test_list_pods_of_this_node_with_both_clients(double, core, lk):
    listed = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=worker1")
    assert sorted(p.metadata.name for p in listed.items) == ["db", "web"]
    assert listed.metadata.resource_version == str(double.resource_version)
    web = next(p for p in listed.items if p.metadata.name == "web")
    assert (web.spec.node_name, web.status.pod_ip, web.status.phase) == ("worker1", "10.244.1.5", "Running")
    assert [p.metadata.name for p in lk.list(Pod, namespace="bob", fields={"spec.nodeName": "worker1"})] == ["db"]
    assert [p.metadata.name for p in lk.list(Pod, namespace="alice", labels={"app": "batch"})] == ["batch"]


def test_namespaces_carry_their_labels_and_the_name_label(core, lk):
    listed = core.list_namespace(label_selector="team in (frontend,ops),!legacy")
    assert [n.metadata.name for n in listed.items] == ["alice"]
    assert listed.items[0].metadata.labels == {"team": "frontend", "kubernetes.io/metadata.name": "alice"}
    assert [n.metadata.name for n in lk.list(Namespace)] == ["alice", "bob"]
    assert lk.get(Namespace, "bob").status.phase == "Active"


def test_list_in_chunks_is_consistent_and_expires_with_compaction(double, core, lk):
    first = core.list_pod_for_all_namespaces(limit=2)
    assert [p.metadata.name for p in first.items] == ["batch", "web"]  # sorted by namespace/name
    assert first.metadata.remaining_item_count == 1 and first.metadata._continue
    double.apply_pod("bob", "cache", "worker2", {})  # after the snapshot: not in the continued list
    rest = core.list_pod_for_all_namespaces(limit=2, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["db"]
    assert rest.metadata.resource_version == first.metadata.resource_version and not rest.metadata._continue
    assert [p.metadata.name for p in lk.list(Pod, namespace=lightkube.ALL_NS, chunk_size=1)] == \
        ["batch", "web", "cache", "db"]
    assert len([q for _, _, q in double.requests() if q.get("limit") == "1"]) == 4

    again = core.list_pod_for_all_namespaces(limit=1)
    double.apply_pod("bob", "db", "worker1", {"app": "db", "tier": "2"})
    double.compact()
    with pytest.raises(ApiException) as gone:
        core.list_pod_for_all_namespaces(limit=1, _continue=again.metadata._continue)
    assert gone.value.status == 410 and json.loads(gone.value.body)["reason"] == "Expired"


def test_exact_list_reads_history_until_compacted(double, core):
    before = str(double.resource_version)
    double.delete_pod("alice", "web")
    exact = core.list_namespaced_pod("alice", resource_version=before, resource_version_match="Exact")
    assert sorted(p.metadata.name for p in exact.items) == ["batch", "web"]
    assert exact.metadata.resource_version == before
    assert [p.metadata.name for p in core.list_namespaced_pod("alice").items] == ["batch"]
    double.compact()
    with pytest.raises(ApiException) as gone:
        core.list_namespaced_pod("alice", resource_version=before, resource_version_match="Exact")
    status = json.loads(gone.value.body)
    assert (gone.value.status, status["kind"], status["status"], status["reason"], status["code"]) == \
        (410, "Status", "Failure", "Expired", 410)


# --- watches ----------------------------------------------------------------------------------------


def test_watch_from_a_list_sees_every_change_in_order(double, core):
    listed = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=worker1")
    w = k8s_watch.Watch()
    seen = Collector(w.stream(core.list_pod_for_all_namespaces, field_selector="spec.nodeName=worker1",
                              resource_version=listed.metadata.resource_version))
    double.apply_pod("alice", "web", "worker1", {"app": "web", "v": "2"}, pod_ip="10.244.1.5")
    double.apply_pod("alice", "other", "worker2", {})  # another node: not seen
    double.apply_pod("alice", "api", "worker1", {}, pod_ip="10.244.1.9")
    double.delete_pod("bob", "db")
    events = seen.take(3)
    w.stop()
    assert [(e["type"], e["object"].metadata.name) for e in events] == \
        [("MODIFIED", "web"), ("ADDED", "api"), ("DELETED", "db")]
    rvs = [int(e["object"].metadata.resource_version) for e in events]
    assert rvs == sorted(rvs) and rvs[-1] == double.resource_version
    assert events[1]["object"].status.pod_ip == "10.244.1.9"


def test_watch_without_resource_version_starts_with_the_current_state(double, core):
    w = k8s_watch.Watch()
    seen = Collector(w.stream(core.list_namespace))
    double.apply_namespace("carol", {})
    events = seen.take(3)
    w.stop()
    assert [(e["type"], e["object"].metadata.name) for e in events] == \
        [("ADDED", "alice"), ("ADDED", "bob"), ("ADDED", "carol")]


def test_watch_resumes_from_its_last_resource_version_after_drop_watches(double, lk):
    rv = lk.list(Pod, namespace=lightkube.ALL_NS, fields={"spec.nodeName": "worker1"})
    list(rv)
    seen = Collector(lk.watch(Pod, namespace=lightkube.ALL_NS, fields={"spec.nodeName": "worker1"},
                              resource_version=rv.resourceVersion))
    double.apply_pod("alice", "web", "worker1", {"app": "web", "v": "2"})
    (first,) = lk_events(seen, 1)
    double.drop_watches()
    double.apply_pod("alice", "api", "worker1", {})  # while no watch is open
    double.delete_pod("alice", "web")
    assert [e[:2] for e in lk_events(seen, 2)] == [("ADDED", "api"), ("DELETED", "web")]
    assert first[:2] == ("MODIFIED", "web")
    # one list, then watches that each resume where the last one stopped: no re-list
    assert [m for m, p, q in double.requests() if "watch" not in q] == ["GET"]
    assert [q["resourceVersion"] for q in watches(double)] == [rv.resourceVersion, first[2]]
    double.stop()
    assert isinstance(seen.finished(), Exception)  # lightkube re-connects, the server is gone


def test_abrupt_drop_breaks_the_stream_and_a_resume_misses_nothing(double, core):
    start = str(double.resource_version)
    w = k8s_watch.Watch()
    seen = Collector(w.stream(core.list_namespaced_pod, "alice", resource_version=start))
    double.apply_pod("alice", "web", "worker1", {"app": "web", "v": "2"})
    (event,) = seen.take(1)
    double.drop_watches(abrupt=True)
    assert seen.finished() is not None  # urllib3 reports the cut stream
    double.apply_pod("alice", "late", "worker2", {})
    resumed = Collector(k8s_watch.Watch().stream(core.list_namespaced_pod, "alice", timeout_seconds=1,
                                                 resource_version=event["object"].metadata.resource_version))
    assert [(e["type"], e["object"].metadata.name) for e in resumed.take(1)] == [("ADDED", "late")]
    assert resumed.finished() is None


def test_selector_exit_and_entry_are_deleted_and_added(double, core):
    w = k8s_watch.Watch()
    seen = Collector(w.stream(core.list_namespaced_pod, "alice", label_selector="app=web",
                              resource_version=str(double.resource_version)))
    double.apply_pod("alice", "web", "worker1", {"app": "retired"})
    double.apply_pod("alice", "web", "worker1", {"app": "web"})
    events = seen.take(2)
    w.stop()
    assert [(e["type"], e["object"].metadata.labels["app"]) for e in events] == \
        [("DELETED", "retired"), ("ADDED", "web")]


def test_compaction_makes_old_watches_gone_410(double, core, lk):
    old = str(double.resource_version)
    double.apply_pod("alice", "web", "worker1", {"v": "2"})
    double.compact()
    with pytest.raises(ApiException) as gone:  # the client retries once from the same version, then gives up
        list(k8s_watch.Watch().stream(core.list_namespaced_pod, "alice", resource_version=old))
    assert gone.value.status == 410
    with pytest.raises(ApiError) as lk_gone:
        next(iter(lk.watch(Pod, namespace="alice", resource_version=old)))
    assert (lk_gone.value.status.code, lk_gone.value.status.reason) == (410, "Expired")
    assert lk_gone.value.status.message == f"too old resource version: {old} ({double.resource_version})"
    # the current version is still fine
    w = k8s_watch.Watch()
    seen = Collector(w.stream(core.list_namespaced_pod, "alice", resource_version=str(double.resource_version)))
    double.delete_pod("alice", "web")
    assert seen.take(1)[0]["type"] == "DELETED"
    w.stop()


def test_gone_can_be_an_http_410_instead_of_an_error_event(double, kubeconfig):
    old = str(double.resource_version)
    double.apply_namespace("alice", {"team": "frontend", "v": "2"})
    double.compact()
    double.watch_gone_as = "http"
    with pytest.raises(HTTPError) as gone:
        urllib.request.urlopen(f"{double.url}/api/v1/namespaces?watch=1&resourceVersion={old}", timeout=WAIT)
    assert gone.value.code == 410 and json.loads(gone.value.read())["reason"] == "Expired"
    double.watch_gone_as = "event"
    with urllib.request.urlopen(f"{double.url}/api/v1/namespaces?watch=1&resourceVersion={old}",
                                timeout=WAIT) as resp:
        assert resp.status == 200 and resp.headers["Transfer-Encoding"] == "chunked"
        event = json.loads(resp.readline())
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


def test_bookmarks_carry_only_a_resource_version_that_survives_compaction(double, core):
    w = k8s_watch.Watch()
    seen = Collector(w.stream(core.list_pod_for_all_namespaces, field_selector="spec.nodeName=worker1",
                              allow_watch_bookmarks=True, resource_version=str(double.resource_version)))
    double.apply_pod("alice", "batch", "worker2", {"app": "batch", "v": "2"})  # filtered out
    target = str(double.resource_version)
    bookmark = None
    while bookmark is None or bookmark["metadata"]["resourceVersion"] != target:
        (event,) = seen.take(1)
        assert event["type"] == "BOOKMARK"
        bookmark = event["raw_object"]
    w.stop()
    assert bookmark == {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": target}}
    double.compact()  # the bookmark's version is not older than the compaction: resuming works
    resumed = k8s_watch.Watch().stream(core.list_pod_for_all_namespaces, field_selector="spec.nodeName=worker1",
                                       resource_version=target, timeout_seconds=1)
    assert list(resumed) == []


def test_send_initial_events_ends_with_an_annotated_bookmark(double, core):
    w = k8s_watch.Watch()
    seen = Collector(w.stream(core.list_namespace, allow_watch_bookmarks=True, send_initial_events=True,
                              resource_version_match="NotOlderThan", resource_version=""))
    events = seen.take(3)
    w.stop()
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    assert events[2]["raw_object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_timeout_seconds_ends_the_watch_cleanly(double, core):
    started = time.monotonic()
    events = list(k8s_watch.Watch().stream(core.list_namespace, timeout_seconds=1,
                                           resource_version=str(double.resource_version)))
    assert events == [] and 0.9 <= time.monotonic() - started < WAIT


def test_while_down_connections_close_and_watches_are_cut(double, core, lk):
    w = k8s_watch.Watch()
    seen = Collector(w.stream(core.list_namespace, resource_version=str(double.resource_version)))
    time.sleep(0.2)
    double.set_down(True)
    assert seen.finished() is not None
    with pytest.raises(Exception):
        list(lk.list(Namespace))
    with pytest.raises(Exception):
        core.list_namespace(_request_timeout=WAIT)
    double.set_down(False)
    assert [n.metadata.name for n in lk.list(Namespace)] == ["alice", "bob"]


# --- the rest of the surface --------------------------------------------------------------------------


def test_discovery_and_version(core, kubeconfig):
    api_client = core.api_client
    assert k8s_client.VersionApi(api_client).get_code().git_version == "v1.37.0"
    assert k8s_client.CoreApi(api_client).get_api_versions().versions == ["v1"]
    assert k8s_client.ApisApi(api_client).get_api_versions().groups == []
    resources = {r.name: r for r in core.get_api_resources().resources}
    assert (resources["pods"].namespaced, resources["namespaces"].namespaced) == (True, False)


def test_errors_are_status_objects(double, core):
    with pytest.raises(ApiException) as bad:
        core.list_pod_for_all_namespaces(field_selector="spec.schedulerName=x")
    assert bad.value.status == 400 and json.loads(bad.value.body)["message"] == \
        "field label not supported: spec.schedulerName"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("nope", "alice")
    assert missing.value.status == 404 and json.loads(missing.value.body)["reason"] == "NotFound"
    with pytest.raises(ApiException) as write:
        core.delete_namespaced_pod("web", "alice")
    assert write.value.status == 405
    assert core.read_namespaced_pod("web", "alice").spec.node_name == "worker1"


def test_cluster_changes_behave_like_the_api_server(double):
    rv = double.resource_version
    double.apply_pod("alice", "web", "worker1", {"app": "web"}, pod_ip="10.244.1.5")
    assert double.resource_version == rv  # a no-op update writes nothing
    with pytest.raises(ValueError, match="does not exist"):
        double.apply_pod("carol", "web", "worker1", {})
    with pytest.raises(ValueError, match="nodeName cannot change"):
        double.apply_pod("alice", "web", "worker2", {"app": "web"})
    double.apply_pod("alice", "web", "worker2", {"app": "web"}, uid="new-uid")  # a new pod of the same name
    assert double.resource_version == rv + 2  # DELETED, then ADDED
    double.delete_namespace("alice")  # its pods go first, as with the namespace controller
    assert double.resource_version == rv + 5
    with pytest.raises(KeyError):
        double.delete_pod("alice", "batch")


def test_requests_are_recorded_with_their_query(double, core):
    core.list_pod_for_all_namespaces(field_selector="spec.nodeName=worker1", limit=10)
    assert double.requests()[-1] == ("GET", "/api/v1/pods", {"fieldSelector": "spec.nodeName=worker1",
                                                               "limit": "10"})


# --- nodes ------------------------------------------------------------------------------------------


def test_one_node_listed_and_watched_by_name_with_kubelets_labels(double, core):
    double.apply_node("worker1", {"egress": "yes"})
    double.apply_node("worker2", {"egress": "yes"})
    listed = core.list_node(field_selector="metadata.name=worker1")
    (node,) = listed.items
    assert node.metadata.labels == {"kubernetes.io/hostname": "worker1", "kubernetes.io/os": "linux", "egress": "yes"}
    assert core.read_node("worker2").metadata.name == "worker2"
    w = k8s_watch.Watch()
    seen = Collector(w.stream(core.list_node, field_selector="metadata.name=worker1",
                              resource_version=listed.metadata.resource_version))
    double.apply_node("worker2", {"egress": "no"})  # another node: not seen
    double.apply_node("worker1", {"egress": "no"})
    double.delete_node("worker1")
    events = seen.take(2)
    w.stop()
    assert [(e["type"], e["object"].metadata.labels.get("egress")) for e in events] == [("MODIFIED", "no"), ("DELETED", "no")]
    with pytest.raises(ApiException) as info:
        core.read_node("worker1")
    assert info.value.status == 404
