"""The lab's record of what it made (JSON in the run dir), with a lock for concurrent CLI calls."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from . import topology


@dataclass
class PodRecord:
    name: str
    namespace: str
    node: str
    ip: str
    labels: dict[str, str] = field(default_factory=dict)
    wiring: str = "direct"  # "cni": through the node's CNI chain; "direct": the lab's own veth (no agents)
    container_id: str = ""  # cni: the CNI_CONTAINERID the chain was run with
    interface: str = ""  # cni: the host-side interface the main plugin created
    main_plugin: str = ""  # cni: ptp or bridge (DEL runs the same chain)

    @property
    def host_interface(self) -> str:
        """The pod's interface on its node: the CNI chain's, or the direct wiring's veth named from the pod key."""
        return self.interface or topology.pod_host_veth(self.name, self.namespace)


@dataclass
class LabState:
    prefix: str
    workers: int
    masters: int
    pods: dict[str, PodRecord] = field(default_factory=dict)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    denies: list[tuple[str, str]] = field(default_factory=list)  # (pod, cidr)
    processes: dict[str, int] = field(default_factory=dict)  # what -> pid
    agents: bool = True  # etcd + one egress-agent per node (False: tests program datapaths directly)
    etcd_members: int = 1  # 1 or 3 (topology.ETCD_MEMBER_PORTS)
    node_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> its agent's labels (--config node_labels)

    def nodes(self) -> list[topology.NodeSpec]:
        return topology.node_specs(self.workers, self.masters)

    def node(self, name: str) -> topology.NodeSpec:
        for n in self.nodes():
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in the lab (nodes: {', '.join(n.name for n in self.nodes())})")

    def pod(self, name: str) -> PodRecord:
        try:
            return self.pods[name]
        except KeyError:
            raise KeyError(f"no pod {name!r} in the lab (pods: {', '.join(sorted(self.pods)) or 'none'})") from None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LabState":
        d = json.loads(text)
        d["pods"] = {k: PodRecord(**v) for k, v in d.get("pods", {}).items()}
        d["denies"] = [tuple(x) for x in d.get("denies", [])]
        return cls(**d)


def state_path() -> Path:
    return topology.run_dir() / "state.json"


def load() -> LabState | None:
    p = state_path()
    if not p.exists():
        return None
    return LabState.from_json(p.read_text())


def require() -> LabState:
    st = load()
    if st is None:
        raise RuntimeError(f"the lab is not up (no {state_path()}): run `egress-lab up` first")
    return st


def save(st: LabState) -> None:
    p = state_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(st.to_json())
    os.replace(tmp, p)


@contextmanager
def locked() -> Iterator[None]:
    d = topology.run_dir()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
