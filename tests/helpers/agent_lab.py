"""The egress lab with its real control plane (etcd + one egress-agent per node), for tests and benchmarks.

Built once (its own namespace prefix and run dir, so it never touches a lab a
user has up), always torn down by `close()`. Pods, labels and node failures go
through `egress_lab` exactly as the `egress-lab` CLI does them.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

from egress_api.client import EgressClient
from egress_lab import agents, build, labstate, pods, topology as T

V = TypeVar("V")


class AgentLab:
    def __init__(self, run_dir: Path, workers: int = 3, masters: int = 1, prefix: str | None = None) -> None:
        self._saved_env = {k: os.environ.get(k) for k in ("EGRESS_LAB_PREFIX", "EGRESS_LAB_DIR")}
        os.environ["EGRESS_LAB_PREFIX"] = prefix or os.environ.get("EGRESS_TEST_NS_TAG", "eg") + "a-"
        os.environ["EGRESS_LAB_DIR"] = str(run_dir)
        self.env = dict(os.environ)
        build.down()  # whatever a crashed run left behind
        try:
            self.state = build.up(workers, masters, agents=True)
        except BaseException:
            self.close()
            raise

    # --- the API ------------------------------------------------------------------------
    def endpoint(self, node: str = "worker1") -> str:
        return agents.endpoint(node)

    def client(self, node: str = "worker1", timeout: float = 20.0) -> EgressClient:
        return EgressClient(self.endpoint(node), timeout=timeout)

    def holder(self, ip: str, gateway: str = "default", via: str | None = None) -> str:
        st = labstate.require()
        with agents.client(st, prefer=via) as c:
            return c.gateway_status(gateway).floating_ips.get(ip, "")

    # --- workload -------------------------------------------------------------------------
    def add_pod(self, name: str, node: str, namespace: str, at_start=None, wiring: str | None = None,
                **labels: str) -> str:
        """Through the node's CNI chain (ptp + egress-cni); `at_start(st, pod)` runs when its first process may."""
        return pods.add(name, node, namespace, labels, at_start=at_start, wiring=wiring).ip

    def label_pod(self, name: str, **labels: str) -> None:
        pods.label_pod(name, labels)

    def delete_pod(self, name: str) -> None:
        pods.delete(name)

    def label_namespace(self, namespace: str, **labels: str) -> None:
        pods.label_namespace(namespace, labels)

    def pod(self, name: str) -> labstate.PodRecord:
        return labstate.require().pod(name)

    def whoami(self, pod: str, dst: str = T.EXT_HOST_IP, timeout: float = 2.0) -> str:
        return pods.whoami(pod, dst, timeout)[0]

    def seen_as(self, pod: str, dst: str = T.EXT_HOST_IP, timeout: float = 1.0) -> str:
        """The source IP the external host saw, or "" when the pod cannot reach it."""
        try:
            return self.whoami(pod, dst, timeout)
        except RuntimeError:
            return ""

    def run(self, ns: str, cmd: str, check: bool = True) -> str:
        return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], capture_output=True, text=True, check=check).stdout

    def node(self, name: str) -> T.NodeSpec:
        return labstate.require().node(name)

    # --- failures ---------------------------------------------------------------------------
    def node_stop(self, node: str) -> None:
        build.node_stop(node)

    def node_start(self, node: str) -> None:
        build.node_start(node)

    def close(self) -> None:
        try:
            build.down()
        finally:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def eventually(fn: Callable[[], V], expect: V, timeout: float = 10.0, interval: float = 0.05) -> V:
    """Poll `fn` until it returns `expect`; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value == expect:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout}s still {value!r}, expected {expect!r}")
        time.sleep(interval)
