"""A small egress lab for kernel tests: built once per test session, always torn down.

The lab uses its own namespace prefix (`egt-`) and a run dir under pytest's
tmp dir, so it never touches a lab a user has up (`egl-`). `KernelLab.apply`
programs every node's datapath directly from policy descriptions (phase 1 has
no agents): it computes each node's NodeDatapathState as an agent would.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from egress_agent.datapath.kernel import Datapath
from egress_agent.datapath.state import NodeDatapathState, PolicyPath
from egress_api.precedence import DEFAULT_PRIORITY
from egress_lab import build, labstate, pods, topology as T

# EGRESS_TEST_NS_TAG lets two checkouts run the kernel suites side by side.
TAG = os.environ.get("EGRESS_TEST_NS_TAG", "eg")
PREFIX = TAG + "t-"

# The seed's cast, shared by the kernel and the agent labs: alice's frontend pods on a
# normal node and on the gateway node, alice's backend, bob's frontend, paul's frontend.
SEED_PODS = (
    ("fe1", "worker1", "alice", {"role": "frontend"}),
    ("fe2", "worker2", "alice", {"role": "frontend"}),
    ("be1", "worker1", "alice", {"role": "backend"}),
    ("bob1", "worker1", "bob", {"role": "frontend"}),
    ("paul1", "worker3", "paul", {"role": "frontend"}),
)
SEED_NAMESPACES = {"alice": {"user": "alice"}, "bob": {"user": "bob"}, "paul": {"user": "paul"}}


@dataclass(frozen=True)
class LabPolicy:
    name: str
    destination_cidrs: tuple[str, ...]
    egress_source_ip: str
    holder: str | None  # node holding egress_source_ip
    pods: tuple[str, ...]  # selected pod names
    excluded_cidrs: tuple[str, ...] = ()
    priority: int = DEFAULT_PRIORITY


class KernelLab:
    def __init__(self, run_dir: Path, workers: int, masters: int) -> None:
        self._saved_env = {k: os.environ.get(k) for k in ("EGRESS_LAB_PREFIX", "EGRESS_LAB_DIR")}
        os.environ["EGRESS_LAB_PREFIX"] = PREFIX
        os.environ["EGRESS_LAB_DIR"] = str(run_dir)
        build.down()  # whatever a crashed session left behind
        self.state = build.up(workers, masters, agents=False)
        self.datapaths: dict[str, Datapath] = {}
        self.service_cidrs: tuple[str, ...] = ()  # what the agents' --service-cidr would say

    # --- workload ---------------------------------------------------------------

    def add_pod(self, name: str, node: str, namespace: str = "default", **labels: str) -> str:
        return pods.add(name, node, namespace, labels).ip

    def pod_ip(self, name: str) -> str:
        return labstate.require().pod(name).ip

    def whoami(self, pod: str, dst: str = T.EXT_HOST_IP, timeout: float = 3.0) -> str:
        return pods.whoami(pod, dst, timeout)[0]

    def reaches(self, pod: str, dst: str = T.EXT_HOST_IP, timeout: float = 1.0) -> bool:
        try:
            self.whoami(pod, dst, timeout)
            return True
        except RuntimeError:
            return False

    def veth(self, pod: str) -> str:
        """The host side of the pod's veth on its node."""
        p = labstate.require().pod(pod)
        return T.pod_host_veth(p.name, p.namespace)

    def node(self, name: str) -> T.NodeSpec:
        return labstate.require().node(name)

    def run(self, ns: str, cmd: str) -> str:
        return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], capture_output=True, text=True, check=True).stdout

    # --- datapath -----------------------------------------------------------------

    def datapath(self, node: str) -> Datapath:
        if node not in self.datapaths:
            self.datapaths[node] = Datapath(self.node(node).netns)
        return self.datapaths[node]

    def node_state(self, node: str, policies: list[LabPolicy], held: set[str] | None = None) -> NodeDatapathState:
        st = labstate.require()
        spec = st.node(node)
        paths = tuple(
            PolicyPath(
                name=p.name,
                destination_cidrs=frozenset(p.destination_cidrs),
                egress_source_ip=p.egress_source_ip,
                gateway_node_ip=st.node(p.holder).ip if p.holder else None,
                selected_pod_ips=frozenset(st.pod(n).ip for n in p.pods),
                excluded_cidrs=frozenset(p.excluded_cidrs),
                priority=p.priority,
            )
            for p in policies
        )
        if held is None:
            held = {p.egress_source_ip for p in policies if p.holder == node}
        return NodeDatapathState(
            node=node,
            uplink=T.UPLINK,
            node_ip=spec.ip_with_prefix,
            pod_cidr=spec.pod_cidr,
            cluster_pod_cidrs=frozenset(n.pod_cidr for n in st.nodes()),
            local_pods={p.ip: T.pod_host_veth(p.name, p.namespace) for p in st.pods.values() if p.node == node},
            policies=paths,
            held_floating_ips=frozenset(held),
            service_cidrs=frozenset(self.service_cidrs),
        )

    def apply(self, policies: list[LabPolicy], skip: tuple[str, ...] = ()) -> None:
        """Program every node (except `skip`, e.g. a stopped node) as its agent would."""
        for spec in labstate.require().nodes():
            if spec.name not in skip:
                self.datapath(spec.name).apply(self.node_state(spec.name, policies))

    def reset(self) -> None:
        """Remove everything the datapaths installed, so each test starts clean."""
        for node, dp in self.datapaths.items():
            dp.cleanup(T.UPLINK, self.node(node).ip_with_prefix)
            dp.close()
        self.datapaths.clear()
        self.service_cidrs = ()
        for spec in labstate.require().nodes():
            build.node_link(spec.name, "up")

    def close(self) -> None:
        try:
            self.reset()
        finally:
            build.down()
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
