"""Relabelling this node while it runs: the one place its record is rewritten with new labels.

Two sources, layered: the configuration (`--node-label` flags over the `--config` file's
`node_labels`, re-read on SIGHUP: cmd/agent.py) over this node's Kubernetes Node object (with
`--node-labels-from-kubernetes`: kube/watcher.py). Local configuration wins for its keys: it is what
the node's operator wrote for this agent, the Node object what the cluster's users label. Each
source calls its setter with its whole set; the merged labels are checked by `models.Node` (the one
place validation lives): bad ones are refused with a log line naming the label, and nothing changes
(the source's previous set is kept). Good ones are written by the store's writer (etcd:
the node and member records under the node's lease in one transaction, as registration writes them;
SQLite: the node record), logged, and audited as method `Relabel`. The leader's controller sees the
node record change and re-places what no longer matches (controller/assignment.py: once, never back).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Mapping

from egress_agent.store import base
from egress_agent.store.etcd_client import EtcdError
from egress_api import models

log = logging.getLogger("egress-agent")

#: Writes the node's record with its new labels; raises base.StoreError/EtcdError when it cannot.
Writer = Callable[[models.Node], None]


def text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(none)"


class NodeLabels:
    def __init__(self, node: models.Node, write: Writer, audit=None):
        self._node = node
        self._configured = dict(node.labels)  # flags over the --config file, as at start
        self._kubernetes: dict[str, str] = {}  # the Node object's, once watched
        self._write = write
        self._audit = audit  # server.audit.AuditLog, or None
        self._lock = threading.Lock()  # two sources at once: one write after the other

    @property
    def node(self) -> models.Node:
        return self._node

    def from_config(self, labels: Mapping[str, str], source: str = "SIGHUP") -> bool:
        """The configuration's labels changed (flags over the re-read file). True when they apply now."""
        with self._lock:
            if not self._apply({**self._kubernetes, **labels}, source):
                return False
            self._configured = dict(labels)
            return True

    def from_kubernetes(self, labels: Mapping[str, str]) -> bool:
        """This node's Node object has these labels now. True when they apply now."""
        with self._lock:
            # Node objects change often (status, annotations): an unchanged result is not worth a log line.
            if not self._apply({**labels, **self._configured}, "kubernetes Node", quiet=True):
                return False
            self._kubernetes = dict(labels)
            return True

    def _apply(self, labels: Mapping[str, str], source: str, quiet: bool = False) -> bool:
        """Make `labels` this node's labels (the caller holds the lock). True when they are its labels now."""
        current = self._node
        try:
            new = models.parse("node", {**current.model_dump(mode="json"), "labels": dict(labels)})
        except models.InvalidObject as err:
            why = "; ".join(f"{v.dotted()}: {v.message}" for v in err.violations)
            log.error("relabel from %s refused, labels stay %s: %s", source, text(current.labels), why)
            self._record(source, "INVALID_ARGUMENT", labels)
            return False
        if new.labels == current.labels:
            log.log(logging.DEBUG if quiet else logging.INFO, "relabel from %s: labels unchanged (%s)", source,
                    text(current.labels))
            return True
        try:
            self._write(new)
        except (base.StoreError, EtcdError) as err:
            log.error("relabel from %s not written, labels stay %s: %s", source, text(current.labels), err)
            self._record(source, "UNAVAILABLE", labels)
            return False
        self._node = new
        log.info("node %s relabelled from %s: %s -> %s", new.name, source, text(current.labels), text(new.labels))
        self._record(source, "OK", new.labels)
        return True

    def refused(self, source: str, why: str) -> None:
        """The configuration itself was refused (e.g. a malformed label in the file): nothing changes, but
        the attempt is audited like any other relabel."""
        self._record(source, "INVALID_ARGUMENT", None, error=why)

    def _record(self, source: str, outcome: str, labels: Mapping[str, str] | None, error: str = "") -> None:
        if self._audit is None:
            return
        extra = {"error": error} if error else {}
        try:
            self._audit.record(identity=f"node/{self._node.name}", role=None, method="Relabel",
                               object=f"node/{self._node.name}", outcome=outcome, source=source,
                               labels=None if labels is None else dict(labels), **extra)
        except OSError as err:  # a full disk must not undo a relabel that is done
            log.error("audit log %s: %s", self._audit.target, err)


def standalone_writer(store: base.Store, nodes) -> Writer:
    """SQLite (one node): the node record, and the controller's node view (controller.nodes.StandaloneNodes)."""

    def write(node: models.Node) -> None:
        before = nodes.node
        nodes.set(node)  # first: the commit below wakes the controller, which must see the new labels
        try:
            store.commit([base.Put(base.NODE, node.name, {**node.model_dump(mode="json"), "state": "Up"})])
        except Exception:
            nodes.set(before)  # the view stays what the record says
            raise

    return write


def cluster_writer(membership) -> Writer:
    """etcd: the node and member records under this node's lease (cluster.membership.Membership.update)."""
    return lambda node: membership.update(node.model_dump(mode="json"))
