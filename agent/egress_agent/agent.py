"""The agent's composition root: which parts run, in which order, and how they stop.

Start order follows the dataflow: store -> membership and leadership (cluster
or standalone) -> kernel datapath -> API server -> controller. The datapath is
programmed before the API answers, so a healthy agent is a programmed node.
With --metrics-listen each part is handed its metrics callbacks as it starts,
and the metrics endpoint starts just before the API: an agent whose API answers
can be scraped (the controller's move counter exists from the start, at 0).
Every started part registers its stop, and `stop()` runs them in reverse, also
when a later part fails to start (nothing is left half-running).

A stop is either a restart (SIGTERM: the agent will be back within
--restart-window) or a leave (SIGINT, a failed start, --restart-window 0, or
the machine shutting down). A restart leaves the kernel as it is and, in a
cluster, first writes the restart marker so the others keep this node's IPs
(cluster/restart.py); a leave releases the floating IPs and revokes the lease,
so the others take them at once.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from egress_agent import config as cfg
from egress_agent.store import base

log = logging.getLogger("egress-agent")


def _no_guard() -> tuple:
    """Standalone: the only agent is always the leader, so its commits need no extra check."""
    return ()


class StartError(Exception):
    """A part could not start; the message says which and why."""


class Agent:
    def __init__(self, conf: cfg.AgentConfig, version: str):
        self.conf = conf
        self.version = version
        self.cluster = None
        self.metrics = None  # egress_agent.metrics.registry.AgentMetrics with --metrics-listen
        self.audit = None  # egress_agent.server.audit.AuditLog with --audit-log
        self.labels = None  # egress_agent.relabel.NodeLabels once the node is registered
        self._stops: list[Callable[[], None]] = []
        self._leaving = True  # how the parts stop: see stop()

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self, restarting: bool = False) -> None:
        """Stop every part, last started first. `restarting`: see the module docstring."""
        restarting = restarting and self.conf.restart_window > 0
        if restarting and self.cluster is not None and self.cluster.membership.lease_id:
            # Without the marker the others take our IPs: then we must not keep answering for them.
            restarting = self.cluster.announce_restart(self.conf.restart_window, self.version)
        self._leaving = not restarting
        if self._stops:
            log.info("stopping: %s", f"restart (back within {self.conf.restart_window}s: the kernel keeps "
                     "forwarding as it is)" if restarting else "leaving (floating IPs released)")
        while self._stops:
            self._stops.pop()()

    def abort_start(self) -> None:
        """Called from a signal handler: stop waiting for etcd at start."""
        if self.cluster is not None:
            self.cluster.abort()

    def relabel(self, labels: dict[str, str], source: str = "SIGHUP") -> bool:
        """The configuration gives this running node other labels (egress_agent.relabel); False when refused or
        not written."""
        if self.labels is None:
            log.error("relabel from %s ignored: the node is not registered yet", source)
            return False
        return self._relabelled(self.labels.from_config(labels, source))

    def relabel_refused(self, why: str, source: str = "SIGHUP") -> None:
        """The re-read configuration was refused before any label could apply: audit it (labels unchanged)."""
        if self.labels is not None:
            self.labels.refused(source, why)

    def _kube_relabel(self, labels: dict[str, str]) -> None:
        """--node-labels-from-kubernetes: this node's Node object has these labels now."""
        self._relabelled(self.labels.from_kubernetes(labels))

    def _relabelled(self, applied: bool) -> bool:
        if applied:
            from dataclasses import replace

            self.conf = replace(self.conf, node=self.labels.node)
        return applied

    # --- the parts, in start order ------------------------------------------------------

    def _start(self) -> None:
        self._publish_routers()
        if self.conf.metrics_listen:
            from egress_agent.metrics.registry import AgentMetrics

            self.metrics = AgentMetrics()
        self._open_audit()
        store = self._open_store()
        nodes, decided_nodes, leadership, guard = self._join(store)
        datapath, pod_waiter = self._start_datapath(store)
        kube = self._watch_kubernetes(store)
        self._serve_metrics()
        self._serve(store, nodes, leadership, datapath, pod_waiter, kube)
        self._start_controller(store, decided_nodes, leadership, guard)
        node = self.conf.node
        log.info("egress-agent %s up: node %s (%s, %s), store %s", self.version, node.name, node.role,
                 node.node_ip, store.url)

    def _publish_routers(self) -> None:
        """Put this node's uplink routers into its NODE record: addresses no floating IP may take."""
        node = self.conf.node
        if node.interface and not node.routers:
            from dataclasses import replace

            from egress_agent.node.uplink import routers

            found = routers(node.interface, node.node_ip)
            if found:
                log.info("routers of %s: %s (never floating IPs)", node.interface, ", ".join(found))
                self.conf = replace(self.conf, node=node.model_copy(update={"routers": found}))

    def _open_store(self) -> base.Store:
        try:
            store = cfg.open_store(self.conf.store, self.conf.etcd_prefix, self.conf.etcd_tls)
        except base.StoreError as err:
            raise StartError(f"cannot open store: {err}") from None
        self._stops.append(store.close)
        if self.metrics:
            self.metrics.watch_store(store)
        return store

    def _join(self, store: base.Store):
        """(nodes for status, nodes the controller assigns from, leadership, commit guard)."""
        conf, node = self.conf, self.conf.node
        if not conf.store.startswith("etcd:"):
            from egress_agent.controller.nodes import Standalone, StandaloneNodes
            from egress_agent.relabel import NodeLabels, standalone_writer

            # Registering our NODE record is how status learns we exist.
            store.commit([base.Put(base.NODE, node.name, {**node.model_dump(mode="json"), "state": "Up"})])
            nodes = StandaloneNodes(node)
            self.labels = NodeLabels(node, standalone_writer(store, nodes), self.audit)
            if self.metrics:
                self.metrics.watch_leadership(Standalone().is_leader)
            return nodes, nodes, Standalone(), _no_guard

        # A cluster: etcd leases say who is alive, an etcd election who leads (egress_agent.cluster).
        from egress_agent.cluster.runtime import Cluster, ClusterOptions

        options = ClusterOptions(lease_ttl=conf.lease_ttl, probe_interval=conf.probe_interval,
                                 probe_misses=conf.probe_misses, cluster_key_file=conf.cluster_key_file,
                                 crash_hold=conf.restart_window)
        if conf.lease_keepalive:
            options.keepalive_interval = conf.lease_keepalive
        self.cluster = cluster = Cluster(store, node.model_dump(mode="json"), options)
        if self.metrics or self.audit:
            cluster.election.on_leader = self._on_leader
        if self.metrics:
            self.metrics.watch_detector(cluster.detector)
            self.metrics.watch_leadership(cluster.is_leader)
        log.info("cluster: lease TTL %ss, keepalive every %gs; probes every %gs, a peer is Down after %d misses "
                 "(%.0f ms)", conf.lease_ttl, options.keepalive_interval, conf.probe_interval, conf.probe_misses,
                 1000 * conf.probe_interval * conf.probe_misses)
        # Registered before start: a start interrupted while retrying etcd must still clean up.
        self._stops.append(cluster.stop)  # resigns and revokes the lease: the others see us Down at once
        try:
            cluster.start()  # retries with backoff until etcd answers, saying why
        except base.Unavailable as err:
            raise StartError(f"stopped before joining the cluster: {err}") from None
        except ValueError as err:  # the cluster key (its file changed since the flags were checked, or etcd's)
            raise StartError(f"cluster key: {err}") from None
        from egress_agent.relabel import NodeLabels, cluster_writer

        self.labels = NodeLabels(node, cluster_writer(cluster.membership), self.audit)
        # The leader assigns from its own, fresher node view and writes behind its election guard.
        return cluster.nodes.published, cluster.nodes.decided, cluster, cluster.guard

    def _start_datapath(self, store: base.Store):
        from egress_agent.node import status as dp_status

        node = self.conf.node
        datapath = None
        # UpsertPod waits for the pod's node to program the pod (no leak at pod start).
        pod_waiter = dp_status.ProgrammedWaiter(store)
        try:
            if self.conf.datapath == "kernel":
                from egress_agent.node.service import NodeDatapath

                from egress_agent.datapath.floating_ip import Announcements

                datapath = NodeDatapath(store, node, node.interface,
                                        on_apply=self.metrics.apply.observe if self.metrics else None,
                                        on_applied=lambda revision, pending: pod_waiter.observe_local(node.name, revision, pending),
                                        announcements=Announcements(self.conf.garp_repeats, self.conf.garp_interval))
                datapath.start(self.cluster.fencing if self.cluster is not None else None)
                # Leaving, releases floating IPs before the lease goes; steering stays (fail static).
                self._stops.append(lambda: datapath.stop(release=self._leaving))
            else:
                dp_status.forget(store, node.name)  # nobody waits for a node without a datapath
            pod_waiter.start()
            self._stops.append(pod_waiter.stop)
        except (ValueError, RuntimeError, OSError, base.StoreError) as err:
            raise StartError(f"cannot start the datapath: {err}") from None
        if self.metrics:
            self.metrics.watch_datapath(datapath.counters if datapath else None,
                                        datapath.snat_usage if datapath else None,
                                        datapath.repairs if datapath else None)
        return datapath, pod_waiter

    def _watch_kubernetes(self, store: base.Store):
        """With --kubernetes: the watcher (it does not wait for the apiserver; Health reports it)."""
        if not self.conf.kubernetes:
            return None
        from egress_agent.kube.watcher import KubeConfigError, KubeWatcher

        try:
            watcher = KubeWatcher(store, self.conf.node.name, self.conf.kubeconfig, self.conf.kube_label_wait,
                                  on_node_labels=self._kube_relabel if self.conf.node_labels_from_kubernetes else None)
        except KubeConfigError as err:
            raise StartError(str(err)) from None
        watcher.start()
        self._stops.append(watcher.stop)
        log.info("kubernetes: watching namespaces and the pods%s of node %s (%s)",
                 " and Node object (its labels)" if self.conf.node_labels_from_kubernetes else "", self.conf.node.name,
                 self.conf.kubeconfig or "in-cluster service account")
        return watcher

    def _serve(self, store, nodes, leadership, datapath: Optional[object], pod_waiter, kube=None) -> None:
        from egress_agent.node import status as dp_status
        from egress_agent.server.servicer import EgressServicer

        node = self.conf.node
        counters = dp_status.ClusterCounters(pod_waiter.records, node.name, datapath.counters if datapath else None)
        servicer = EgressServicer(
            store, node.name, nodes, leadership, version=self.version, counters=counters,
            pod_programmed=pod_waiter.wait, pods=kube.inventory if kube else None,
            pod_check=self._pod_check(pod_waiter, datapath is not None), health=self._health(kube),
        )
        interceptors = [self.metrics.api] if self.metrics else []
        try:
            tls = None
            if self.conf.tls[0]:
                from egress_agent.server.tls import ReloadingCredentials, ServerTLSFiles

                tls = ReloadingCredentials(ServerTLSFiles(*self.conf.tls))
            servers = self._api_servers(servicer, tls, interceptors)
            for server in servers:
                server.start()
                self._stops.append(server.stop)
        except (OSError, RuntimeError, ValueError) as err:
            raise StartError(f"cannot serve the API: {err}") from None
        if self.conf.listen and not self.conf.mutual_tls:
            from egress_agent.config import is_loopback

            who = "any local user" if is_loopback(self.conf.listen) else "anyone who reaches it (--insecure-listen)"
            log.warning("the API on %s has no client authentication: %s may call it as admin", self.conf.listen, who)

    def _api_servers(self, servicer, tls, interceptors) -> list:
        """The API (unix socket + TCP listener) and, with --inventory-socket, the CNI plugin's pod socket.

        Each gRPC server's first interceptor decides who may call what (server.access) and writes the audit log.
        """
        from egress_agent.server.access import AccessControl
        from egress_agent.server.local_peers import LocalPeers, SocketRoles
        from egress_agent.server.serve import ApiServer

        socket_roles = SocketRoles(self.conf.socket_roles)
        # Only when others may connect is the caller's uid worth a relay: at mode 0600 it is root or ours.
        relays = [LocalPeers(self.conf.socket, socket_roles)] if socket_roles.others_allowed else []
        access = AccessControl(relays, unix_role="admin", anonymous_tcp_role="" if self.conf.mutual_tls else "admin",
                               audit=self.audit)
        servers = [ApiServer(servicer, sockets=[] if relays else [self.conf.socket], relays=relays,
                             listen=self.conf.listen, tls=tls, interceptors=[access, *interceptors])]
        if self.conf.inventory_socket:  # the CNI plugin's: it can feed this node's pods and nothing else, even as root
            from egress_agent.server.pod_socket import PodSocket

            servers.append(PodSocket(servicer, self.conf.inventory_socket, audit=self.audit,
                                     metrics=self.metrics.api if self.metrics else None))
        return servers

    def _open_audit(self) -> None:
        if not self.conf.audit_log:
            return
        from egress_agent.server.audit import AuditLog

        self.audit = AuditLog(self.conf.audit_log, self.conf.node.name)
        self._stops.append(self.audit.close)

    def _on_leader(self, leader: str) -> None:
        """The cluster's leader changed (seen by every agent; each logs what it saw)."""
        if self.metrics:
            self.metrics.cluster.on_leader(leader)
        if self.audit:
            self.audit.record(identity=f"node/{self.conf.node.name}", role=None, method="LeaderChanged",
                              object=f"leader/{leader or '(none)'}", outcome="OK")

    def _health(self, kube):
        """What Health adds to the store's state: the watcher's, and a listener without client authentication."""
        warning = ""
        if self.conf.listen and not self.conf.mutual_tls:
            warning = f"the API on {self.conf.listen} has no client authentication"
        if not warning:
            return kube.health if kube else None

        def health() -> tuple[bool, str]:
            ok, detail = kube.health() if kube else (True, "")
            return ok, "; ".join(d for d in (detail, warning) if d)

        return health

    def _pod_check(self, pod_waiter, kernel: bool):
        """GetPod (the CNI CHECK): the pod's node has programmed it, and here its classifier is attached."""
        from egress_agent.node import status as dp_status
        from egress_agent.node.desired import pod_interface

        def check(pod, version: int) -> None:
            key = f"{pod.namespace}/{pod.name}"
            pod_waiter.wait(pod.node, key, version, timeout=2.0)
            if kernel and pod.node == self.conf.node.name:
                from egress_agent.node.service import classifier_attached

                iface = pod_interface(pod.model_dump())
                if not classifier_attached(iface):
                    raise dp_status.PodNotProgrammed(
                        f"the egress classifier is not attached to {iface} on {pod.node}", timed_out=False)

        return check

    def _start_controller(self, store, nodes, leadership, guard) -> None:
        from egress_agent.controller.reconcile import Controller

        from egress_agent.controller.condition_writer import ConditionWriter

        controller = Controller(store, nodes, leadership, guard=guard,
                                on_move=self.metrics.cluster.on_move if self.metrics else None)
        # The leader also keeps the conditions' transition times (a node Up or Down changes Programmed).
        conditions = ConditionWriter(store, nodes, leadership, guard=guard)
        if self.cluster is not None:
            self.cluster.nodes.on_change = lambda: (controller.trigger(), conditions.trigger())
        controller.start()
        self._stops.append(controller.stop)
        conditions.start()
        self._stops.append(conditions.stop)

    def _serve_metrics(self) -> None:
        if not self.metrics:
            return
        from egress_agent.metrics.server import MetricsServer

        tls = None
        if self.conf.tls[0]:  # the API's certificate serves the metrics too (HTTPS; client CA as for the API)
            from egress_agent.server.tls import ServerTLSFiles

            tls = ServerTLSFiles(*self.conf.tls)
        server = MetricsServer(self.metrics.registry, self.conf.metrics_listen, tls)
        try:
            server.start()
        except OSError as err:
            raise StartError(f"cannot serve metrics on {self.conf.metrics_listen}: {err}") from None
        self._stops.append(server.stop)
