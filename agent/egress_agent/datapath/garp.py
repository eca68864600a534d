"""Gratuitous ARP: tell every neighbour on the link that IP now lives at this interface's MAC.

Sent as a raw frame (an ARP request and an ARP reply, both broadcast, with
sender = target = IP), because neighbours differ in which one they accept and
the two `arping` implementations take different flags. Linux neighbours update
an existing entry on either; that is what moves traffic at once.
Run as `python -m egress_agent.datapath.garp IFACE IP [COUNT]` inside a namespace.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def frames(mac: bytes, ip: str) -> list[bytes]:
    pip = ipaddress.ip_address(ip).packed
    out = []
    for op, tha in ((1, b"\x00" * 6), (2, BROADCAST)):
        eth = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + pip + tha + pip
        out.append(eth + arp)
    return out


def send(iface: str, ip: str, count: int = 1) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((iface, ETH_P_ARP))
        mac = s.getsockname()[4]
        for _ in range(count):
            for frame in frames(mac, ip):
                s.send(frame)


if __name__ == "__main__":
    send(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
