"""The agent's Kubernetes watcher: every Namespace, and this node's Pods (`spec.nodeName=<node>`); with
`--node-labels-from-kubernetes` also this node's Node object (`metadata.name=<node>`), whose labels go to
`on_node_labels` (egress_agent.relabel: they relabel the node live).

Client: the official `kubernetes` package. Configuration comes from
`--kubeconfig PATH`, or else the pod's service account (in-cluster).
The agent does not wait for the apiserver: it serves at once, Health says
DEGRADED with the reason until both lists have been read, and CNI ADDs wait
(bounded) for their pod's labels.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from egress_agent.kube.inventory import KubeInventory
from egress_agent.kube.watch import ListWatch
from egress_agent.store import base

log = logging.getLogger(__name__)

RESYNC_INTERVAL = 5.0  # seconds between retries of record writes that failed


class KubeConfigError(Exception):
    pass


def api_client(kubeconfig: str = "") -> k8s.ApiClient:
    conf = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=conf)
        else:
            k8s_config.load_incluster_config(client_configuration=conf)
    except (k8s_config.ConfigException, OSError, ValueError, TypeError) as err:
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else \
            "in-cluster service account (give --kubeconfig PATH outside a pod)"
        raise KubeConfigError(f"cannot configure the Kubernetes client from {where}: {err}") from None
    return k8s.ApiClient(conf)


def host_interface_of(ip: str, netns: Optional[str] = None) -> str:
    """The interface of a host route to exactly `ip`/32 (ptp and Calico install one per pod); "" if none.

    Not a route lookup (`ip route get`): that would answer the default route for any address."""
    from egress_agent.datapath.netlink import iproute

    with iproute(netns) as ipr:
        for route in ipr.get_routes(family=2, table=254):
            if route["dst_len"] == 32 and route.get_attr("RTA_DST") == ip and route.get_attr("RTA_OIF"):
                links = ipr.get_links(route.get_attr("RTA_OIF"))
                return links[0].get_attr("IFLA_IFNAME") or "" if links else ""
    return ""


class NodeObject:
    """This node's Node object, watched alone: its labels, whole, on every list and change."""

    def __init__(self, node: str, on_labels: Callable[[dict[str, str]], None]):
        self.node = node
        self.on_labels = on_labels
        self.watch: Optional[ListWatch] = None

    def listed(self, items: list) -> None:
        if not items:
            log.warning("kubernetes: no Node named %s (is --node the Kubernetes node name?): no labels from it",
                        self.node)
        self.on_labels(dict(items[0].metadata.labels or {}) if items else {})

    def event(self, kind: str, obj) -> None:
        if kind == "DELETED":
            log.warning("kubernetes: Node %s was deleted: no labels from it", self.node)
            self.on_labels({})
        else:
            self.on_labels(dict(obj.metadata.labels or {}))


class KubeWatcher:
    def __init__(self, store: base.Store, node: str, kubeconfig: str = "", label_wait: float = 10.0,
                 timeout_seconds: int = 300, on_node_labels: Optional[Callable[[dict[str, str]], None]] = None):
        self.node = node
        self.inventory = KubeInventory(store, node, label_wait, find_interface=host_interface_of)
        core = k8s.CoreV1Api(api_client(kubeconfig))
        self.namespaces = ListWatch("namespaces", core.list_namespace, self.inventory.namespaces_listed,
                                    self.inventory.namespace_event, timeout_seconds=timeout_seconds)
        self.pods = ListWatch("pods", core.list_pod_for_all_namespaces, self.inventory.pods_listed,
                              self.inventory.pod_event, list_kwargs={"field_selector": f"spec.nodeName={node}"},
                              timeout_seconds=timeout_seconds)
        self.node_object = None
        if on_node_labels is not None:
            self.node_object = NodeObject(node, on_node_labels)
            self.node_object.watch = ListWatch("node", core.list_node, self.node_object.listed, self.node_object.event,
                                               list_kwargs={"field_selector": f"metadata.name={node}"},
                                               timeout_seconds=timeout_seconds)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        # Namespaces first: a pod's selection needs its namespace's labels.
        self.namespaces.start()
        self.pods.start()
        if self.node_object is not None:
            self.node_object.watch.start()
        self._thread = threading.Thread(target=self._resync, name="kube-resync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.node_object is not None:
            self.node_object.watch.stop()
        self.pods.stop()
        self.namespaces.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _resync(self) -> None:
        while not self._stop.wait(RESYNC_INTERVAL):
            self.inventory.resync()

    def health(self) -> tuple[bool, str]:
        """(ok, detail): not ok until both lists were read, or while the apiserver is unreachable."""
        problems = []
        for lw in (self.namespaces, self.pods, *([self.node_object.watch] if self.node_object else [])):
            if lw.error:
                problems.append(f"kubernetes API: watching {lw.what} fails: {lw.error}")
            elif not lw.synced:
                problems.append(f"kubernetes API: {lw.what} not listed yet")
        return not problems, "; ".join(problems)
