"""What an attacker on the node network can do to the agents' UDP probes, on loopback (root only).

- `Sniffer`: a raw IPv4/UDP socket sees a copy of every UDP datagram the host delivers (loopback
  included); it keeps those to or from the ports asked for, as (src port, dst port, payload).
- `send_spoofed`: sends a UDP datagram on 127.0.0.1 whose *source port* is any port we like, e.g.
  a paused agent's probe port, as a forger on the path could (raw socket; checksum 0 = none, valid
  for IPv4).

Nothing here adds addresses, routes or rules; the traffic never leaves loopback.
"""

from __future__ import annotations

import socket
import struct
import threading
import time


class Sniffer:
    def __init__(self, ports: set[int]):
        self.ports = ports
        self.packets: list[tuple[int, int, bytes]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sniffer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, (src, _) = self._sock.recvfrom(65535)
            except socket.timeout:
                continue
            ihl = (data[0] & 0x0F) * 4
            if src != "127.0.0.1" or len(data) < ihl + 8:
                continue
            sport, dport, length = struct.unpack_from("!HHH", data, ihl)
            if sport in self.ports or dport in self.ports:
                with self._lock:
                    self.packets.append((sport, dport, data[ihl + 8 : ihl + length]))

    def taken(self, src: int, dst: int | None = None) -> list[bytes]:
        """Payloads captured from port `src` (to port `dst`, if given)."""
        with self._lock:
            return [p for s, d, p in self.packets if s == src and (dst is None or d == dst)]


def send_spoofed(src_port: int, dst_port: int, payload: bytes, sock: socket.socket | None = None) -> None:
    """One UDP datagram 127.0.0.1:src_port -> 127.0.0.1:dst_port, whoever owns src_port."""
    header = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0)
    own = sock is None
    sock = sock or socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    try:
        sock.sendto(header + payload, ("127.0.0.1", 0))
    finally:
        if own:
            sock.close()


class Flood:
    """Sends `datagrams` [(src port, dst port, payload)] round-robin every `every` s in a thread, until stopped."""

    def __init__(self, datagrams: list[tuple[int, int, bytes]], every: float = 0.002):
        assert datagrams, "nothing to send"
        self.datagrams, self.every, self.sent = datagrams, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Flood":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        try:
            while not self._stop.is_set():
                for src, dst, payload in self.datagrams:
                    send_spoofed(src, dst, payload, sock)
                    self.sent += 1
                time.sleep(self.every)
        finally:
            sock.close()
