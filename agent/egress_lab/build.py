"""Build and tear down the lab topology: bridge, router, external hosts, etcd host, nodes.

Every step is idempotent (create-if-missing, replace routes, redefine the
node's lab nftables table), so `up` on a running lab repairs it and changes
nothing that is already right.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from egress_api import models

from . import agents as A, labstate, netns, pods, topology as T
from .labstate import LabState

# The node's own configuration, standing in for kubelet + CNI: default
# masquerade of pod traffic leaving the cluster, and a forward filter where
# `egress-lab deny POD CIDR` stands in for a Kubernetes network policy.
NODE_NFT = """
table ip lab_node
delete table ip lab_node
table ip lab_node {{
  set netpol_deny {{
    type ipv4_addr . ipv4_addr
    flags interval
    comment "network policy stand-in: (pod, destination) pairs dropped in forward"
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ip saddr . ip daddr @netpol_deny counter drop comment "network policy"
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {cluster} ip daddr != {cluster} oifname "{uplink}" counter masquerade comment "default masquerade to the node IP"
  }}
}}
"""


def _bridge() -> None:
    ns = T.net_ns()
    netns.create(ns)
    with netns.ipr(ns) as ip:
        if not ip.link_lookup(ifname=T.BRIDGE):
            ip.link("add", ifname=T.BRIDGE, kind="bridge")
        netns.up(ip, T.BRIDGE)


def _plug(host_ns: str, port: str, cidr: str) -> None:
    """Connect `host_ns` to the node-network bridge: eth0 in the host, `port` on the bridge."""
    netns.create(host_ns)
    netns.veth(T.net_ns(), port, host_ns, T.UPLINK)
    with netns.ipr(T.net_ns()) as ip:
        idx = netns.link_index(ip, port)
        ip.link("set", index=idx, master=netns.link_index(ip, T.BRIDGE))
        ip.link("set", index=idx, state="up")
    with netns.ipr(host_ns) as ip:
        netns.add_addr(ip, T.UPLINK, cidr)
        netns.up(ip, T.UPLINK)


def _router() -> None:
    ns = T.router_ns()
    _plug(ns, "r-router", f"{T.ROUTER_IP}/24")
    netns.sysctls(ns, {"net.ipv4.ip_forward": 1})
    for ifname, peer_ns, rip, hip in (
        ("ext", T.ext_ns(), T.EXT_ROUTER_IP, T.EXT_HOST_IP),
        ("ext2", T.ext2_ns(), T.EXT2_ROUTER_IP, T.EXT2_HOST_IP),
    ):
        netns.create(peer_ns)
        netns.veth(ns, ifname, peer_ns, T.UPLINK)
        with netns.ipr(ns) as ip:
            netns.add_addr(ip, ifname, f"{rip}/24")
            netns.up(ip, ifname)
        with netns.ipr(peer_ns) as ip:
            netns.add_addr(ip, T.UPLINK, f"{hip}/24")
            netns.up(ip, T.UPLINK)
            netns.route_replace(ip, "default", gateway=rip)
    # No NAT and no route to pod CIDRs here: an un-NATed pod packet cannot come back.


def _etcd_host() -> None:
    _plug(T.etcd_ns(), "r-etcd", f"{T.ETCD_IP}/24")
    with netns.ipr(T.etcd_ns()) as ip:
        netns.route_replace(ip, "default", gateway=T.ROUTER_IP)


def _node(spec: T.NodeSpec, all_nodes: list[T.NodeSpec]) -> None:
    _plug(spec.netns, spec.bridge_port, spec.ip_with_prefix)
    # Forwarding for pods; no ICMP redirects: a gateway node forwards steered
    # traffic back out of the interface it came in on, on purpose.
    netns.sysctls(
        spec.netns,
        {
            "net.ipv4.ip_forward": 1,
            "net.ipv4.conf.all.send_redirects": 0,
            "net.ipv4.conf.default.send_redirects": 0,
            f"net.ipv4.conf.{T.UPLINK}.send_redirects": 0,
        },
    )
    with netns.ipr(spec.netns) as ip:
        netns.route_replace(ip, "default", gateway=T.ROUTER_IP)
        for other in all_nodes:  # host-gw: every other node's pod CIDR via that node
            if other.name != spec.name:
                netns.route_replace(ip, other.pod_cidr, gateway=other.ip)
    # Only when missing: re-creating it would reorder the node's ruleset and reset its counters.
    if netns.run(spec.netns, ["nft", "list", "table", "ip", "lab_node"], check=False).returncode != 0:
        nft = NODE_NFT.format(cluster=T.CLUSTER_POD_CIDR, uplink=T.UPLINK)
        netns.run(spec.netns, ["nft", "-f", "-"], input=nft)


def _start(st: LabState, what: str, ns: str, argv: list[str]) -> None:
    pid = st.processes.get(what)
    if pid and pid in netns.pids(ns):
        return
    log = open(T.run_dir() / f"{what}.log", "ab")
    proc = subprocess.Popen(netns.argv_in(ns, argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    st.processes[what] = proc.pid


def _servers(st: LabState) -> None:
    py = [sys.executable, "-m", "egress_lab.whoami_server"]
    _start(st, "whoami-ext", T.ext_ns(), py + ["--bind", T.EXT_HOST_IP, "--port", str(T.WHOAMI_PORT)])
    _start(st, "whoami-ext2", T.ext2_ns(), py + ["--bind", T.EXT2_HOST_IP, "--port", str(T.WHOAMI_PORT)])
    _start(st, "iperf3-ext", T.ext_ns(), ["iperf3", "-s", "-B", T.EXT_HOST_IP, "-p", str(T.IPERF_PORT)])
    for host, ns in ((T.EXT_HOST_IP, T.ext_ns()), (T.EXT2_HOST_IP, T.ext2_ns())):
        _wait_listening(ns, host, T.WHOAMI_PORT)


def _wait_listening(ns: str, host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = netns.run(ns, ["ss", "-Hltn", f"src {host}:{port}"], check=False).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} in {ns}: see {T.run_dir()}")


def up(workers: int, masters: int, agents: bool = True, etcd_members: int = 1) -> LabState:
    """Build (or repair) the lab. A lab that is up with another shape must be taken down first.

    `agents`: also start etcd (`etcd_members` of them) and one egress-agent per node
    (the product); without them the lab is bare topology whose datapaths tests program directly.
    """
    specs = T.node_specs(workers, masters)
    T.etcd_members(etcd_members)  # checks the count before anything is built
    with labstate.locked():
        st = labstate.load()
        shape = (workers, masters, T.prefix(), agents, etcd_members)
        if st is not None and (st.workers, st.masters, st.prefix, st.agents, st.etcd_members) != shape:
            raise RuntimeError(
                f"the lab is up with {st.workers} workers and {st.masters} masters (prefix {st.prefix!r}"
                f"{f', {st.etcd_members} etcd members' if st.agents else ', no agents'}): "
                "run `egress-lab down` first to change its shape"
            )
        st = st or LabState(prefix=T.prefix(), workers=workers, masters=masters, agents=agents,
                            etcd_members=etcd_members)
        _bridge()
        _router()
        _etcd_host()
        for spec in specs:
            _node(spec, specs)
        pods.restore(st)
        _servers(st)
        labstate.save(st)
        if agents:
            A.ensure_pki(specs)
            A.start_etcd(st)
            for spec in specs:
                if not A.running(st, A.agent_key(spec.name)):
                    build_cable(spec, "up")
                    A.start_agent(st, spec)
            labstate.save(st)  # pids first: `down` finds them even if an agent fails to start
            A.wait_healthy(st, specs)
            pods.register_all(st)
        return st


def down() -> list[str]:
    """Remove every namespace with the lab prefix (pods first), its processes and its files."""
    removed = []
    names = netns.with_prefix(T.prefix())
    # Agents first, with SIGKILL: a graceful stop would wait on an etcd that is going away too.
    for name in names:
        if not name.startswith(T.prefix() + "pod-") and _runs_agent(name):
            netns.kill_all(name, signal.SIGKILL)
    pods = [n for n in names if n.startswith(T.prefix() + "pod-")]
    for name in pods + [n for n in names if n not in pods]:
        netns.remove(name)
        removed.append(name)
    d = T.run_dir()
    if d.exists():
        for child in d.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        try:
            os.rmdir(d)
        except OSError:
            pass
    return removed


def _runs_agent(ns: str) -> bool:
    for pid in netns.pids(ns):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"egress-agent" in cmdline or b"egress_agent" in cmdline:
            return True
    return False


def build_cable(spec: T.NodeSpec, state: str) -> None:
    with netns.ipr(T.net_ns()) as ip:
        ip.link("set", index=netns.link_index(ip, spec.bridge_port), state=state)


def node_stop(node: str) -> None:
    """The node dies: its uplink goes down and its agent is killed -9 (the datapath it left stays, unreachable).

    Cable first: a dead node's kernel answers nothing, but a live kernel whose agent is already gone
    refuses probes (ICMP port unreachable), and peers read one refusal as "agent crashed, node alive" and
    hold its IPs for 2.5 s (the crash hold). Killing first let a probe in between do that in 4 of 20 runs.
    """
    with labstate.locked():
        st = labstate.require()
        spec = st.node(node)
        build_cable(spec, "down")
        A.kill(st, A.agent_key(node))
        labstate.save(st)


def node_start(node: str) -> None:
    """The node comes back as from a reboot: clean kernel state, uplink up, a fresh agent."""
    with labstate.locked():
        st = labstate.require()
        spec = st.node(node)
        if st.agents:
            if A.running(st, A.agent_key(node)):
                build_cable(spec, "up")
                return
            A.cleanup_node(spec)
        build_cable(spec, "up")
        if st.agents:
            A.start_agent(st, spec)
            labstate.save(st)
            A.wait_healthy(st, [spec])


def agent_restart(node: str, kill: bool = False) -> float:
    """Restart one node's agent with the same settings, the node itself untouched (uplink up, kernel
    state as the agent left it): SIGTERM, or kill -9 with `kill`. Returns the seconds until the new
    agent answered healthy. What operators rehearse before an upgrade."""
    with labstate.locked():
        st = labstate.require()
        if not st.agents:
            raise RuntimeError("this lab runs no agents (egress-lab up without --no-agents)")
        spec = st.node(node)
        began = time.monotonic()
        A.kill(st, A.agent_key(node), signal.SIGKILL if kill else signal.SIGTERM)
        A.start_agent(st, spec)
        labstate.save(st)
        A.wait_healthy(st, [spec])
        return time.monotonic() - began


def node_label(node: str, labels: dict[str, str], timeout: float = 15.0) -> dict[str, str]:
    """Merge labels into a node's ('-' removes a key), write them to its agent's --config file and send
    SIGHUP: the agent relabels its node live, as `systemctl reload` would (docs/placement.md). Waits until
    the node's record shows them. Returns the node's labels."""
    with labstate.locked():
        st = labstate.require()
        spec = st.node(node)  # a KeyError naming the lab's nodes
        cur = dict(st.node_labels.get(node, {}))
        for k, v in labels.items():
            if v == "-":
                cur.pop(k, None)
            else:
                cur[k] = v
        try:  # the agent would refuse them too, but only in its log
            models.parse("node", {"name": node, "node_ip": spec.ip_with_prefix, "labels": cur})
        except models.InvalidObject as err:
            raise ValueError("; ".join(f"{v.dotted()}: {v.message}" for v in err.violations)) from None
        st.node_labels[node] = cur
        labstate.save(st)
        if not st.agents:
            return cur
        A.write_agent_config(node, cur)
        if not A.reload_agent(st, node):
            return cur  # a stopped agent reads the file when it starts
    with A.client(st, prefer=node, timeout=5) as c:
        wait = time.monotonic() + timeout
        while c.get_node(node).labels != cur:
            if time.monotonic() > wait:
                raise RuntimeError(f"the agent on {node} did not take labels {cur} within {timeout:g}s: see "
                                   f"{A.log_path(node)}\n{A.log_tail(node)}")
            time.sleep(0.05)
    return cur


def node_link(node: str, state: str) -> None:
    """Plug or unplug a node's cable (the bridge side of its uplink): the node cannot tell a dead network from a dead peer."""
    st = labstate.require()
    spec = st.node(node)
    with netns.ipr(T.net_ns()) as ip:
        ip.link("set", index=netns.link_index(ip, spec.bridge_port), state=state)
