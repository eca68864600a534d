"""The CNI plugin's socket (--inventory-socket): a node's pods, as JSON over HTTP/1.1 on a unix socket.

    PUT    /v1/pods/NAMESPACE/NAME   {"ip", "interface", "uid", "labels"}
           -> 200 the pod as stored, once this node has programmed it (no packet leaves with the node IP)
    GET    /v1/pods/NAMESPACE/NAME   -> 200 the pod, if this node has programmed it (the plugin's CHECK)
    DELETE /v1/pods/NAMESPACE/NAME   -> 200 {} (404 when the agent has no such pod)

A failure is {"code": <gRPC status name>, "message", "violations": [{"path", "message"}]} with the HTTP
status Google's API design gives that code (400, 404, 409, 429, 503, 504, 500), decided by the same
`servicer.failure_of` as the gRPC API's. Anyone can try it: `curl --unix-socket SOCKET -X PUT
http://egress/v1/pods/NS/NAME -d '{"ip": "10.244.1.5"}'`.

Why not the gRPC API, like every other caller: the runtime starts the plugin once per pod, and importing
grpc and protobuf cost it about 130 ms of CPU before it said a word (bench/pod_start.py), most of the
pod-start budget (p99 added <= 150 ms). With this socket the plugin needs only Python's standard library.
The socket offers the inventory role's pod calls and nothing else, for this node only (a pod's `node` is
this agent's). Mode 0600: root and the agent's own user; every write gets an audit line naming the
caller the kernel reports (SO_PEERCRED).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Optional
from urllib.parse import unquote

import grpc

from egress_agent.server.local_peers import LocalCaller
from egress_agent.server.servicer import EgressServicer, Failure, checked_pod_key, failure_of
from egress_api import limits, models, transport

log = logging.getLogger(__name__)

PREFIX = "/v1/pods/"
MAX_BODY = 64 * 1024  # a pod with its labels is a few KiB at most
FIELDS = ("ip", "interface", "uid", "labels")

# google.rpc.Code -> HTTP status, as Google's API design guide maps them.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class PodSocket:
    """Serves the pod calls of `servicer` on the unix socket `path` (one thread per connection)."""

    def __init__(self, servicer: EgressServicer, path: str, *, metrics=None, audit=None):
        self.path = path
        self.servicer = servicer
        self.metrics = metrics  # metrics.api.ApiMetrics: the same families as the gRPC calls
        self.audit = audit  # server.audit.AuditLog
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        transport.remove_stale_socket(self.path)
        self._server = _Server(self.path, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="pod-socket", daemon=True)
        self._thread.start()
        log.info("serving the CNI plugin's pod calls on %s", self.path)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._server = None

    # --- the calls ---------------------------------------------------------------------------

    def call(self, method: str, key: str, body: Optional[dict], caller: LocalCaller) -> tuple[int, dict]:
        """(HTTP status, JSON body) of one call; `method` is the gRPC method it stands for."""
        start = time.perf_counter()
        try:
            key = checked_pod_key(key)
            if method == "UpsertPod":
                result = self.servicer.upsert_pod(self._pod(key, body or {})).model_dump(mode="json")
            elif method == "GetPod":
                result = self.servicer.get_pod(key).model_dump(mode="json")
            else:
                self.servicer.delete_pod(key)
                result = {}
            status, code = 200, grpc.StatusCode.OK
        except Exception as err:
            f = failure_of(err, method)
            status, code, result = HTTP_STATUS.get(f.code, 500), f.code, _failure_body(f)
        if self.metrics is not None:
            self.metrics.observe(method, code.name, time.perf_counter() - start)
        if method != "GetPod" and self.audit is not None:
            try:
                self.audit.record(identity=caller.principal, role="inventory", method=method,
                                  object=f"pod/{key}", outcome=code.name)
            except OSError as err:  # a full disk must not turn a done write into an error
                log.error("audit log %s: %s", self.audit.target, err)
        return status, result

    def _pod(self, key: str, body: dict) -> models.Pod:
        namespace, _, name = key.partition("/")
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise models.InvalidObject("pod", key, [models.Violation((k,), "not an attribute of a pod on this socket "
                                                                     f"(it takes {', '.join(FIELDS)})") for k in unknown])
        return models.parse("pod", {**body, "name": name, "namespace": namespace, "node": self.servicer.node})


def _failure_body(f: Failure) -> dict:
    return {"code": f.code.name, "message": f.message,
            "violations": [{"path": list(v.path), "message": v.message} for v in f.violations]}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, endpoint: PodSocket):
        self.endpoint = endpoint
        self._slots = threading.BoundedSemaphore(limits.MAX_CONCURRENT_RPCS)
        super().__init__(path, _Handler)

    def server_bind(self) -> None:
        super().server_bind()
        os.chmod(self.server_address, 0o600)  # before listen(): nobody else ever gets to connect

    def process_request(self, request, client_address) -> None:
        """One thread per connection, at most limits.MAX_CONCURRENT_RPCS at once; beyond, 429 at once."""
        if not self._slots.acquire(blocking=False):
            body = json.dumps({"code": "RESOURCE_EXHAUSTED", "message": f"more than {limits.MAX_CONCURRENT_RPCS} "
                               "calls at once on the pod socket", "violations": []}).encode()
            try:
                request.sendall(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_PUT(self) -> None:
        self._serve("UpsertPod")

    def do_GET(self) -> None:
        self._serve("GetPod")

    def do_DELETE(self) -> None:
        self._serve("DeletePod")

    def _serve(self, method: str) -> None:
        if not self.path.startswith(PREFIX):
            return self._reply(404, {"code": "NOT_FOUND", "message": f"{self.path}: this socket serves {PREFIX}NAMESPACE/NAME",
                                     "violations": []})
        body = None
        if method == "UpsertPod":
            body, problem = self._json_body()
            if problem:
                return self._reply(400, {"code": "INVALID_ARGUMENT", "message": problem, "violations": []})
        status, result = self.server.endpoint.call(method, unquote(self.path[len(PREFIX):]), body, self._caller())
        self._reply(status, result)

    def _json_body(self) -> tuple[Optional[dict], str]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None, "Content-Length is not a number"
        if length > MAX_BODY:
            return None, f"the request body is {length} bytes; a pod takes at most {MAX_BODY}"
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError as err:
            return None, f"the request body is not JSON: {err}"
        if not isinstance(body, dict):
            return None, "the request body must be a JSON object"
        return body, ""

    def _caller(self) -> LocalCaller:
        pid, uid, gid = struct.unpack("3i", self.connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                        struct.calcsize("3i")))
        return LocalCaller(uid=uid, gid=gid, pid=pid, role="inventory")

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)  # http.server adds the standard reason phrase
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        log.debug("pod socket: " + format, *args)
