"""Fast failure detection: agents probe each other over UDP every few tens of ms.

An etcd lease cannot expire faster than about 2 s (its TTL is whole seconds
with a floor of 1.5 x etcd's election timeout, and expiry is checked
periodically), too slow for sub-second failover. So every agent also answers
and sends tiny UDP probes: one socket, bound to the agent's probe address
(by default the API's host:port — UDP and TCP ports are separate spaces),
sends a probe to every other member each `interval` and answers each probe.

Probes and answers are authenticated (`probe_wire`: HMAC-SHA256 with the
cluster key, `probe_key`, over sender, receiver, sequence and time). A
datagram that does not verify, is addressed to another node, is replayed
(`replay`: per-sender, per-session sequence windows; an answer must echo a
probe this process sent to that peer within the last window, once) or is
stale (its time more than `CLOCK_WINDOW` off ours) is ignored and counted
in `rejected`, and gets no answer: a sender without the key learns nothing,
and a forged or replayed answer cannot keep a dead node Up.

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
(nor deposes a healthy leader) from its stale view. A peer already Down stays
Down through our pause: that we did not run says nothing about it coming back
(counting it Up for the re-observation let a starved leader publish a dead
node Up and Down again with every pause).

The clock window (30 s) only has to tolerate skew between nodes' clocks:
freshness of answers does not depend on clocks (an answer counts only if it
echoes one of our last `misses` probes, once). The window bounds how long a
captured probe can be held back and delivered once, or fed to an agent that
restarted and lost its replay windows; either only yields an answer that
the prober rejects as stale. So it can be wide enough for nodes without
working NTP for a while, and a skew beyond it is logged as such.

Defaults (20 ms x 10 misses = 200 ms) are for sub-second failover on loopback or
one L2 segment; raise them for slow or lossy networks.

A silent peer is not always a dead node. When only its agent is gone (a
crash, kill -9, an OOM kill: systemd restarts it in seconds) its kernel is
alive and, with nothing bound to the probe port, answers each probe with an
ICMP port unreachable (rate-limited by the kernel to about one a second).
The socket has IP_RECVERR set, so those errors are read from its error queue
and recorded per peer. Such a peer is still Down as far as probes go, but
`held()` says its node is alive with its datapath as the agent left it (fail
static): the leader keeps its IPs for up to `crash_hold` seconds after its
last answer (cluster/nodes.py), and keeps probing it meanwhile even when its
lease has expired. A dead or cut-off node sends no ICMP and fails over as
before. The ICMP is not authenticated: whoever can send packets from a dead
node's address to the leader can delay that node's failover by at most
`crash_hold` (0 turns the hold off).

The restarted agent answers probes a moment before the leader sees its new
lease (a separate etcd watch). In that moment the peer is neither held (it
answers) nor a member: `rejoining()` covers it, for at most `crash_hold`
after its lease went, so the leader never judges a restarting node Down
between the two (a crashed agent's IPs moved in 3 of 10 runs of
test_cluster_restart's crash test once the controller stopped reading the
store before each pass: that read's latency had hidden the gap).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from egress_agent.cluster import probe_wire as wire
from egress_agent.cluster.probe_key import Keyring
from egress_agent.cluster.replay import SenderWindows, SeqWindow

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.02
DEFAULT_MISSES = 10
CLOCK_WINDOW = 30.0  # seconds a message's time may differ from ours (see above)
WARN_EVERY = 60.0  # seconds between two warnings about the same sender and reason
#: A refusal (ICMP port unreachable) counts as "its node is alive" this long: the kernel sends about one a second.
REFUSED_FRESH = 2.5
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)  # linux/in.h; not exported by Python's socket module
_SO_EE_ORIGIN_ICMP, _ICMP_DEST_UNREACH, _ICMP_PORT_UNREACH = 2, 3, 3
#: What a socket call returns when it reports a queued ICMP error instead of doing its job.
_REPORTED = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN)


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
    held: bool = False  # last reported crash hold (see held())
    refused_at: float = float("-inf")  # when its kernel last refused a probe (nothing bound to the probe port)
    member: bool = True  # registered; False: kept only while held or rejoining, after its lease went
    left_at: float = float("-inf")  # when (our monotonic clock) it stopped being a member while held
    answers: SeqWindow = field(default_factory=SeqWindow)  # seqs of our probes it answered (each counts once)


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
        keyring: Optional[Keyring] = None,
        clock_window: float = CLOCK_WINDOW,
        crash_hold: float = 0.0,
    ):
        if interval <= 0 or misses < 1:
            raise ValueError(f"probe interval must be > 0 and misses >= 1 (got {interval}, {misses})")
        self.node = node
        self.interval = interval
        self.misses = misses
        self.session_age = session_age
        self.on_change = on_change
        #: The cluster key(s); may be given later (from etcd), but before start().
        self.keyring = keyring
        self.clock_window = clock_window
        self.crash_hold = crash_hold  # seconds a peer whose kernel refuses probes stays held (see held())
        #: Random per-process id in every message: our restart starts a fresh sequence, never a locked-out one.
        self.session = os.urandom(8)
        #: (kind, reason) -> datagrams ignored (metrics: egress_probe_rejected_total).
        self.rejected: collections.Counter = collections.Counter()
        self._probe_windows = SenderWindows(forget_after=2 * clock_window)
        self._last_rejected: dict[tuple[str, int], tuple[str, float]] = {}  # source -> (why, when), for Down lines
        self._warned: dict[tuple, float] = {}
        #: (seconds of silence when a peer was declared Down) for every Down verdict (metrics).
        self.on_detected: Optional[Callable[[float], None]] = None
        host, port = parse_address(bind)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)  # ICMP errors for our probes: held()
        # The same socket without a timeout, for the error queue: through `sock` (which has one) Python would
        # first wait that long for it to become readable, which a queued error does not make it.
        self._errors = self.sock.dup()
        self._errors.setblocking(False)
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
        if self.keyring is None:
            raise RuntimeError("the probe detector needs the cluster key before it starts")
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
        self._errors.close()

    def set_peers(self, peers: dict[str, str]) -> None:
        """The members to probe: node name -> probe address (our own name is ignored)."""
        now = time.monotonic()
        with self._lock:
            for name in list(self._peers):
                if name not in peers:
                    st = self._peers[name]
                    if self._held(st, now) or self._rejoining(st, now):
                        if st.member:  # its lease went with its agent; its node is alive
                            st.member, st.left_at = False, now
                    else:
                        del self._peers[name]
            for name, addr in peers.items():
                if name == self.node or not addr:
                    continue
                address = parse_address(addr)
                st = self._peers.get(name)
                if st is None or st.address != address:
                    # A new incarnation (restarted agent) is judged afresh.
                    self._peers[name] = PeerState(address, first_probe=now)
                else:
                    st.member = True

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

    def hears_others_than(self, name: str) -> bool:
        """Whether a peer other than `name` answered within the last `pause_threshold`, or there is none.

        Corroboration before acting on `name`'s silence: a node cut off from the network sees every peer
        fall silent at the same moment, so "`name` is Down" from it says nothing about `name`. With a
        third node still answering, the silence is `name`'s own. (Two-node clusters cannot tell.)
        """
        with self._lock:
            others = [n for n, st in self._peers.items() if n != name and st.member]
        return not others or bool(self.answering(others))

    def answering(self, names) -> set[str]:
        """Those of `names` that answered within the last `pause_threshold`."""
        now = time.monotonic()
        with self._lock:
            return {n for n in names
                    if (st := self._peers.get(n)) and st.last_reply and now - st.last_reply <= self.pause_threshold}

    def held_states(self) -> dict[str, bool]:
        """name -> held (see held()), for every peer probed."""
        now = time.monotonic()
        with self._lock:
            return {n: self._held(st, now) for n, st in self._peers.items()}

    def held(self, name: str) -> bool:
        """Not answering, but its kernel refuses our probes (its agent is gone, its node alive), and its last
        answer is less than `crash_hold` ago: keep its IPs, it is being restarted (see the module docstring)."""
        with self._lock:
            st = self._peers.get(name)
            return st is not None and self._held(st, time.monotonic())

    def rejoining(self, name: str) -> bool:
        """Its lease went while it was held, and it answers again, less than `crash_hold` later: its agent
        restarted and is registering (the leader has not seen its new lease yet). Keep its IPs meanwhile."""
        with self._lock:
            st = self._peers.get(name)
            return st is not None and self._rejoining(st, time.monotonic())

    def _rejoining(self, st: PeerState, now: float) -> bool:
        return not st.member and now - st.left_at < self.crash_hold and self._up(st, now)

    def _up(self, st: PeerState, now: float) -> bool:
        return self._silence(st, now) <= self.window

    def _held(self, st: PeerState, now: float) -> bool:
        silence = self._silence(st, now)
        return self.window < silence < self.crash_hold and now - st.refused_at <= REFUSED_FRESH

    def _silence(self, st: PeerState, now: float) -> float:
        """How long the peer has not answered, as far as this agent could observe."""
        self._notice_pause(now)
        since = st.last_reply or st.first_probe
        if st.up is False:  # already judged Down: our pause is no sign that it came back
            return now - since
        return now - max(since, self._fresh_from)

    def states(self) -> dict[str, bool]:
        """name -> Up, for every peer probed (what `on_change` last reported, or Up while undecided)."""
        with self._lock:
            return {n: st.up is not False for n, st in self._peers.items()}

    def rejected_counts(self) -> dict[tuple[str, str], int]:
        """(kind, reason) -> datagrams ignored so far (a copy)."""
        with self._lock:
            return dict(self.rejected)

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
            try:
                self.keyring.tick()  # a rotated key file is picked up here
            except Exception:
                log.exception("probe: reloading the cluster key failed; keeping the current key")
            kid, key = self.keyring.signing_key()
            with self._lock:
                self._seq += 1
                seq = self._seq
                targets = [(name, st.address) for name, st in self._peers.items()]
            now_ms = time.time_ns() // 1_000_000
            for name, addr in targets:
                msg = wire.encode(wire.Message(wire.PROBE, kid, self.session, seq, now_ms, self.node, name), key)
                self._send(msg, addr)  # unreachable is what the missed replies report (a refusal: the error queue)
            self._read_errors()
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
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError as err:
                if self._stop.is_set():
                    return
                if err.errno in _REPORTED:
                    self._read_errors()  # IP_RECVERR: an ICMP error for one of our probes is queued
                continue
            try:
                msg = wire.decode(data, self.keyring.key_for)
                if msg.kind == wire.PROBE:
                    self._answer(msg, addr)
                else:
                    self._take_answer(msg, addr)
            except wire.Rejected as why:
                self._rejected(data, addr, why)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        """sendto, once more when it failed only to report an ICMP error queued for an earlier datagram.

        With IP_RECVERR an ICMP error also sets the socket's pending error, and the kernel hands that to the
        next call on the socket, a send included, which then sends nothing (and clears it). Without the
        retry, a probe to a crashed peer would cost the next answer we owe a healthy one.
        """
        for _ in range(3):
            try:
                self.sock.sendto(data, addr)
                return
            except OSError as err:
                if err.errno not in _REPORTED:
                    return

    def _read_errors(self) -> None:
        """Take the ICMP errors queued for our probes (IP_RECVERR); a port unreachable from a peer's own
        address to its probe port says its kernel is alive but nothing listens there: its agent is gone."""
        now = time.monotonic()
        while True:
            try:
                _, ancillary, _, dest = self._errors.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # closed at stop, or nothing queued
            for level, kind, data in ancillary:
                if level != socket.IPPROTO_IP or kind != _IP_RECVERR or len(data) < 24:
                    continue
                _, origin, icmp_type, icmp_code = struct.unpack_from("=IBBB", data)
                offender = socket.inet_ntoa(data[20:24])  # sockaddr_in after sock_extended_err: port, then address
                if (origin, icmp_type, icmp_code) != (_SO_EE_ORIGIN_ICMP, _ICMP_DEST_UNREACH, _ICMP_PORT_UNREACH):
                    continue
                with self._lock:
                    for st in self._peers.values():
                        if st.address == dest and offender == dest[0]:
                            st.refused_at = now

    def _answer(self, probe: wire.Message, addr: tuple[str, int]) -> None:
        """Answer an authentic, fresh probe (signed with the key it was signed with), to where it came from."""
        if probe.receiver != self.node:
            raise wire.Rejected(wire.REPLAYED, f"probe addressed to {probe.receiver!r}")
        self._check_clock(probe)
        with self._lock:
            fresh = self._probe_windows.accept(probe.sender, probe.session, probe.seq, time.monotonic())
        if not fresh:
            raise wire.Rejected(wire.REPLAYED, f"probe {probe.seq} from {probe.sender} seen before")
        key = self.keyring.key_for(probe.key_id)
        if key is None:  # rotated away this very instant
            return
        age_ms = min(int(self.session_age() * 1000), 10**9)
        reply = wire.encode(wire.Message(wire.ANSWER, probe.key_id, self.session, probe.seq, time.time_ns() // 1_000_000,
                                         self.node, probe.sender, probe.session, age_ms), key)
        self._send(reply, addr)

    def _take_answer(self, answer: wire.Message, addr: tuple[str, int]) -> None:
        """An authentic answer counts once, from the peer's registered address, for one of our recent probes."""
        if answer.receiver != self.node or answer.echo_session != self.session:
            raise wire.Rejected(wire.REPLAYED, "answer to a probe of another node or of an earlier run of this one")
        self._check_clock(answer)
        with self._lock:
            st = self._peers.get(answer.sender)
            if st is None or st.address != addr:
                raise wire.Rejected(wire.UNKNOWN_PEER, f"answer from {answer.sender!r} at {addr[0]}:{addr[1]}, "
                                    "not a member at that address")
            if answer.seq > self._seq:
                raise wire.Rejected(wire.REPLAYED, f"answer to probe {answer.seq}, never sent")
            if self._seq - answer.seq >= self.misses:
                raise wire.Rejected(wire.STALE, f"answer to probe {answer.seq}, sent more than a window ago")
            if not st.answers.accept(answer.seq):
                raise wire.Rejected(wire.REPLAYED, f"answer to probe {answer.seq} from {answer.sender} seen before")
            st.last_reply = time.monotonic()
            st.renewed_at = st.last_reply - answer.session_age_ms / 1000

    def _check_clock(self, msg: wire.Message) -> None:
        skew = msg.time_ms / 1000 - time.time()
        if abs(skew) > self.clock_window:
            raise wire.Rejected(wire.STALE, f"{msg.kind_name} from {msg.sender} is {abs(skew):.1f} s "
                                f"{'ahead of' if skew > 0 else 'behind'} this node's clock (more than "
                                f"{self.clock_window:.0f} s: a replay, or the nodes' clocks differ; check NTP)",
                                operator_error=True)

    def _rejected(self, data: bytes, addr: tuple[str, int], why: wire.Rejected) -> None:
        kind = wire.KINDS.get(data[4], "unknown") if len(data) > 4 and data[:4] == wire.MAGIC else "unknown"
        detail = why.detail or why.reason
        if why.reason == wire.WRONG_KEY:
            detail += f", this agent's is {'/'.join(self.keyring.ids())}: the agents have different cluster keys"
        now = time.monotonic()
        with self._lock:
            self.rejected[(kind, why.reason)] += 1
            if len(self._last_rejected) > 1024:  # spoofed sources must not grow this without bound
                self._last_rejected.clear()
                self._warned.clear()
            self._last_rejected[addr] = (detail, now)
            warn = why.operator_error and now - self._warned.get((addr, why.reason), -1e9) > WARN_EVERY
            if warn:
                self._warned[(addr, why.reason)] = now
        if warn:
            log.warning("probe: ignored a datagram (%s) from %s:%d: %s", kind, addr[0], addr[1], detail)
        else:
            log.debug("probe: ignored a datagram (%s) from %s:%d (%s): %s", kind, addr[0], addr[1], why.reason, detail)

    def _report_changes(self) -> None:
        now = time.monotonic()
        changed = []
        held_changed = []
        with self._lock:
            for name, st in list(self._peers.items()):
                silence = self._silence(st, now)
                up = silence <= self.window
                if st.up is not None and up != st.up:
                    rejected = self._last_rejected.get(st.address)
                    why = f"; what it sent was ignored: {rejected[0]}" if rejected and now - rejected[1] <= silence else ""
                    changed.append((name, up, silence, why))
                st.up = up
                held = self._held(st, now)
                if held != st.held:
                    held_changed.append((name, held, silence))
                    st.held = held
                if not st.member and not held and not self._rejoining(st, now):
                    del self._peers[name]  # kept only while held or rejoining (set_peers)
        for name, held, silence in held_changed:
            if held:
                log.info("probe: node %s refuses probes (its agent is gone, its node is alive): holding its "
                         "floating IPs for up to %.0f s", name, self.crash_hold - silence)
            else:
                log.info("probe: node %s no longer held (%s)", name,
                         "it answers again" if silence <= self.window else
                         f"no answer for {silence:.1f} s" if silence >= self.crash_hold else "its kernel went silent")
        verdicts = {}
        for name, up, silence, why in changed:
            log.info("probe: node %s is %s", name,
                     "Up" if up else f"Down (no valid answer for {self.window * 1000:.0f} ms{why})")
            if not up and self.on_detected:
                self.on_detected(silence)
            verdicts[name] = up
        for name, held, silence in held_changed:
            verdicts.setdefault(name, silence <= self.window)  # the hold changed the decision: report it too
        if self.on_change:
            for name, up in verdicts.items():
                try:
                    self.on_change(name, up)
                except Exception:
                    log.exception("detector callback failed")
