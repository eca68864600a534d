"""What `egress-lab status` shows: nodes, roles, links, pods and who holds which floating IP."""

from __future__ import annotations

import ipaddress

from egress_api import errors

from . import agents, netns, topology as T
from .labstate import LabState


def floating_ips_on(spec: T.NodeSpec) -> list[str]:
    """Addresses on the node's uplink other than its node IP: the floating IPs it holds."""
    if not netns.exists(spec.netns):
        return []
    with netns.ipr(spec.netns) as ip:
        idx = ip.link_lookup(ifname=T.UPLINK)
        if not idx:
            return []
        addrs = [a.get("IFA_ADDRESS") for a in ip.get_addr(index=idx[0], family=2)]
    return sorted((a for a in addrs if a != spec.ip), key=ipaddress.ip_address)


def cable(spec: T.NodeSpec) -> str:
    with netns.ipr(T.net_ns()) as ip:
        idx = ip.link_lookup(ifname=spec.bridge_port)
        if not idx:
            return "missing"
        flags = ip.get_links(idx[0])[0]["flags"]
    return "up" if flags & 1 else "down"


def agent_state(st: LabState, spec: T.NodeSpec) -> str:
    if not st.agents:
        return "-"
    key = agents.agent_key(spec.name)
    return f"running ({st.processes[key]})" if agents.running(st, key) else "stopped"


def cluster_view(st: LabState) -> list[str]:
    """What the cluster itself says (via any running agent): leader and the holder of each floating IP."""
    try:
        with agents.client(st, timeout=3) as c:
            leader = c.health().leader or "-"
            out = [f"cluster: etcd {','.join(T.etcd_urls(st.etcd_members))}, controller leader {leader}"]
            for gw in c.list_gateways():
                status = c.gateway_status(gw.obj.name)
                for ip, node in sorted(status.floating_ips.items()):
                    why = status.unassigned_reasons.get(ip, "")
                    out.append(f"gateway {gw.obj.name}: {ip} held by {node or '-'}" + (f" ({why})" if why else ""))
            return out
    except (RuntimeError, errors.ApiError) as err:
        return [f"cluster: no answer from the agents ({err})"]


def render(st: LabState) -> str:
    lines = [f"lab {st.prefix!r}: router {T.ROUTER_IP}, external hosts {T.EXT_HOST_IP} {T.EXT2_HOST_IP}, etcd host {T.ETCD_IP}"]
    lines.append(f"{'NODE':10} {'ROLE':7} {'IP':14} {'POD CIDR':15} {'LINK':5} {'AGENT':16} FLOATING IPS (on its uplink)")
    for spec in st.nodes():
        fips = ", ".join(floating_ips_on(spec)) or "-"
        lines.append(
            f"{spec.name:10} {spec.role:7} {spec.ip:14} {spec.pod_cidr:15} {cable(spec):5} {agent_state(st, spec):16} {fips}"
        )
    if st.agents:
        lines += cluster_view(st)
    if st.pods:
        lines.append(f"{'POD':16} {'NAMESPACE':12} {'NODE':10} {'IP':14} LABELS")
        for p in sorted(st.pods.values(), key=lambda p: p.name):
            labels = ",".join(f"{k}={v}" for k, v in sorted(p.labels.items())) or "-"
            lines.append(f"{p.name:16} {p.namespace:12} {p.node:10} {p.ip:14} {labels}")
    for node, labels in sorted(st.node_labels.items()):
        lines.append(f"node {node}: " + (",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"))
    for ns, labels in sorted(st.namespaces.items()):
        lines.append(f"namespace {ns}: " + (",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"))
    for pod, cidr in st.denies:
        lines.append(f"deny {pod} -> {cidr}")
    return "\n".join(lines)
