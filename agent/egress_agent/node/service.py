"""What `egress-agent --datapath kernel` runs on its node, assembled; and `egress-agent --cleanup`.

The agent touches only the network namespace it runs in: every netlink,
nftables and tc call below is made in the current namespace.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Callable, Optional

from egress_agent.datapath.floating_ip import Announcements
from egress_agent.datapath.kernel import Datapath
from egress_agent.datapath.netlink import iproute
from egress_agent.datapath.steering import CLSACT_INGRESS, TC_HANDLE, TC_PRIO, filter_attached
from egress_agent.node.reconciler import HeldSource, NodeReconciler
from egress_agent.store import base
from egress_api import models

log = logging.getLogger(__name__)


class NodeDatapath:
    """The kernel datapath of this node, kept converged to the store."""

    def __init__(self, store: base.Store, node: models.Node, uplink: str, netns: Optional[str] = None,
                 on_apply: Optional[Callable[[float, bool], None]] = None,
                 on_applied: Optional[Callable[[int, dict], None]] = None,
                 announcements: Announcements = Announcements()):
        if not uplink:
            raise ValueError("--datapath kernel needs --interface (the uplink on the node network, e.g. eth0)")
        self.datapath = Datapath(netns, announcements=announcements)
        self.reconciler = NodeReconciler(store, node, uplink, self.datapath, netns=netns, on_apply=on_apply,
                                         on_applied=on_applied)

    def start(self, held: Optional[HeldSource] = None) -> None:
        self.reconciler.start(held)

    def counters(self) -> dict:
        return self.reconciler.live_counters()

    def repairs(self) -> dict:
        """What this node did to keep its datapath right (metrics): classifiers re-attached, ARPs repeated."""
        return {"classifier_reattached": self.reconciler.reattached, "garp_repeats": self.datapath.garp_repeats_sent}

    def snat_usage(self) -> dict:
        """egress IP -> conntrack usage (datapath.conntrack.SnatUsage), for the floating IPs held here."""
        return self.datapath.snat_usage()

    def stop(self, release: bool = True) -> None:
        """`release`: give up the floating IPs (the node leaves); else the kernel stays as it is (a restart)."""
        self.reconciler.stop(release=release)


def uplink_address(uplink: str, netns: Optional[str] = None) -> str:
    """The uplink's node address with prefix (its first address that is not a /32 floating IP)."""
    with iproute(netns) as ipr:
        found = ipr.link_lookup(ifname=uplink)
        if not found:
            raise ValueError(f"--interface {uplink}: no such interface in this network namespace")
        for a in ipr.get_addr(index=found[0], family=2):
            if a["prefixlen"] < 32:
                return f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
    raise ValueError(f"--interface {uplink} has no IPv4 node address: give --node-ip")


def classifier_attached(ifname: str, netns: Optional[str] = None) -> bool:
    """Is the steering classifier attached to `ifname` (a pod's host interface)? For the CNI plugin's CHECK."""
    with iproute(netns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        return bool(found) and filter_attached(ipr, found[0])


def remove_steering_filters(netns: Optional[str] = None) -> list[str]:
    """Detach our tc filter (prio TC_PRIO on clsact ingress, program egress_steer) from every interface."""
    removed = []
    with iproute(netns) as ipr:
        for link in ipr.get_links():
            idx, name = link["index"], link.get("IFLA_IFNAME")
            if filter_attached(ipr, idx):
                try:
                    ipr.tc("del-filter", "bpf", idx, TC_HANDLE, parent=CLSACT_INGRESS, prio=TC_PRIO)
                    removed.append(name)
                except Exception as err:
                    log.warning("could not detach the steering filter from %s: %s", name, err)
    return removed


def cleanup(uplink: str, node_ip: str = "", netns: Optional[str] = None) -> dict:
    """Remove everything the datapath installs in this namespace (also an earlier agent's leftovers)."""
    node_ip = node_ip or uplink_address(uplink, netns)
    ipaddress.ip_interface(node_ip)
    detached = remove_steering_filters(netns)
    dp = Datapath(netns)
    try:
        dp.cleanup(uplink, node_ip)
    finally:
        dp.close()
    return {"detached": detached}
