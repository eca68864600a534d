"""This node's view of Kubernetes, joined with what the CNI plugin reports, written as pod/namespace records.

Two sources meet here:

- the Kubernetes watch: every namespace's labels, and for this node's pods
  their uid, labels and (for pods that started before the agent) status.podIP;
- the CNI plugin's ADD (UpsertPod): the pod's IP and host interface.

A pod record is written when both halves are known: a CNI ADD waits (bounded,
`label_wait`) for the pod's labels to arrive from the watch; a label change
rewrites the record; a pod deleted in Kubernetes loses its record. Pods that
already ran when the agent started are adopted from the list: IP from
status.podIP, interface from the host route to it.

One lock orders every read-modify-write of a record, so a label change that
arrives while a CNI ADD is being joined is never overwritten by stale labels.
Store failures are remembered and retried by `resync` (the watcher calls it
periodically), so a label change is not lost while the store is away.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from egress_agent.server.pods import LabelsUnknown
from egress_agent.store import base
from egress_agent.store.base import NAMESPACE, POD, Delete, Put
from egress_api import models

log = logging.getLogger(__name__)

DEFAULT_LABEL_WAIT = 10.0
TERMINAL_PHASES = ("Succeeded", "Failed")  # their sandbox is gone: not a pod with egress any more


@dataclass(frozen=True)
class KubePod:
    namespace: str
    name: str
    uid: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = ""  # status.podIP
    host_network: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_from_api(obj) -> Optional[KubePod]:
    """A V1Pod as this module needs it; None for a pod that has finished (its sandbox is gone)."""
    meta, spec, status = obj.metadata, obj.spec, obj.status
    if status is not None and status.phase in TERMINAL_PHASES:
        return None
    return KubePod(
        namespace=meta.namespace, name=meta.name, uid=meta.uid or "", labels=dict(meta.labels or {}),
        ip=(status.pod_ip or "") if status is not None else "",
        host_network=bool(spec.host_network) if spec is not None else False,
    )


class KubeInventory:
    """Implements `server.pods.PodWriter` for `egress-agent --kubernetes`."""

    def __init__(self, store: base.Store, node: str, label_wait: float = DEFAULT_LABEL_WAIT,
                 find_interface: Callable[[str], str] = lambda ip: ""):
        self.store = store
        self.node = node
        self.label_wait = label_wait
        self.find_interface = find_interface  # pod IP -> host interface (adoption); "" when unknown
        self._cond = threading.Condition()  # guards the caches; CNI joins wait on it
        self._pods: dict[str, KubePod] = {}
        self._namespaces: dict[str, dict[str, str]] = {}
        self._write = threading.Lock()  # orders read-modify-write of records
        self._dirty_pods: set[str] = set()
        self._dirty_namespaces: set[str] = set()
        self.adopted = 0

    # --- from the namespace watch ---------------------------------------------------------

    def namespaces_listed(self, items: list) -> None:
        listed = {o.metadata.name: dict(o.metadata.labels or {}) for o in items}
        with self._cond:
            gone = set(self._namespaces) - set(listed)  # known before, deleted while we were not watching
            self._namespaces = listed
            self._cond.notify_all()
        for name in sorted(set(listed) | gone):
            self._sync_namespace(name)

    def namespace_event(self, kind: str, obj) -> None:
        name = obj.metadata.name
        with self._cond:
            if kind == "DELETED":
                self._namespaces.pop(name, None)
            else:
                self._namespaces[name] = dict(obj.metadata.labels or {})
            self._cond.notify_all()
        self._sync_namespace(name)

    # --- from the pod watch (this node's pods) ----------------------------------------------

    def pods_listed(self, items: list) -> None:
        listed = {p.key: p for p in (pod_from_api(o) for o in items) if p is not None}
        with self._cond:
            gone = set(self._pods) - set(listed)
            self._pods = listed
            self._cond.notify_all()
        for key in sorted(set(listed) | gone):
            self._sync_pod(key, adopt=True)

    def pod_event(self, kind: str, obj) -> None:
        pod = pod_from_api(obj)
        key = f"{obj.metadata.namespace}/{obj.metadata.name}"
        with self._cond:
            if kind == "DELETED" or pod is None:
                self._pods.pop(key, None)
            else:
                self._pods[key] = pod
            self._cond.notify_all()
        self._sync_pod(key, adopt=False)

    def resync(self) -> None:
        """Retry the writes that failed (store unavailable)."""
        for key in sorted(self._dirty_pods):
            self._sync_pod(key, adopt=False)
        for name in sorted(self._dirty_namespaces):
            self._sync_namespace(name)

    # --- from the CNI plugin (UpsertPod) -------------------------------------------------------

    def upsert(self, pod: models.Pod) -> tuple[models.Pod, int]:
        """Join the CNI's pod (IP, interface, uid) with its labels from Kubernetes, and store it."""
        key = f"{pod.namespace}/{pod.name}"
        deadline = time.monotonic() + self.label_wait
        with self._cond:
            while not self._known(key, pod.uid):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabelsUnknown(
                        f"pod {key}{' (uid ' + pod.uid + ')' if pod.uid else ''} has not arrived from the Kubernetes "
                        f"API within {self.label_wait:g}s, so its labels (and whether a policy selects it) are "
                        f"unknown: is the apiserver reachable from the egress-agent on {self.node}? "
                        "(see egressctl health; --kube-label-wait sets this wait)"
                    )
                self._cond.wait(left)
        with self._write:
            with self._cond:
                kube = self._pods.get(key)
            labels = kube.labels if kube is not None else pod.labels
            joined = models.parse("pod", {**pod.model_dump(mode="json"), "labels": labels,
                                          "uid": pod.uid or (kube.uid if kube else "")})
            revision = self.store.commit([Put(POD, key, joined.model_dump(mode="json"))])
            self._dirty_pods.discard(key)
        return joined, revision

    def _known(self, key: str, uid: str) -> bool:
        kube = self._pods.get(key)
        return kube is not None and (not uid or not kube.uid or kube.uid == uid)

    # --- records ------------------------------------------------------------------------------

    def _sync_namespace(self, name: str) -> None:
        with self._write:
            with self._cond:
                labels = self._namespaces.get(name)
            try:
                rec = self.store.get(NAMESPACE, name)
                if labels is None:
                    if rec is not None:
                        self.store.commit([Delete(NAMESPACE, name)])
                elif rec is None or rec.value.get("labels") != labels:
                    ns = models.parse("namespace", {"name": name, "labels": labels})
                    self.store.commit([Put(NAMESPACE, name, ns.model_dump(mode="json"))])
                self._dirty_namespaces.discard(name)
            except base.NotFound:
                self._dirty_namespaces.discard(name)  # another node's watcher deleted it first
            except base.StoreError as err:
                log.info("namespace %s not written yet (%s): retrying", name, err)
                self._dirty_namespaces.add(name)
            except models.InvalidObject as err:
                log.warning("namespace %s ignored: %s", name, err)

    def _sync_pod(self, key: str, adopt: bool) -> None:
        with self._write:
            with self._cond:
                kube = self._pods.get(key)
            try:
                rec = self.store.get(POD, key)
                if kube is None:
                    if rec is not None and rec.value.get("node") == self.node:
                        self.store.commit([Delete(POD, key, rec.version)])
                elif rec is None:
                    if adopt and kube.ip and not kube.host_network:
                        self._adopt(kube)
                elif rec.value.get("labels") != kube.labels:
                    pod = models.parse("pod", {**rec.value, "labels": kube.labels})
                    self.store.commit([Put(POD, key, pod.model_dump(mode="json"), rec.version)])
                self._dirty_pods.discard(key)
            except base.Conflict:
                self._dirty_pods.add(key)  # a CNI write landed in between: look again on resync
            except base.NotFound:
                self._dirty_pods.discard(key)
            except base.StoreError as err:
                log.info("pod %s not written yet (%s): retrying", key, err)
                self._dirty_pods.add(key)
            except models.InvalidObject as err:
                log.warning("pod %s ignored: %s", key, err)

    def _adopt(self, kube: KubePod) -> None:
        """A pod that started before the agent (no CNI ADD reached us): IP from its status, interface from routes."""
        interface = self.find_interface(kube.ip)
        pod = models.parse("pod", {"name": kube.name, "namespace": kube.namespace, "node": self.node, "ip": kube.ip,
                                   "interface": interface, "uid": kube.uid, "labels": kube.labels})
        self.store.commit([Put(POD, kube.key, pod.model_dump(mode="json"), base.MUST_NOT_EXIST)])
        self.adopted += 1
        log.info("adopted pod %s (%s on %s), which started before the agent", kube.key, kube.ip, interface or "-")

    # --- status -----------------------------------------------------------------------------------

    def labels_of(self, key: str) -> Optional[dict[str, str]]:
        with self._cond:
            kube = self._pods.get(key)
            return dict(kube.labels) if kube else None
