"""The egress lab with its real control plane (etcd + one egress-agent per node), for tests and benchmarks.

Built once (its own namespace prefix and run dir, so it never touches a lab a
user has up), always torn down by `close()`. Pods, labels and node failures go
through `egress_lab` exactly as the `egress-lab` CLI does them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

from egress_api.client import EgressClient
from egress_lab import agents, build, labstate, pods, topology as T

V = TypeVar("V")


class AgentLab:
    def __init__(self, run_dir: Path, workers: int = 3, masters: int = 1, prefix: str | None = None,
                 etcd_members: int = 1) -> None:
        self._saved_env = {k: os.environ.get(k) for k in ("EGRESS_LAB_PREFIX", "EGRESS_LAB_DIR")}
        os.environ["EGRESS_LAB_PREFIX"] = prefix or os.environ.get("EGRESS_TEST_NS_TAG", "eg") + "a-"
        os.environ["EGRESS_LAB_DIR"] = str(run_dir)
        self.env = dict(os.environ)
        build.down()  # whatever a crashed run left behind
        try:
            self.state = build.up(workers, masters, agents=True, etcd_members=etcd_members)
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

    def partition(self, node: str) -> None:
        """Cut `node` off (its cable to the node network down) while its agent keeps running."""
        build.build_cable(self.node(node), "down")

    def heal(self, node: str) -> None:
        build.build_cable(self.node(node), "up")

    @property
    def etcd_members(self) -> list[T.EtcdMember]:
        """The etcd members, in the order every agent lists them."""
        return T.etcd_members(self.state.etcd_members)

    @property
    def etcd_endpoints(self) -> str:
        """Every member's client URL, comma-separated (EtcdStore and `--store etcd:` take this form)."""
        return ",".join(T.etcd_urls(self.state.etcd_members))

    def etcd_stop(self, member: str | None = None) -> None:
        """The lab's etcd (or one member) goes away for everyone (kill -9)."""
        with labstate.locked():
            st = labstate.require()
            agents.stop_etcd(st, member)
            labstate.save(st)

    def etcd_start(self, member: str | None = None) -> None:
        """etcd (or one member) comes back with its data."""
        with labstate.locked():
            st = labstate.require()
            agents.start_etcd(st, member)
            labstate.save(st)

    def etcd_pause(self, member: str) -> None:
        """SIGSTOP one member: it hangs (accepts connections, answers nothing) until `etcd_resume`."""
        agents.signal_etcd(labstate.require(), member, signal.SIGSTOP)

    def etcd_resume(self, member: str) -> None:
        agents.signal_etcd(labstate.require(), member, signal.SIGCONT)

    def floating_ips_on(self, node: str) -> set[str]:
        """The addresses on `node`'s uplink now, as the kernel has them (its node IP excluded)."""
        spec = self.node(node)
        out = subprocess.run(["ip", "-n", spec.netns, "-4", "-o", "addr", "show", "dev", T.UPLINK],
                             capture_output=True, text=True, check=True).stdout
        return {f.split("/")[0] for line in out.splitlines() for f in line.split()[3:4]} - {spec.ip}

    def agent_log(self, node: str) -> str:
        return agents.log_path(node).read_text(errors="replace")

    def log_tails(self, lines: int = 40) -> str:
        """The last `lines` of every node's agent log and of etcd's (for failure reports)."""
        parts = [f"--- {spec.name} ({agents.log_path(spec.name)})\n{agents.log_tail(spec.name, lines)}"
                 for spec in labstate.require().nodes()]
        parts += [f"--- {m.name} ({agents.etcd_log_path(m.name)})\n{agents.tail(agents.etcd_log_path(m.name), lines)}"
                  for m in self.etcd_members]
        return "\n".join(parts)

    def close(self) -> None:
        try:
            build.down()
        finally:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class KernelPoller:
    """Polls the nodes' uplinks in a thread and records, at every poll, where each floating IP was.

    `violations()` lists the polls at which an IP was not on exactly its
    expected holder; `longest_absence()` is the longest time an IP was on no
    node at all (between the last poll that saw it and the next that did).
    """

    def __init__(self, lab: AgentLab, nodes: list[str], interval: float = 0.02) -> None:
        import threading

        self.lab, self.nodes, self.interval = lab, nodes, interval
        self.polls: list[tuple[float, dict[str, set[str]]]] = []  # (monotonic time, ip -> nodes holding it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kernel-poller", daemon=True)

    def __enter__(self) -> "KernelPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            # Stamped when the poll starts: a poll is a read of every node in turn, so stamping it when it
            # ends dated a node read before some event as if it had been read after it.
            started = time.monotonic()
            where: dict[str, set[str]] = {}
            for node in self.nodes:
                for ip in self.lab.floating_ips_on(node):
                    where.setdefault(ip, set()).add(node)
            self.polls.append((started, where))
            self._stop.wait(self.interval)

    def violations(self, expected: dict[str, str]) -> list[tuple[float, str, set[str]]]:
        """(seconds since the first poll, ip, where it was) for every poll where ip was not on exactly its holder."""
        t0 = self.polls[0][0] if self.polls else 0.0
        return [(t - t0, ip, where.get(ip, set())) for t, where in self.polls for ip, holder in expected.items()
                if where.get(ip, set()) != {holder}]

    def longest_absence(self, ip: str) -> float:
        """Seconds between a poll that saw `ip` on some node and the next that did, at most (0: never absent)."""
        seen = [t for t, where in self.polls if where.get(ip)]
        return max((b - a for a, b in zip(seen, seen[1:])), default=0.0)


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
