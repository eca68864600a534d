"""Fast failure detection: agents probe each other over UDP every few tens of ms.

An etcd lease cannot expire faster than about 2 s (its TTL is whole seconds
with a floor of 1.5 x etcd's election timeout, and expiry is checked
periodically), too slow for sub-second failover. So every agent also answers
and sends tiny UDP probes: one socket, bound to the agent's probe address
(by default the API's host:port — UDP and TCP ports are separate spaces),
sends `PING seq sender` to every other member each `interval` and answers
each ping with `PONG seq node session_age_ms`.

A peer that has not answered for `misses` intervals is Down *as far as this
agent can tell*. Only the leader acts on it (it takes the Down node's IPs away
in an etcd transaction), so etcd still decides who holds what; the lease
remains the backstop when probes and etcd disagree.

Replies also carry how long ago the peer last renewed its etcd session, which
fencing uses to tell "etcd is down for everyone" (nobody renewed since we
last did: fail static) from "I alone am cut off" (a peer renewed after us).

A verdict needs a fresh view: when this agent itself was paused or starved
(GC, VM steal, SIGSTOP: its probe loop did not run for half a window), the
silence it sees is its own, not its peers'. It then re-observes: every peer
gets a full window, counted from the moment the loop runs again, before it
can be judged Down. So a node that resumes never declares healthy peers Down
(nor deposes a healthy leader) from its stale view.

Defaults (20 ms x 10 misses = 200 ms) are for sub-second failover on loopback or
one L2 segment; raise them for slow or lossy networks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.02
DEFAULT_MISSES = 10


def parse_address(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"probe address {addr!r}: write it as HOST:PORT (e.g. 127.0.0.1:50051)")
    return socket.gethostbyname(host.strip("[]")), int(port)


@dataclass
class PeerState:
    address: tuple[str, int]
    first_probe: float  # monotonic time we started probing it
    last_reply: float = 0.0
    renewed_at: float = float("-inf")  # when (our monotonic clock) the peer last renewed its etcd session
    up: Optional[bool] = None  # last reported state (None: not decided yet)


class Detector:
    def __init__(
        self,
        node: str,
        bind: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        misses: int = DEFAULT_MISSES,
        session_age: Callable[[], float] = lambda: 0.0,
        on_change: Optional[Callable[[str, bool], None]] = None,
    ):
        if interval <= 0 or misses < 1:
            raise ValueError(f"probe interval must be > 0 and misses >= 1 (got {interval}, {misses})")
        self.node = node
        self.interval = interval
        self.misses = misses
        self.session_age = session_age
        self.on_change = on_change
        #: (seconds of silence when a peer was declared Down) for every Down verdict (metrics).
        self.on_detected: Optional[Callable[[float], None]] = None
        host, port = parse_address(bind)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.address = "%s:%d" % self.sock.getsockname()
        self._peers: dict[str, PeerState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seq = 0
        self._threads: list[threading.Thread] = []
        self._last_tick = time.monotonic()  # when the probe loop last ran
        self._fresh_from = self._last_tick  # silence before this instant is not held against a peer
        self.pauses = 0  # times this agent noticed it had been paused or starved

    @property
    def window(self) -> float:
        """Silence after which a peer is Down."""
        return self.interval * self.misses

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._last_tick = self._fresh_from = time.monotonic()  # waiting to start is no pause
        for target, name in ((self._receive_loop, "probe-rx"), (self._send_loop, "probe-tx")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()

    def set_peers(self, peers: dict[str, str]) -> None:
        """The members to probe: node name -> probe address (our own name is ignored)."""
        now = time.monotonic()
        with self._lock:
            for name in list(self._peers):
                if name not in peers:
                    del self._peers[name]
            for name, addr in peers.items():
                if name == self.node or not addr:
                    continue
                address = parse_address(addr)
                st = self._peers.get(name)
                if st is None or st.address != address:
                    # A new incarnation (restarted agent) is judged afresh.
                    self._peers[name] = PeerState(address, first_probe=now)

    # -- queries ---------------------------------------------------------------------------

    def is_up(self, name: str) -> bool:
        """Answered within the window (a peer not probed for a full window yet counts as Up)."""
        if name == self.node:
            return True
        with self._lock:
            st = self._peers.get(name)
            return st is not None and self._up(st, time.monotonic())

    @property
    def pause_threshold(self) -> float:
        """A probe loop that did not run for this long means our own view is stale."""
        return max(self.window / 2, 3 * self.interval)

    def _notice_pause(self, now: float) -> None:
        """Called with the lock held, before any verdict: were *we* paused since the loop last ran?"""
        gap = now - self._last_tick
        if gap > self.pause_threshold and self._fresh_from <= self._last_tick:  # once per gap
            self._fresh_from = now
            self.pauses += 1
            # A long pause is worth a warning; short starvation on a busy machine only for debugging.
            log.log(logging.WARNING if gap > self.window else logging.DEBUG,
                    "probe: this agent did not run for %.0f ms (paused or starved): re-observing every peer "
                    "for %.0f ms before judging any", gap * 1000, self.window * 1000)

    def _up(self, st: PeerState, now: float) -> bool:
        return self._silence(st, now) <= self.window

    def _silence(self, st: PeerState, now: float) -> float:
        """How long the peer has not answered, as far as this agent could observe."""
        self._notice_pause(now)
        return now - max(st.last_reply or st.first_probe, self._fresh_from)

    def states(self) -> dict[str, bool]:
        """name -> Up, for every peer probed (what `on_change` last reported, or Up while undecided)."""
        with self._lock:
            return {n: st.up is not False for n, st in self._peers.items()}

    def peers(self) -> dict[str, tuple[bool, float]]:
        """name -> (reachable, seconds since it last renewed its etcd session, as it last told us)."""
        now = time.monotonic()
        with self._lock:
            # Strict on purpose: after our own pause nobody counts as reachable until it answers
            # again, so fencing re-observes etcd before trusting its own stale view.
            return {
                n: (bool(st.last_reply) and now - st.last_reply <= self.window, now - st.renewed_at)
                for n, st in self._peers.items()
            }

    # -- loops -----------------------------------------------------------------------------

    def _send_loop(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            self._seq += 1
            msg = f"PING {self._seq} {self.node}".encode()
            with self._lock:
                targets = [st.address for st in self._peers.values()]
            for addr in targets:
                try:
                    self.sock.sendto(msg, addr)
                except OSError:
                    pass  # unreachable is what the missed replies report
            self._report_changes()
            with self._lock:
                self._last_tick = time.monotonic()
            next_tick += self.interval
            delay = next_tick - time.monotonic()
            if delay < 0:  # we were paused (GC, overload): do not burst to catch up
                next_tick, delay = time.monotonic(), 0
            self._stop.wait(delay)

    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            parts = data.decode(errors="replace").split()
            if len(parts) == 3 and parts[0] == "PING":
                age_ms = min(int(self.session_age() * 1000), 10**9)
                reply = f"PONG {parts[1]} {self.node} {age_ms}".encode()
                try:
                    self.sock.sendto(reply, addr)
                except OSError:
                    pass
            elif len(parts) == 4 and parts[0] == "PONG":
                with self._lock:
                    st = self._peers.get(parts[2])
                    if st is not None and st.address == addr and parts[3].isdigit():
                        st.last_reply = time.monotonic()
                        st.renewed_at = st.last_reply - int(parts[3]) / 1000

    def _report_changes(self) -> None:
        now = time.monotonic()
        changed = []
        with self._lock:
            for name, st in self._peers.items():
                silence = self._silence(st, now)
                up = silence <= self.window
                if st.up is not None and up != st.up:
                    changed.append((name, up, silence))
                st.up = up
        for name, up, silence in changed:
            log.info("probe: node %s is %s", name, "Up" if up else f"Down (no answer for {self.window * 1000:.0f} ms)")
            if not up and self.on_detected:
                self.on_detected(silence)
            if self.on_change:
                try:
                    self.on_change(name, up)
                except Exception:
                    log.exception("detector callback failed")
