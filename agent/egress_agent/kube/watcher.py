"""The agent's Kubernetes watcher: every Namespace, and this node's Pods (`spec.nodeName=<node>`).

Client: the official `kubernetes` package. Configuration comes from
`--kubeconfig PATH`, or else the pod's service account (in-cluster).
The agent does not wait for the apiserver: it serves at once, Health says
DEGRADED with the reason until both lists have been read, and CNI ADDs wait
(bounded) for their pod's labels.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

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


class KubeWatcher:
    def __init__(self, store: base.Store, node: str, kubeconfig: str = "", label_wait: float = 10.0,
                 timeout_seconds: int = 300):
        self.node = node
        self.inventory = KubeInventory(store, node, label_wait, find_interface=host_interface_of)
        core = k8s.CoreV1Api(api_client(kubeconfig))
        self.namespaces = ListWatch("namespaces", core.list_namespace, self.inventory.namespaces_listed,
                                    self.inventory.namespace_event, timeout_seconds=timeout_seconds)
        self.pods = ListWatch("pods", core.list_pod_for_all_namespaces, self.inventory.pods_listed,
                              self.inventory.pod_event, list_kwargs={"field_selector": f"spec.nodeName={node}"},
                              timeout_seconds=timeout_seconds)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        # Namespaces first: a pod's selection needs its namespace's labels.
        self.namespaces.start()
        self.pods.start()
        self._thread = threading.Thread(target=self._resync, name="kube-resync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
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
        for lw in (self.namespaces, self.pods):
            if lw.error:
                problems.append(f"kubernetes API: watching {lw.what} fails: {lw.error}")
            elif not lw.synced:
                problems.append(f"kubernetes API: {lw.what} not listed yet")
        return not problems, "; ".join(problems)
