"""A small Kubernetes API-server double for tests (there is no kube-apiserver on these machines).

It serves, over real HTTP on 127.0.0.1, the part of the core/v1 API a node
agent uses -- Namespaces, Pods and Nodes, list and watch -- with the wire shapes and
semantics of the Kubernetes API concepts ("Efficient detection of changes",
"Watch bookmarks", "410 Gone responses", "Retrieving large results sets in
chunks"):

- One global, monotonically increasing resourceVersion across kinds, like
  etcd's revision. Every change is kept as history until `compact()`, so a
  watch resumes from any resourceVersion since the last compaction, and a list
  with `resourceVersionMatch=Exact` or a `continue` token is served at the
  revision asked for.
- Lists: `{"kind": "PodList", "apiVersion": "v1", "metadata":
  {"resourceVersion": ...}, "items": [...]}`, sorted by namespace/name, with
  `limit`/`continue` chunking, `remainingItemCount`, `labelSelector`,
  `fieldSelector` (`spec.nodeName`, `metadata.name`, ...).
- Watches: a chunked stream of newline-delimited `{"type", "object"}` events.
  Without a resourceVersion (or "0") the current state comes first as
  synthetic ADDED events. An object that stops (starts) matching the
  selectors is sent as DELETED (ADDED), as the watch cache does. BOOKMARK
  events (`allowWatchBookmarks=true`) carry only metadata.resourceVersion
  and come every `bookmark_interval` seconds; `timeoutSeconds` ends the
  stream cleanly.
- 410 Gone with a `Status` (reason Expired): as an ERROR event in a watch
  from a compacted resourceVersion (what kube-apiserver does; set
  `watch_gone_as = "http"` for the HTTP-410 form), and as HTTP 410 for an
  Exact list or a continue token older than the compaction.

Tests change the cluster with `apply_*`/`delete_*` and inject faults with
`drop_watches`, `compact` and `set_down`. See docs/kubernetes.md for what it
does not cover (auth, writes through the API, admission, protobuf, ...).
"""

from __future__ import annotations

import base64
import bisect
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qsl, urlsplit

import yaml

from .kube_selectors import SelectorError, field_selector, label_selector

SERVER_VERSION = {"major": "1", "minor": "37", "emulationMajor": "1", "emulationMinor": "37",
                  "minCompatibilityMajor": "1", "minCompatibilityMinor": "36", "gitVersion": "v1.37.0",
                  "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2026-08-01T00:00:00Z",
                  "goVersion": "go1.25.0", "compiler": "gc", "platform": "linux/amd64"}
RESOURCES = {  # URL resource name -> (kind, namespaced)
    "namespaces": ("Namespace", False),
    "pods": ("Pod", True),
    "nodes": ("Node", False),
}
# How long a list for a resourceVersion the server has not reached yet waits
# before answering 504 "Too large resource version" (kube-apiserver waits ~3 s).
TOO_LARGE_RV_WAIT = 3.0


@dataclass(frozen=True)
class Change:
    """One revision: `obj` is the object after it (for DELETED, its last state), `prev` before it."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    kind: str
    obj: dict
    prev: Optional[dict]


class ApiError(Exception):
    """A request the server answers with a Status object."""

    def __init__(self, code: int, reason: str, message: str, **extra):
        super().__init__(message)
        self.code, self.reason, self.message, self.extra = code, reason, message, extra

    def status(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code, **self.extra}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(obj: dict) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _with_rv(obj: dict, rv: int) -> dict:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}}


class _Watch:
    """An open watch stream; `closing` is set to "graceful" or "abrupt" to end it at revision `closed_at`."""

    closing: Optional[str] = None
    closed_at = 0


class KubeApiServerDouble:
    """A real HTTP server on 127.0.0.1 in a thread, serving Namespaces and Pods (see module docstring)."""

    def __init__(self) -> None:
        self.bookmark_interval = 1.0  # seconds between BOOKMARK events on watches that allow them
        self.watch_gone_as = "event"  # "event": 200 + ERROR event; "http": HTTP 410 (both are real)
        self._cond = threading.Condition()
        self._revision = 1  # an etcd with no keys is at revision 1
        self._compacted = 0
        self._history: list[Change] = []
        self._objects: dict[tuple[str, str, str], dict] = {}  # (kind, namespace, name) -> object
        self._watches: set[_Watch] = set()
        self._requests: list[tuple[str, str, dict]] = []
        self._down = False
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self.url = ""

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "KubeApiServerDouble":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.double = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="kube-apiserver-double",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._close_watches("graceful")
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> "KubeApiServerDouble":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def write_kubeconfig(self, path) -> Path:
        """A kubeconfig for `url` with no credentials (the double does no authentication)."""
        path = Path(path)
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "double", "user": {}}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "double",
                                                        "namespace": "default"}}],
            "current-context": "double",
        }))
        return path

    # --- cluster changes (what controllers and kubelets would do) --------------------------------

    def apply_namespace(self, name: str, labels: dict[str, str]) -> None:
        with self._cond:
            old = self._objects.get(("Namespace", "", name))
            meta = {"name": name, "uid": old["metadata"]["uid"] if old else str(uuid.uuid4()),
                    "creationTimestamp": old["metadata"]["creationTimestamp"] if old else _now(),
                    # kube-apiserver sets this label on every namespace (since 1.21)
                    "labels": {**labels, "kubernetes.io/metadata.name": name}}
            self._write("Namespace", {"kind": "Namespace", "apiVersion": "v1", "metadata": meta,
                                      "spec": {"finalizers": ["kubernetes"]},
                                      "status": {"phase": "Active"}}, old)

    def delete_namespace(self, name: str) -> None:
        """Deletes the namespace's pods first, as the namespace controller would, then the namespace."""
        with self._cond:
            if ("Namespace", "", name) not in self._objects:
                raise KeyError(f"namespace {name!r} does not exist")
            for kind, ns, pod in sorted(k for k in self._objects if k[0] == "Pod" and k[1] == name):
                self._remove(kind, ns, pod)
            self._remove("Namespace", "", name)

    def apply_pod(self, namespace: str, name: str, node: str, labels: dict[str, str],
                  pod_ip: str | None = None, uid: str | None = None) -> None:
        """Creates or updates a pod; a different `uid` replaces the pod (DELETED, then ADDED)."""
        with self._cond:
            if ("Namespace", "", namespace) not in self._objects:
                raise ValueError(f"namespace {namespace!r} does not exist: apply_namespace it first")
            old = self._objects.get(("Pod", namespace, name))
            if old is not None and uid is not None and old["metadata"]["uid"] != uid:
                self._remove("Pod", namespace, name)
                old = None
            if old is not None and old["spec"]["nodeName"] != node:
                raise ValueError(f"pod {namespace}/{name} is bound to {old['spec']['nodeName']!r}: "
                                 "spec.nodeName cannot change (delete the pod, or pass a new uid)")
            meta = {"name": name, "namespace": namespace,
                    "uid": uid or (old["metadata"]["uid"] if old else str(uuid.uuid4())),
                    "creationTimestamp": old["metadata"]["creationTimestamp"] if old else _now()}
            if labels:
                meta["labels"] = dict(labels)
            status = {"phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}]} if pod_ip \
                else {"phase": "Pending"}
            self._write("Pod", {"kind": "Pod", "apiVersion": "v1", "metadata": meta,
                                "spec": {"nodeName": node,
                                         "containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
                                "status": status}, old)

    def apply_node(self, name: str, labels: dict[str, str], address: str = "192.0.2.11") -> None:
        """Creates or updates a Node (what kubelet registers and `kubectl label node` changes). kubelet sets
        kubernetes.io/hostname and kubernetes.io/os on every node; `labels` come on top."""
        with self._cond:
            old = self._objects.get(("Node", "", name))
            meta = {"name": name, "uid": old["metadata"]["uid"] if old else str(uuid.uuid4()),
                    "creationTimestamp": old["metadata"]["creationTimestamp"] if old else _now(),
                    "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **labels}}
            self._write("Node", {"kind": "Node", "apiVersion": "v1", "metadata": meta, "spec": {},
                                 "status": {"addresses": [{"type": "InternalIP", "address": address}]}}, old)

    def delete_node(self, name: str) -> None:
        with self._cond:
            if ("Node", "", name) not in self._objects:
                raise KeyError(f"node {name!r} does not exist")
            self._remove("Node", "", name)

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._cond:
            if ("Pod", namespace, name) not in self._objects:
                raise KeyError(f"pod {namespace}/{name} does not exist")
            self._remove("Pod", namespace, name)

    # --- faults --------------------------------------------------------------------------------

    def drop_watches(self, abrupt: bool = False) -> None:
        """Ends every open watch stream: cleanly (final chunk, like a server-side timeout) or, with
        `abrupt`, by closing the connection mid-stream. Clients resume from their last resourceVersion."""
        self._close_watches("abrupt" if abrupt else "graceful")

    def compact(self) -> None:
        """Forgets history before the current revision: older resourceVersions get 410 Gone."""
        with self._cond:
            self._compacted = self._revision

    def set_down(self, down: bool) -> None:
        """While down, every connection is closed without an answer and open watches are cut."""
        self._down = down
        if down:
            self._close_watches("abrupt")

    def requests(self) -> list[tuple[str, str, dict]]:
        """(method, path, query) of every request answered so far, oldest first."""
        with self._cond:
            return list(self._requests)

    @property
    def resource_version(self) -> int:
        """The current global revision (for assertions)."""
        with self._cond:
            return self._revision

    # --- store (callers hold self._cond) ---------------------------------------------------------

    def _write(self, kind: str, obj: dict, old: Optional[dict]) -> None:
        if old is not None and _with_rv(old, 0) == _with_rv(obj, 0):
            return  # a no-op update does not bump the resourceVersion
        self._revision += 1
        obj = _with_rv(obj, self._revision)
        self._objects[(kind, *_key(obj))] = obj
        self._history.append(Change(self._revision, "MODIFIED" if old else "ADDED", kind, obj, old))
        self._cond.notify_all()

    def _remove(self, kind: str, namespace: str, name: str) -> None:
        old = self._objects.pop((kind, namespace, name))
        self._revision += 1
        # the DELETED event carries the object's last state at the revision of the deletion
        self._history.append(Change(self._revision, "DELETED", kind, _with_rv(old, self._revision), old))
        self._cond.notify_all()

    def _state_at(self, kind: str, rv: int) -> list[dict]:
        if rv >= self._revision:
            return [o for (k, *_), o in self._objects.items() if k == kind]
        state: dict[tuple[str, str], dict] = {}
        for change in self._history:
            if change.rv > rv:
                break
            if change.kind == kind:
                if change.type == "DELETED":
                    state.pop(_key(change.obj), None)
                else:
                    state[_key(change.obj)] = change.obj
        return list(state.values())

    def _wait_for_revision(self, rv: int) -> None:
        if not self._cond.wait_for(lambda: self._revision >= rv, timeout=TOO_LARGE_RV_WAIT):
            raise ApiError(504, "Timeout", f"Too large resource version: {rv}, current: {self._revision}",
                           details={"causes": [{"reason": "ResourceVersionTooLarge",
                                                "message": "Too large resource version"}], "retryAfterSeconds": 1})

    def _close_watches(self, how: str) -> None:
        with self._cond:
            for watch in self._watches:
                if not watch.closing:  # changes after this revision belong to the client's next watch
                    watch.closing, watch.closed_at = how, self._revision
            self._cond.notify_all()

    # --- requests --------------------------------------------------------------------------------

    def _list(self, kind: str, match, query: dict, filtered: bool) -> dict:
        rv, rv_match, token = query.get("resourceVersion", ""), query.get("resourceVersionMatch"), query.get("continue")
        limit = _int_param(query, "limit")
        with self._cond:
            start_after = None
            if rv_match and not rv:
                raise ApiError(422, "Invalid", "resourceVersionMatch is forbidden unless resourceVersion is provided")
            if token:
                if rv:
                    raise ApiError(400, "BadRequest", "specifying resource version is not allowed when using continue")
                at, start_after = _decode_continue(token)
                if at < self._compacted:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without the continue parameter.")
            elif rv_match == "Exact":
                at = _parse_rv(rv)
                if at < self._compacted:
                    raise ApiError(410, "Expired", "The resourceVersion for the provided list is too old.")
                self._wait_for_revision(at)
            elif rv_match not in (None, "NotOlderThan"):
                raise ApiError(422, "Invalid", f"resourceVersionMatch: Unsupported value: {rv_match!r}")
            else:  # unset: a consistent read; "0" or NotOlderThan: at least as new as rv
                if rv and rv != "0":
                    self._wait_for_revision(_parse_rv(rv))
                at = self._revision
            items = sorted((o for o in self._state_at(kind, at) if match(o)), key=_key)
        if start_after is not None:
            items = [o for o in items if _key(o) > start_after]
        page, rest = (items[:limit], items[limit:]) if limit else (items, [])
        meta: dict = {"resourceVersion": str(at)}
        if rest:
            meta["continue"] = _encode_continue(at, _key(page[-1]))
            if not filtered:  # unknown when selectors filter the list
                meta["remainingItemCount"] = len(rest)
        # items of a list carry no kind/apiVersion of their own
        items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": meta, "items": items}

    def _open_watch(self, kind: str, match, query: dict):
        """Registers a watch; returns (watch, initial objects, start revision, history cursor)."""
        rv = query.get("resourceVersion", "")
        send_initial = query.get("sendInitialEvents")
        initial = send_initial == "true" or (send_initial is None and rv in ("", "0"))
        with self._cond:
            if initial:
                start = self._revision
                objects = sorted((o for o in self._state_at(kind, start) if match(o)), key=_key)
            else:
                start, objects = (_parse_rv(rv) if rv else self._revision), []  # unset: from now on
                if start < self._compacted:
                    raise ApiError(410, "Expired", f"too old resource version: {start} ({self._compacted})")
            watch = _Watch()
            self._watches.add(watch)
            return watch, objects, start, bisect.bisect_right(self._history, start, key=lambda c: c.rv)

    def _next_changes(self, watch: _Watch, cursor: int, wait: float) -> tuple[list[Change], int, int]:
        """Waits up to `wait` s for changes after `cursor`; returns them, the new cursor and the revision."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._history) > cursor or watch.closing, timeout=wait)
            return self._history[cursor:], len(self._history), self._revision

    def _close_watch(self, watch: _Watch) -> None:
        with self._cond:
            self._watches.discard(watch)

    def _record(self, method: str, path: str, query: dict) -> None:
        with self._cond:
            self._requests.append((method, path, query))


def _int_param(query: dict, name: str) -> int:
    try:
        return int(query.get(name) or 0)
    except ValueError:
        raise ApiError(400, "BadRequest", f"{name}: invalid integer {query[name]!r}") from None


def _parse_rv(rv: str) -> int:
    try:
        return int(rv)
    except ValueError:
        raise ApiError(400, "BadRequest", f"invalid resource version {rv!r}") from None


def _encode_continue(rv: int, last: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": "double/v1", "rv": rv, "start": list(last)}).encode()).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), tuple(data["start"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "BadRequest", f"continue key is not valid: {token!r}") from None


def _visible_type(change: Change, match) -> Optional[str]:
    """The event type a watcher with selector `match` sees for `change`, or None (as the watch cache filters)."""
    if change.type == "DELETED":
        return "DELETED" if match(change.obj) else None
    now, before = match(change.obj), change.prev is not None and match(change.prev)
    if now:
        return "MODIFIED" if before else "ADDED"
    return "DELETED" if before else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    double: KubeApiServerDouble

    def verify_request(self, request, client_address) -> bool:
        return not self.double._down  # while down: accept and close at once, no answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        double = self.server.double
        if double._down:
            self.close_connection = True
            return
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        double._record(method, url.path, query)
        try:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"the double serves reads only, not {method}")
            self._route(url.path.rstrip("/"), query)
        except ApiError as e:
            self._send_json(e.code, e.status())
        except SelectorError as e:
            self._send_json(400, ApiError(400, "BadRequest", str(e)).status())

    def _route(self, path: str, query: dict) -> None:
        double = self.server.double
        if path == "/version":
            return self._send_json(200, SERVER_VERSION)
        if path == "/api":
            return self._send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": double.url.removeprefix("http://")}]})
        if path == "/apis":
            return self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            return self._send_json(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                 "verbs": ["get", "list", "watch"]} for name, (kind, namespaced) in RESOURCES.items()]})
        watch = query.get("watch") in ("1", "true")
        if path.startswith("/api/v1/watch/"):  # the deprecated watch paths
            path, watch = "/api/v1/" + path.removeprefix("/api/v1/watch/"), True
        match path.removeprefix("/api/v1/").split("/") if path.startswith("/api/v1/") else []:
            case ["namespaces"]:
                kind, namespace, name = "Namespace", None, None
            case ["pods"]:
                kind, namespace, name = "Pod", None, None
            case ["namespaces", ns, "pods"]:
                kind, namespace, name = "Pod", ns, None
            case ["namespaces", ns]:
                kind, namespace, name = "Namespace", None, ns
            case ["namespaces", ns, "pods", pod]:
                kind, namespace, name = "Pod", ns, pod
            case ["nodes"]:
                kind, namespace, name = "Node", None, None
            case ["nodes", node]:
                kind, namespace, name = "Node", None, node
            case _:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if name is not None:
            return self._get(kind, namespace or "", name)
        fields = field_selector(kind, query.get("fieldSelector", ""))
        labels = label_selector(query.get("labelSelector", ""))

        def match(obj: dict) -> bool:
            return (namespace is None or obj["metadata"].get("namespace") == namespace) and fields(obj) \
                and labels(obj)

        if watch:
            return self._watch(kind, match, query)
        filtered = bool(query.get("fieldSelector") or query.get("labelSelector"))
        return self._send_json(200, double._list(kind, match, query, filtered))

    def _get(self, kind: str, namespace: str, name: str) -> None:
        with self.server.double._cond:
            obj = self.server.double._objects.get((kind, namespace, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{kind.lower()}s "{name}" not found',
                           details={"name": name, "kind": f"{kind.lower()}s"})
        self._send_json(200, obj)

    def _watch(self, kind: str, match, query: dict) -> None:
        double = self.server.double
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        timeout = _int_param(query, "timeoutSeconds")
        deadline = time.monotonic() + timeout if timeout else None
        try:
            watch, initial, rv, cursor = double._open_watch(kind, match, query)
        except ApiError as e:
            if e.code != 410 or double.watch_gone_as == "http":
                raise
            self._start_stream()
            self._send_event("ERROR", e.status())
            return self._end_stream()
        try:
            self._start_stream()
            for obj in initial:
                self._send_event("ADDED", obj)
            if bookmarks and query.get("sendInitialEvents") == "true":
                self._send_event("BOOKMARK", {"kind": kind, "apiVersion": "v1", "metadata": {
                    "resourceVersion": str(rv), "annotations": {"k8s.io/initial-events-end": "true"}}})
            next_bookmark = time.monotonic() + double.bookmark_interval
            while True:
                now = time.monotonic()
                wait = min(next_bookmark - now if bookmarks else 1.0, (deadline - now) if deadline else 1.0)
                changes, cursor, revision = double._next_changes(watch, cursor, max(wait, 0))
                for change in changes:
                    if watch.closing and change.rv > watch.closed_at:
                        break
                    if change.kind == kind and (event := _visible_type(change, match)):
                        self._send_event(event, change.obj)
                if watch.closing == "abrupt":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    break
                if watch.closing or (deadline and time.monotonic() >= deadline):
                    self._end_stream()
                    break
                if bookmarks and time.monotonic() >= next_bookmark:
                    # every change up to `revision` this watcher cares about has been sent
                    self._send_event("BOOKMARK", {"kind": kind, "apiVersion": "v1",
                                                  "metadata": {"resourceVersion": str(revision)}})
                    next_bookmark = time.monotonic() + double.bookmark_interval
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client went away
        finally:
            double._close_watch(watch)
            self.close_connection = True

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        # The stream's connection is closed when the watch ends: say so, or a client may reuse it for its
        # next request and race the close (seen as "Server disconnected without sending a response").
        self.send_header("Connection", "close")
        self.end_headers()

    def _send_event(self, event_type: str, obj: dict) -> None:
        data = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _send_json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        # exactly "application/json": lightkube recognises a Status body by this header
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
