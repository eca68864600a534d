"""A request the etcd client abandons at its deadline dies with its connection (store/etcd_client.py).

A listener on loopback plays an etcd that reads the request and never answers. When the client gives up,
the listener must see a reset (the kernel dropped the connection and anything still unsent), not an orderly
close: after an orderly close the kernel keeps retransmitting unsent bytes, and a request sent into a cut
cable lands when the cable returns.
"""

from __future__ import annotations

import socket
import threading

import pytest

from egress_agent.store.base import Unavailable
from egress_agent.store.etcd_client import EtcdClient


def test_a_timed_out_request_resets_its_connection():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    seen: dict[str, object] = {}

    def silent_etcd() -> None:
        conn, _ = server.accept()
        conn.settimeout(5)
        with conn:
            request = b""
            while not request.endswith(b"}"):  # headers and JSON body may come in separate segments
                request += conn.recv(65536)
            seen["request"] = request  # the whole request arrived ...
            try:
                seen["after"] = conn.recv(65536)  # ... and then: b"" for a FIN, ConnectionResetError for a reset
            except ConnectionResetError as e:
                seen["after"] = e

    t = threading.Thread(target=silent_etcd, daemon=True)
    t.start()
    client = EtcdClient([f"http://127.0.0.1:{port}"], timeout=0.3)
    try:
        with pytest.raises(Unavailable):
            client.call("kv/lease/revoke", {"ID": "1"}, idempotent=False)
        t.join(timeout=5)
    finally:
        client.close()
        server.close()
    assert b"/v3/kv/lease/revoke" in seen["request"]
    assert isinstance(seen["after"], ConnectionResetError), f"the client closed with {seen['after']!r}, not a reset"
