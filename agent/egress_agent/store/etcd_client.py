"""One connection to an etcd cluster through its v3 gRPC-gateway (JSON over HTTP).

`etcd3gw.Etcd3Client` does the HTTP part (session, TLS, URLs, error classes) for
each endpoint; this module adds what a cluster member needs on top:

- several endpoints with failover: a request that cannot reach an endpoint
  moves on to the next one; when none answers it raises `store.base.Unavailable`;
- safe retries: a write is retried elsewhere only when it certainly never
  reached etcd (connection refused), never after a timeout, so a retried
  compare-and-swap cannot report a spurious conflict;
- endpoint health: a member is unhealthy from the moment a request to it
  fails or times out (every agent renews its lease every 0.5 s, so the
  member it uses is exercised all the time), and `start_health_checks` asks
  every member for its status once a second to notice a member that only
  serves streams and to bring a recovered one back. Requests and streams go
  to healthy members first, and the streams open on a member that turns
  unhealthy are closed so their owners reconnect elsewhere. A hung member
  (SIGSTOP, disk stall: it accepts connections but answers nothing) then costs
  one request deadline instead of blocking watches and requests on it. (The
  checks are kept sparse on purpose: five a second per member cost
  measurable latency on a busy 2-core machine.);
- requests abandoned at their deadline are gone for good: every connection
  closes with a reset (SO_LINGER 0), which makes the kernel discard what it
  has not delivered yet. A normal close would keep retransmitting it, so a
  request sent into a partition (say, a cut-off agent revoking the leader's
  lease it wrongly judged dead) would land when the cable returns, seconds
  after its sender gave up and decided otherwise;
- int64 fields as Python ints and keys/values as str (the gateway sends
  int64 as JSON strings and bytes as base64).

Why etcd3gw (see docs/etcd.md): it is maintained (OpenStack, used by tooz),
talks to Debian's etcd 3.4 through the gateway with no generated protobuf
code, so it cannot clash with the protobuf 5 pinned by the `tf` package.
"""

from __future__ import annotations

import base64
import logging
import re
import socket
import struct
import threading
import time
from typing import Any, Optional, Sequence
from urllib.parse import urlsplit

import requests
from etcd3gw.client import Etcd3Client
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection

from egress_agent.store.base import StoreError, Unavailable


class Unusable(StoreError):
    """An etcd endpoint that answers but can never be used: its certificate does not verify (a
    misconfiguration or an impostor), or it requires an authentication the agent cannot give. Not an
    outage, so the agent refuses to start instead of waiting for it."""

log = logging.getLogger(__name__)

# gRPC status codes the gateway puts in error bodies.
GRPC_OUT_OF_RANGE = 11  # "required revision has been compacted"
GRPC_UNAVAILABLE = 14
GRPC_NOT_FOUND = 5  # e.g. "requested lease not found"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(data: str) -> str:
    return base64.b64decode(data).decode()


def prefix_end(prefix: str) -> str:
    """The range_end that selects every key starting with `prefix` (etcd's convention)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return raw.decode()


class EtcdError(Exception):
    """etcd answered with an error (not a connectivity problem)."""

    def __init__(self, code: int, message: str):
        self.code, self.message = code, message
        super().__init__(f"etcd error {code}: {message}")


def _parse_endpoint(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
        raise ValueError(f"etcd endpoint {url!r}: write it as http://HOST:PORT or https://HOST:PORT")
    return parts.scheme, parts.hostname, parts.port


def parse_endpoints(text: str) -> list[str]:
    """"http://h1:2379,http://h2:2379" -> canonical endpoint URLs; ValueError says what is wrong."""
    urls = [u.strip() for u in text.split(",") if u.strip()]
    if not urls:
        raise ValueError("give at least one etcd endpoint, e.g. etcd:http://127.0.0.1:2379")
    out = []
    for u in urls:
        scheme, host, port = _parse_endpoint(u)
        out.append(f"{scheme}://{host}:{port}")
    return out


# l_onoff=1, l_linger=0: close() resets the connection and drops its unsent data (see the module docstring).
_RESET_ON_CLOSE = (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _ResetOnClose(HTTPAdapter):
    """Connections whose undelivered bytes die with them, instead of reaching etcd after the caller gave up."""

    def init_poolmanager(self, *args, **kwargs):
        kwargs["socket_options"] = [*HTTPConnection.default_socket_options, _RESET_ON_CLOSE]
        super().init_poolmanager(*args, **kwargs)


def _session(ca_cert: Optional[str] = None, cert_file: Optional[str] = None,
             key_file: Optional[str] = None) -> requests.Session:
    """A session whose connections reset on close, with the TLS settings etcd3gw would have given it."""
    session = requests.Session()
    if ca_cert is not None:
        session.verify = ca_cert
    if cert_file is not None and key_file is not None:
        session.cert = (cert_file, key_file)
    for scheme in ("http://", "https://"):
        session.mount(scheme, _ResetOnClose())
    return session


class EtcdClient:
    """Thread-safe; requests go to the current endpoint and fail over in order."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 2.0,
        ca_cert: Optional[str] = None,
        cert_file: Optional[str] = None,
        key_file: Optional[str] = None,
    ):
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self._tls = (ca_cert, cert_file, key_file)
        self._clients = []
        for url in self.endpoints:
            scheme, host, port = _parse_endpoint(url)
            self._clients.append(
                Etcd3Client(
                    host=host,
                    port=port,
                    protocol=scheme,
                    timeout=timeout,
                    api_path="/v3/",
                    session=_session(ca_cert, cert_file, key_file),
                )
            )
        self._current = 0
        self._lock = threading.Lock()
        self.last_error = ""
        self._healthy = [True] * len(self.endpoints)  # until a health check says otherwise
        self._streams: list[set[requests.Response]] = [set() for _ in self.endpoints]
        self._health_stop = threading.Event()
        self._health_threads: list[threading.Thread] = []

    # -- endpoint health -------------------------------------------------------

    def start_health_checks(self, interval: float = 1.0, timeout: float = 0.5) -> None:
        """Check every member in the background (one thread each) until `close()`."""
        if self._health_threads:
            return
        for idx in range(len(self.endpoints)):
            t = threading.Thread(target=self._health_loop, args=(idx, interval, timeout),
                                 name=f"etcd-health-{idx}", daemon=True)
            t.start()
            self._health_threads.append(t)

    def healthy_endpoints(self) -> list[str]:
        with self._lock:
            return [e for e, ok in zip(self.endpoints, self._healthy) if ok]

    def _health_loop(self, idx: int, interval: float, timeout: float) -> None:
        client = self._clients[idx]
        session = _session()  # its own connection: never queued behind requests or streams
        try:
            while not self._health_stop.is_set():
                ok, why = self._probe(session, client, timeout)
                self._set_health(idx, ok, why)
                self._health_stop.wait(interval)
        finally:
            session.close()

    def _probe(self, session: requests.Session, client: Etcd3Client, timeout: float) -> tuple[bool, str]:
        try:
            resp = session.post(client.get_url("maintenance/status"), json={}, timeout=timeout, **self._tls_kwargs(client))
        except requests.RequestException as e:
            return False, f"no answer within {timeout:g}s" if isinstance(e, requests.Timeout) else e.__class__.__name__
        if resp.status_code != 200:
            return False, f"HTTP {resp.status_code}"
        if int(resp.json().get("leader", 0) or 0) == 0:
            return False, "member has no raft leader"
        return True, ""

    def _set_health(self, idx: int, ok: bool, why: str) -> None:
        with self._lock:
            was, self._healthy[idx] = self._healthy[idx], ok
            streams = list(self._streams[idx]) if was and not ok else []
        if was and not ok:
            log.warning("etcd member %s unhealthy (%s): using the others; closing %d stream(s) on it",
                        self.endpoints[idx], why, len(streams))
            for resp in streams:
                self.close_stream(resp)  # its reader reconnects to a healthy member
        elif ok and not was:
            log.info("etcd member %s healthy again", self.endpoints[idx])

    def _order(self, start: int) -> list[int]:
        """Endpoint indexes to try: from `start` round the ring, healthy members first."""
        n = len(self._clients)
        ring = [(start + i) % n for i in range(n)]
        with self._lock:
            return [i for i in ring if self._healthy[i]] + [i for i in ring if not self._healthy[i]]

    # -- unary calls ---------------------------------------------------------

    def call(self, path: str, body: dict[str, Any], *, idempotent: bool = True, timeout: Optional[float] = None,
             deadline: Optional[float] = None) -> dict:
        """POST `body` to /v3/`path` and return the decoded JSON answer.

        Tries each endpoint once, starting with the one that last worked, healthy ones first; each try
        waits at most `timeout` (else the client's). `deadline` (a time.monotonic() value) bounds the
        whole request, as a clientv3 context does, for a caller that must decide by then whatever the
        number of members: a cut-off agent's lease check took 0.5 s per member without it, so with three
        members it held its floating IPs a second longer. Without one, a hung member costs one try and the
        next member still gets a full one (the lease keepalives rely on that).
        """
        with self._lock:
            start = self._current
        errors = []
        for idx in self._order(start):
            client = self._clients[idx]
            left = timeout or self.timeout
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
                if left <= 0:
                    errors.append(f"{self.endpoints[idx]}: not tried, the request's deadline passed")
                    continue
            try:
                result = self._post(client, path, body, left)
            except _Unreachable as e:
                errors.append(f"{self.endpoints[idx]}: {e.reason}")
                self._set_health(idx, False, e.reason)
                if e.maybe_applied and not idempotent:
                    # The request may have been applied: do not retry it elsewhere.
                    self._advance(idx)
                    break
                self._advance(idx)
                continue
            with self._lock:
                self._current = idx
            self._set_health(idx, True, "")
            self.last_error = ""
            return result
        self.last_error = "; ".join(errors)
        raise Unavailable(f"etcd unavailable: {self.last_error}")

    def _advance(self, failed: int) -> None:
        with self._lock:
            if self._current == failed:
                self._current = (failed + 1) % len(self._clients)

    def _post(self, client: Etcd3Client, path: str, body: dict, timeout: Optional[float]) -> dict:
        url = client.get_url(path)
        try:
            resp = client.session.post(url, json=body, timeout=timeout or self.timeout, **self._tls_kwargs(client))
        except requests.exceptions.SSLError as e:
            raise _Unreachable(f"TLS handshake failed: {e.__context__ or e}", maybe_applied=False) from None
        except requests.exceptions.ConnectTimeout as e:
            raise _Unreachable(f"connect timeout ({e.__class__.__name__})", maybe_applied=False) from None
        except requests.exceptions.Timeout:
            raise _Unreachable("timed out", maybe_applied=True) from None
        except requests.exceptions.ConnectionError as e:
            refused = "refused" in str(e).lower() or "NewConnectionError" in str(e)
            raise _Unreachable("connection refused" if refused else "connection lost", maybe_applied=not refused) from None
        if resp.status_code == 200:
            return resp.json()
        try:
            err = resp.json()
            code, message = int(err.get("code", 0)), err.get("error") or err.get("message") or resp.text
        except ValueError:
            code, message = 0, resp.text.strip()
        if resp.status_code in (503, 504) or code == GRPC_UNAVAILABLE:
            # "etcdserver: no leader", "request timed out" ...: this member cannot serve now.
            raise _Unreachable(message, maybe_applied=resp.status_code == 504 or "timed out" in message)
        raise EtcdError(code, message)

    def check_usable(self, timeout: float = 2.0) -> None:
        """Raise Unusable if a reachable https:// endpoint's certificate does not verify, or the endpoint
        refuses the agent's client certificate because etcd authentication is enabled.

        An endpoint that does not answer is left alone: the agent waits for it as for any etcd outage.
        """
        for client, url in zip(self._clients, self.endpoints):
            if not url.startswith("https://"):
                continue
            try:
                resp = requests.post(client.get_url("maintenance/status"), json={}, timeout=timeout,
                                     **self._tls_kwargs(client))
            except requests.exceptions.SSLError as err:
                found = re.search(r"certificate verify failed: ([^(')]+)", str(err))
                why = found.group(1).strip() if found else str(err)
                against = f"--etcd-ca {self._tls[0]}" if self._tls[0] else "the system's CA certificates (no --etcd-ca)"
                raise Unusable(f"etcd {url}: its TLS certificate does not verify against {against}: {why}; "
                               "refusing to use it") from None
            except requests.RequestException:
                continue
            if resp.status_code == 400 and "CommonName of client" in resp.text:
                # etcd's JSON gateway (what the agent speaks) takes no certificate users: see docs/etcd.md.
                raise Unusable(f"etcd {url} has authentication enabled, and its JSON gateway refuses client "
                               f"certificates as users ({resp.text.strip()}): the agent cannot log in to it yet; "
                               "see docs/etcd.md (RBAC)")

    @staticmethod
    def _tls_kwargs(client: Etcd3Client) -> dict:
        # Passed per request: requests lets $REQUESTS_CA_BUNDLE override a session's `verify`.
        return {"verify": client.session.verify, "cert": client.session.cert}

    # -- streams (watch, election observe) ----------------------------------

    def open_stream(self, path: str, body: dict[str, Any], *, prefer: int = 0) -> tuple[requests.Response, int]:
        """Open a streaming call on the first endpoint that accepts it, starting at `prefer`.

        Returns (response, endpoint index). The caller reads `iter_lines()` and
        closes it with `close_stream`.
        """
        errors = []
        for idx in self._order(prefer % len(self._clients)):
            client = self._clients[idx]
            session = _session()  # a stream holds its connection: never share it
            try:
                resp = session.post(
                    client.get_url(path), json=body, stream=True, timeout=(self.timeout, None), **self._tls_kwargs(client)
                )
            except requests.RequestException as e:
                errors.append(f"{self.endpoints[idx]}: {e.__class__.__name__}")
                continue
            if resp.status_code != 200:
                errors.append(f"{self.endpoints[idx]}: HTTP {resp.status_code} {resp.text[:200]}")
                resp.close()
                continue
            with self._lock:
                self._streams[idx].add(resp)
            return resp, idx
        raise Unavailable("etcd unavailable: " + "; ".join(errors))

    def forget_stream(self, resp: requests.Response) -> None:
        """The owner of a stream from `open_stream` is done with it."""
        with self._lock:
            for streams in self._streams:
                streams.discard(resp)

    @staticmethod
    def close_stream(resp: requests.Response) -> None:
        """Unblock a thread reading `resp` (closing alone does not interrupt a blocked read)."""
        try:
            sock = socket.fromfd(resp.raw.fileno(), socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        except (OSError, ValueError, AttributeError):
            pass
        resp.close()

    def close(self) -> None:
        self._health_stop.set()
        for t in self._health_threads:
            t.join(timeout=2)
        for c in self._clients:
            c.session.close()

    # -- small helpers used by the store and the cluster modules ------------

    def revision(self) -> int:
        """The cluster's current revision (a linearizable read)."""
        res = self.call("kv/range", {"key": b64("\0"), "count_only": True, "limit": 1})
        return int(res["header"]["revision"])


class _Unreachable(Exception):
    def __init__(self, reason: str, maybe_applied: bool):
        self.reason, self.maybe_applied = reason, maybe_applied
        super().__init__(reason)


__all__ = ["EtcdClient", "EtcdError", "b64", "unb64", "prefix_end"]
