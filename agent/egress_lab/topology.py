"""Names and addresses of everything in the lab (pure: no kernel access).

Every network namespace the lab makes is named `<prefix><role>` so `down` can
find and remove all of them, even after a crash that lost the state file.
Addresses are the documentation ranges from the issue: the node network
192.0.2.0/24, the outside networks 198.51.100.0/24 and 203.0.113.0/24, and pod
CIDRs 10.244.<i>.0/24, used only inside lab namespaces.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from egress_agent.node.naming import host_veth_name

DEFAULT_PREFIX = "egl-"
DEFAULT_RUN_DIR = "/run/egress-lab"

NODE_NET = ipaddress.ip_network("192.0.2.0/24")
ROUTER_IP = "192.0.2.1"
ETCD_IP = "192.0.2.250"
# Client and peer port of each etcd member on the etcd host (etcd's own convention for a local cluster).
# One member by default; three let faults take one member away while the cluster keeps its quorum.
ETCD_MEMBER_PORTS = ((2379, 2380), (22379, 22380), (32379, 32380))
AGENT_PORT = 7443  # each agent's API + probe address, on its node IP (inside the lab only)
METRICS_PORT = 9464  # each agent's Prometheus /metrics, on its node IP (inside the lab only)
FIRST_NODE_HOST = 11  # worker1 = 192.0.2.11
CLUSTER_POD_CIDR = "10.244.0.0/16"
# The lab cluster's service CIDR (every agent's --service-cidr): inside the lab's pod range, no node's pod CIDR.
SERVICE_CIDR = "10.244.200.0/24"
POD_GATEWAY = "169.254.1.1"  # pods' default gateway, answered by proxy ARP on the host veth

EXT_HOST_IP = "198.51.100.10"
EXT_ROUTER_IP = "198.51.100.1"
EXT2_HOST_IP = "203.0.113.10"
EXT2_ROUTER_IP = "203.0.113.1"
WHOAMI_PORT = 80
IPERF_PORT = 5201

UPLINK = "eth0"  # every node's interface on the node network
BRIDGE = "br0"


def prefix() -> str:
    return os.environ.get("EGRESS_LAB_PREFIX", DEFAULT_PREFIX)


def run_dir() -> Path:
    return Path(os.environ.get("EGRESS_LAB_DIR", DEFAULT_RUN_DIR))


@dataclass(frozen=True)
class NodeSpec:
    name: str  # worker1, master1, ...
    role: str  # worker | master
    index: int  # 1-based position: node IP .10+index, pod CIDR 10.244.<index>.0/24

    @property
    def ip(self) -> str:
        return str(NODE_NET.network_address + FIRST_NODE_HOST - 1 + self.index)

    @property
    def ip_with_prefix(self) -> str:
        return f"{self.ip}/{NODE_NET.prefixlen}"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def netns(self) -> str:
        return prefix() + self.name

    @property
    def bridge_port(self) -> str:
        return "n-" + self.name  # the node's cable, on the bridge side


@dataclass(frozen=True)
class EtcdMember:
    """One etcd member on the etcd host: clients reach it on the node network, its peers on the host's loopback."""

    name: str  # also its process key in the lab state and its log's name (<run dir>/<name>.log)
    client_port: int
    peer_port: int

    @property
    def url(self) -> str:
        return f"http://{ETCD_IP}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


def node_specs(workers: int, masters: int) -> list[NodeSpec]:
    """Workers first (.11, .12, ...), then masters, as in the seed's status example."""
    if workers < 0 or masters < 0 or workers + masters < 1:
        raise ValueError("the lab needs at least one node (--workers N --masters M)")
    if workers + masters > 200:
        raise ValueError("at most 200 nodes fit in 192.0.2.11-.210")
    specs = [NodeSpec(f"worker{i}", "worker", i) for i in range(1, workers + 1)]
    specs += [NodeSpec(f"master{j}", "master", workers + j) for j in range(1, masters + 1)]
    return specs


def net_ns() -> str:
    return prefix() + "net"


def router_ns() -> str:
    return prefix() + "router"


def ext_ns() -> str:
    return prefix() + "ext"


def ext2_ns() -> str:
    return prefix() + "ext2"


def etcd_ns() -> str:
    return prefix() + "etcd"


def pod_ns(pod: str) -> str:
    return prefix() + "pod-" + pod


def pod_host_veth(pod: str, namespace: str) -> str:
    """The host side of a pod's veth, in its node: named from the pod key, as the agent expects it."""
    return host_veth_name(namespace, pod)


def agent_config(node: str) -> Path:
    """The node agent's --config file: its node_labels, which `egress-lab node label` edits (then SIGHUP)."""
    return run_dir() / "agents" / f"{node}.yaml"


def agent_socket(node: str) -> Path:
    """The unix socket of the node's egress-agent (Terraform, egressctl and the lab use it)."""
    return run_dir() / "agents" / f"{node}.sock"


def inventory_socket(node: str) -> Path:
    """The node agent's --inventory-socket: what the node's CNI chain calls (inventory role only)."""
    return run_dir() / "agents" / f"{node}-inventory.sock"


def etcd_members(count: int) -> list[EtcdMember]:
    """The lab's etcd members (`egress-lab up --etcd-members N`), in the order every agent lists them."""
    if count not in (1, len(ETCD_MEMBER_PORTS)):  # two members would lose their quorum with either one
        raise ValueError(f"the lab runs 1 or {len(ETCD_MEMBER_PORTS)} etcd members (--etcd-members), not {count}")
    return [EtcdMember(f"etcd{i}", client, peer) for i, (client, peer) in enumerate(ETCD_MEMBER_PORTS[:count], 1)]


def etcd_urls(count: int) -> list[str]:
    return [m.url for m in etcd_members(count)]
