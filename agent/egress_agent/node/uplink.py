"""The routers of this node's uplink, as its routing table names them.

The agent publishes them in its NODE record (`models.Node.routers`) so that
every agent -- whichever one a client writes through, and the controller
leader -- refuses them as floating IPs (`models.reserved_addresses`): a node
that added its router's address to its uplink would answer ARP for it and
black-hole its neighbours' traffic. Only the node itself can know them (the
router is a fact of its routing table, not of the cluster), hence published
rather than configured. They are read once at start; a router changed later
is picked up when the agent restarts.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

log = logging.getLogger(__name__)


def routers(interface: str, node_ip: str) -> list[str]:
    """Gateways of the IPv4 main-table routes via `interface` inside the uplink subnet, default route's first.

    [] when the interface or its routes cannot be read (logged): a node without a routing table
    to read still works, its routers are just not refused by address.
    """
    if not interface:
        return []
    subnet = ipaddress.ip_interface(node_ip).network
    try:
        from pyroute2 import IPRoute  # only where routes are read: keeps the client's import path light

        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=interface)
            if not index:
                log.warning("cannot read routers: no interface %s", interface)
                return []
            routes = ipr.get_routes(family=socket.AF_INET, table=254, oif=index[0])
    except OSError as err:
        log.warning("cannot read the routes of %s: %s", interface, err)
        return []
    found: list[tuple[bool, str]] = []
    for route in routes:
        gateway = route.get_attr("RTA_GATEWAY")
        if gateway and ipaddress.ip_address(gateway) in subnet:
            found.append((route["dst_len"] != 0, gateway))  # the default route (dst_len 0) first
    out: list[str] = []
    for _, gateway in sorted(found, key=lambda f: f[0]):
        if gateway not in out:
            out.append(gateway)
    return out
