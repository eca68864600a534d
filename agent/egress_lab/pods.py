"""Pods (a network namespace wired to its node), pod and namespace labels, and network-policy denies.

With agents (the product), a pod is created as a container runtime creates
one: an empty network namespace, then the node's CNI chain (`cni`: Debian's
ptp or bridge with host-local IPAM, then egress-cni), whose ADD returns only
once the node has programmed the pod; only then may the pod's first process run
(`at_start`). `del` runs the chain's DEL.

Without agents (`egress-lab up --no-agents`, the kernel tests that program
datapaths themselves) there is nobody for egress-cni to ask, so pods get the
lab's direct wiring, like Calico's host-gw mode: the pod has its IP as a /32
and a default route via 169.254.1.1, which the host side of the veth (named
from the pod key) answers by proxy ARP; its eth0 comes up last.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from typing import Callable

from egress_api import errors, models

from . import agents, cni, labstate, netns, topology as T
from .labstate import LabState, PodRecord


def _free_ip(st: LabState, spec: T.NodeSpec) -> str:
    used = {p.ip for p in st.pods.values() if p.node == spec.name}
    net = ipaddress.ip_network(spec.pod_cidr)
    for host in list(net.hosts())[1:]:  # .1 is left for the node by convention
        if str(host) not in used:
            return str(host)
    raise RuntimeError(f"node {spec.name}: pod CIDR {spec.pod_cidr} is full")


def wire(pod: PodRecord, spec: T.NodeSpec) -> None:
    """Create the pod namespace and its veth; idempotent. The pod's eth0 stays down."""
    ns = T.pod_ns(pod.name)
    veth = T.pod_host_veth(pod.name, pod.namespace)
    netns.create(ns)
    netns.veth(spec.netns, veth, ns, "eth0")
    with netns.ipr(ns) as ip:
        netns.add_addr(ip, "eth0", f"{pod.ip}/32")
    # Proxy ARP answers at once (as Calico sets it): a pod's first packet leaves the moment its link is up.
    netns.sysctls(spec.netns, {f"net.ipv4.conf.{veth}.proxy_arp": 1, f"net.ipv4.neigh.{veth}.proxy_delay": 0})
    with netns.ipr(spec.netns) as ip:
        netns.up(ip, veth)
        netns.route_replace(ip, f"{pod.ip}/32", oif=netns.link_index(ip, veth), scope="link")


def link_up(pod: PodRecord) -> None:
    with netns.ipr(T.pod_ns(pod.name)) as ip:
        netns.up(ip, "eth0")
        netns.route_replace(ip, T.POD_GATEWAY + "/32", oif=netns.link_index(ip, "eth0"), scope="link")
        netns.route_replace(ip, "default", gateway=T.POD_GATEWAY, oif=netns.link_index(ip, "eth0"))


WIRINGS = ("cni", "direct")


def add(
    name: str,
    node: str,
    namespace: str,
    labels: dict[str, str],
    at_start: Callable[[LabState, PodRecord], None] | None = None,
    wiring: str | None = None,
    main_plugin: str = "ptp",
) -> PodRecord:
    """Create a pod. `at_start` runs at the instant its first process may: after the CNI chain returned
    (direct wiring: before its link comes up). `wiring`: "cni" (default with agents) or "direct"."""
    with labstate.locked():
        st = labstate.require()
        spec = st.node(node)
        wiring = wiring or ("cni" if st.agents else "direct")
        if wiring not in WIRINGS:
            raise ValueError(f"wiring {wiring!r}: use one of {', '.join(WIRINGS)}")
        if wiring == "cni" and not st.agents:
            raise RuntimeError("the CNI chain needs the node's egress-agent: this lab runs without agents (--direct)")
        old = st.pods.get(name)
        if old is not None and (old.node, old.namespace, old.wiring) != (node, namespace, wiring):
            raise RuntimeError(f"pod {name!r} already exists on {old.node} in namespace {old.namespace}: delete it first")
        if wiring == "direct":
            return _add_direct(st, spec, name, namespace, labels, old, at_start)
        pod = old or PodRecord(name=name, namespace=namespace, node=node, ip="", wiring="cni",
                               container_id=f"{T.prefix()}{name}", main_plugin=main_plugin)
        pod.labels = dict(labels)
        st.pods[name] = pod
        st.namespaces.setdefault(namespace, {})
        labstate.save(st)
        netns.create(T.pod_ns(name))
    # Outside the lab lock: pods start concurrently, as on a node (host-local IPAM has its own lock).
    try:
        result = cni.add(spec, cni.conflist(spec, pod.main_plugin), pod.container_id, T.pod_ns(name), namespace, name,
                         pod.labels)
    except BaseException:
        with labstate.locked():
            st = labstate.require()
            st.pods.pop(name, None)
            labstate.save(st)
            netns.remove(T.pod_ns(name))
        raise
    with labstate.locked():
        st = labstate.require()
        pod = st.pods[name]
        pod.ip, pod.interface = cni.pod_ip(result), cni.host_interface(result)
        labstate.save(st)
    if at_start is not None:
        at_start(st, pod)
    return pod


def _add_direct(st: LabState, spec: T.NodeSpec, name: str, namespace: str, labels: dict[str, str],
                old: PodRecord | None, at_start) -> PodRecord:
    pod = PodRecord(name=name, namespace=namespace, node=spec.name, ip=old.ip if old else _free_ip(st, spec),
                    labels=dict(labels))
    st.pods[name] = pod
    st.namespaces.setdefault(namespace, {})
    labstate.save(st)
    wire(pod, spec)
    if st.agents:
        register(st, pod)  # returns once the pod's node has programmed it: no leak at pod start
    if at_start is not None:
        at_start(st, pod)
    link_up(pod)
    return pod


def delete(name: str, after_unwire: Callable[[LabState, PodRecord], None] | None = None) -> PodRecord:
    with labstate.locked():
        st = labstate.require()
        pod = st.pod(name)
        del st.pods[name]
        st.denies = [d for d in st.denies if d[0] != name]
        _sync_denies(st, st.node(pod.node))
        labstate.save(st)
    spec = st.node(pod.node)
    if pod.wiring == "cni":
        try:
            # As a runtime: the chain's DEL (egress-cni removes the pod from the agent), then the sandbox.
            cni.delete(spec, cni.conflist(spec, pod.main_plugin or "ptp"), pod.container_id, T.pod_ns(name), pod.namespace, pod.name)
        finally:
            netns.remove(T.pod_ns(name))
    else:
        netns.remove(T.pod_ns(name))  # removing the namespace removes the veth pair
        if st.agents:
            with agents.client(st, prefer=pod.node) as c:
                try:
                    c.delete_pod(f"{pod.namespace}/{pod.name}")
                except errors.NotFound:
                    pass
    if after_unwire is not None:
        after_unwire(st, pod)
    return pod


def check(name: str) -> None:
    """Run the pod's CNI chain CHECK (raises cni.CniFailed with the plugin's message)."""
    st = labstate.require()
    pod = st.pod(name)
    if pod.wiring != "cni":
        raise RuntimeError(f"pod {name} is wired directly: there is no CNI chain to CHECK")
    spec = st.node(pod.node)
    cni.check(spec, cni.conflist(spec, pod.main_plugin or "ptp"), pod.container_id, T.pod_ns(name), pod.namespace,
              name)


def label_pod(name: str, labels: dict[str, str]) -> dict[str, str]:
    """Merge labels into the pod's ('-' removes a key), as `kubectl label pod` would; the agent re-selects it."""
    with labstate.locked():
        st = labstate.require()
        pod = st.pod(name)
        for k, v in labels.items():
            if v == "-":
                pod.labels.pop(k, None)
            else:
                pod.labels[k] = v
        labstate.save(st)
        if st.agents:
            register(st, pod)
        return dict(pod.labels)


def label_namespace(namespace: str, labels: dict[str, str]) -> dict[str, str]:
    """Merge labels into the namespace; a value of '-' removes the key (like `kubectl label k-`)."""
    with labstate.locked():
        st = labstate.require()
        cur = dict(st.namespaces.get(namespace, {}))
        for k, v in labels.items():
            if v == "-":
                cur.pop(k, None)
            else:
                cur[k] = v
        st.namespaces[namespace] = cur
        labstate.save(st)
        if st.agents:
            with agents.client(st) as c:
                c.upsert_namespace(models.Namespace(name=namespace, labels=cur))
        return cur


def deny(pod_name: str, cidr: str, remove: bool = False) -> None:
    """Network-policy stand-in: drop (pod -> cidr) in the pod's node's forward path."""
    cidr = ipaddress.ip_network(cidr).with_prefixlen
    with labstate.locked():
        st = labstate.require()
        pod = st.pod(pod_name)
        entry = (pod_name, cidr)
        if remove:
            st.denies = [d for d in st.denies if d != entry]
        elif entry not in st.denies:
            st.denies.append(entry)
        _sync_denies(st, st.node(pod.node))
        labstate.save(st)


def _sync_denies(st: LabState, spec: T.NodeSpec) -> None:
    elems = [f"{st.pods[p].ip} . {c}" for p, c in st.denies if p in st.pods and st.pods[p].node == spec.name]
    script = "flush set ip lab_node netpol_deny\n"
    if elems:
        script += f"add element ip lab_node netpol_deny {{ {', '.join(elems)} }}\n"
    netns.run(spec.netns, ["nft", "-f", "-"], input=script)


def register(st: LabState, pod: PodRecord) -> None:
    """Tell the cluster about the pod through the inventory API (via the pod's node); returns once it is programmed."""
    with agents.client(st, prefer=pod.node) as c:
        c.upsert_pod(models.Pod(name=pod.name, namespace=pod.namespace, node=pod.node, ip=pod.ip,
                                interface=pod.interface, labels=pod.labels))


def register_all(st: LabState) -> None:
    """Re-send every namespace and pod the lab knows (idempotent upserts), e.g. after `up` on a running lab."""
    with agents.client(st) as c:
        for ns, labels in sorted(st.namespaces.items()):
            if labels:
                c.upsert_namespace(models.Namespace(name=ns, labels=labels))
    for pod in st.pods.values():
        if pod.ip:
            register(st, pod)


def restore(st: LabState) -> None:
    """Re-wire every directly wired pod and every deny (for `up` on a lab whose pods survived or were lost).

    A pod made through the CNI chain whose namespace is gone is forgotten (its runtime would re-create it)."""
    for name, pod in list(st.pods.items()):
        if pod.wiring == "cni":
            if not netns.exists(T.pod_ns(name)):
                del st.pods[name]
            continue
        wire(pod, st.node(pod.node))
        link_up(pod)
    for spec in st.nodes():
        _sync_denies(st, spec)


WHOAMI_CLIENT = """
import sys, urllib.request
try:
    print(urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/", timeout=float(sys.argv[3])).read().decode().strip())
except Exception as e:
    print(f"no answer from {sys.argv[1]}: {e}", file=sys.stderr); sys.exit(1)
"""


def whoami(pod_name: str, dst: str = T.EXT_HOST_IP, timeout: float = 3.0) -> tuple[str, int]:
    """Ask the external host, from inside the pod, which source IP:port it saw."""
    st = labstate.require()
    st.pod(pod_name)
    res = subprocess.run(
        netns.argv_in(T.pod_ns(pod_name), [sys.executable, "-c", WHOAMI_CLIENT, dst, str(T.WHOAMI_PORT), str(timeout)]),
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip() or f"whoami from {pod_name} to {dst} failed")
    ip, _, port = res.stdout.strip().rpartition(":")
    return ip, int(port)
