"""The plugin's calls to the node's egress-agent: its pod socket (`egress_agent.server.pod_socket`).

JSON over HTTP/1.1 on a unix socket, with the standard library's `socket` and `json` only: the
runtime starts this plugin for every pod, and grpc with protobuf (or even `http.client`, which pulls
in the `email` package) cost more to import than the whole call. The subset spoken here is small on
purpose: one request per connection, a Content-Length body, and the agent closes after answering.

`AgentCalls` turns every failure into `AgentFailure` with a message a cluster operator can act on and
whether the agent itself answered (so the failure policy can tell "agent down" from "agent says no").
"""

from __future__ import annotations

import json
import socket


class AgentFailure(Exception):
    """`code`: the gRPC status name; `reachable`: the agent answered (False: nobody listens on the socket)."""

    def __init__(self, message: str, code: str, reachable: bool):
        super().__init__(message)
        self.code = code
        self.reachable = reachable


class AgentCalls:
    def __init__(self, socket_path: str, timeout: float):
        self.socket = socket_path
        self.timeout = timeout

    def close(self) -> None:
        """Nothing to close: each call has its own connection (kept for the callers' try/finally)."""

    def upsert_pod(self, key: str, pod: dict) -> dict:
        """Returns once the node has programmed the pod (and, with --kubernetes, the pod's labels are known)."""
        return self._call("PUT", key, pod, f"registering pod {key}")

    def delete_pod(self, key: str) -> None:
        self._call("DELETE", key, None, f"removing pod {key}", timeout=5)

    def get_pod(self, key: str) -> dict:
        return self._call("GET", key, None, f"checking pod {key}", timeout=5)

    def _call(self, verb: str, key: str, body: dict | None, what: str, timeout: float | None = None) -> dict:
        timeout = timeout or self.timeout
        data = json.dumps(body).encode() if body is not None else b""
        request = (f"{verb} /v1/pods/{_quote(key)} HTTP/1.1\r\nHost: egress-agent\r\nConnection: close\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            try:
                sock.connect(self.socket)
            except OSError as err:
                raise AgentFailure(
                    f"{what}: cannot reach the egress-agent on {self.socket} ({err.strerror or err}): "
                    "is the egress-agent DaemonSet running on this node?", "UNAVAILABLE", reachable=False,
                ) from None
            sock.sendall(request)
            status, payload = _read_response(sock)
        except socket.timeout:
            raise AgentFailure(f"{what}: the egress-agent on {self.socket} did not answer within {timeout:g}s",
                               "DEADLINE_EXCEEDED", reachable=True) from None
        except (OSError, ValueError) as err:
            raise AgentFailure(f"{what}: the egress-agent on {self.socket} broke off the call: {err}",
                               "UNAVAILABLE", reachable=True) from None
        finally:
            sock.close()
        if status == 200:
            return payload
        code = payload.get("code") or "UNKNOWN"
        message = payload.get("message") or f"HTTP {status}"
        raise AgentFailure(f"{what}: {message}", code, reachable=True)


def _quote(key: str) -> str:
    """Percent-encode all but a pod key's own characters (the agent checks the name; this keeps the request line
    one line whatever CNI_ARGS held). urllib.parse would do it too, at a few ms of imports."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-._/") else "".join(f"%{b:02X}" for b in c.encode())
                   for c in key)


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    """(HTTP status, JSON body) of the agent's answer: read until the agent closes the connection."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no complete HTTP response")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP response: {status_line!r}")
    payload = json.loads(body or b"{}")
    if not isinstance(payload, dict):
        raise ValueError("the answer is not a JSON object")
    return int(status_line[1]), payload
