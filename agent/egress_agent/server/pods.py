"""How UpsertPod writes a pod: directly, or joined with what Kubernetes says about it.

`DirectPods` stores the pod as the caller sent it (the lab, tests, a runtime
passing labels). With `egress-agent --kubernetes`, `egress_agent.kube.inventory.KubeInventory`
takes its place: labels come from the Kubernetes API, IP and interface from the CNI call.
"""

from __future__ import annotations

from typing import Protocol

from egress_agent.store import base
from egress_agent.store.base import Put
from egress_api import models


class PodWriter(Protocol):
    def upsert(self, pod: models.Pod) -> tuple[models.Pod, int]:
        """Store the pod: (the pod as stored -- its labels may come from Kubernetes --, the store revision)."""
        ...


def pod_key(pod: models.Pod) -> str:
    return f"{pod.namespace}/{pod.name}"


class DirectPods:
    def __init__(self, store: base.Store):
        self.store = store

    def upsert(self, pod: models.Pod) -> tuple[models.Pod, int]:
        """(the pod as stored, the store revision of the write)."""
        return pod, self.store.commit([Put(base.POD, pod_key(pod), pod.model_dump(mode="json"))])


class LabelsUnknown(Exception):
    """The pod's labels did not arrive from the Kubernetes API in time (-> DEADLINE_EXCEEDED from the agent)."""
