"""The liveness probes' wire format: a probe or an answer, authenticated with HMAC-SHA256.

Every datagram is one `Message`:

    magic "EGP1" | kind (1 probe, 2 answer) | key id (8) | session (8) | seq (8) | time ms (8)
    | echo session (8) | session age ms (4) | len+sender | len+receiver | HMAC-SHA256 (32)

The MAC (keyed with the cluster key named by `key id`) covers every byte before it, so the
sender, the receiver, the sequence number, the sender's wall-clock time and, in an answer,
the echoed probe (`echo session`, and `seq` = the probe's seq) and the etcd session age are
all authenticated. `session` is the sender's random per-process id: a restarted agent starts
a new sequence under a new session instead of being locked out by its old one.

Nothing here decides freshness (replay windows, clock window): that is the detector's job,
on a message whose MAC has been verified. Decoding only answers "well-formed, and made by
someone holding this key?", and says why not (`Rejected.reason`).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Callable, Optional

MAGIC = b"EGP1"
PROBE, ANSWER = 1, 2
KINDS = {PROBE: "probe", ANSWER: "answer"}
_HEADER = struct.Struct("!4sB8s8sQQ8sI")  # magic, kind, key id, session, seq, time ms, echo session, age ms
MAC_LEN = 32
MAX_NAME = 253  # a node name is at most a DNS subdomain
MAX_SIZE = _HEADER.size + 2 * (1 + MAX_NAME) + MAC_LEN

#: Why a datagram was ignored (the label values of egress_probe_messages_rejected_total).
MALFORMED = "malformed"  # not our format at all
WRONG_KEY = "wrong_key"  # made with a key this agent does not hold (another cluster key, or forged)
BAD_MAC = "bad_mac"  # names our key but the MAC does not verify: forged or altered
STALE = "stale"  # its time is outside the clock window, or it answers a probe older than the detection window
REPLAYED = "replayed"  # seen before, or addressed to another node / another incarnation of this one
UNKNOWN_PEER = "unknown_peer"  # authentic, but from a node that is not a member at that address
REASONS = (MALFORMED, WRONG_KEY, BAD_MAC, STALE, REPLAYED, UNKNOWN_PEER)


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = "", *, operator_error: bool = False):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail
        #: A configuration to fix (another key, clocks apart), worth a warning; not an attack or a peer's pause.
        self.operator_error = operator_error or reason == WRONG_KEY


@dataclass(frozen=True)
class Message:
    kind: int
    key_id: bytes
    session: bytes  # the sender's per-process random id
    seq: int  # probe: the sender's probe counter; answer: the seq of the probe answered
    time_ms: int  # the sender's wall clock (Unix ms) when it sent this
    sender: str
    receiver: str
    echo_session: bytes = bytes(8)  # answer: the session of the probe answered
    session_age_ms: int = 0  # answer: ms since the answering node last renewed its etcd session

    @property
    def kind_name(self) -> str:
        return KINDS.get(self.kind, "?")


def key_id(key: bytes) -> bytes:
    """A short public name for a key, so a receiver picks the right one (and can say "another key")."""
    return hmac.new(key, b"egress probe key id", hashlib.sha256).digest()[:8]


def encode(msg: Message, key: bytes) -> bytes:
    names = b""
    for name in (msg.sender, msg.receiver):
        raw = name.encode()
        if len(raw) > MAX_NAME:
            raise ValueError(f"node name {name!r} is longer than {MAX_NAME} bytes")
        names += bytes([len(raw)]) + raw
    body = _HEADER.pack(MAGIC, msg.kind, msg.key_id, msg.session, msg.seq, msg.time_ms, msg.echo_session,
                        min(msg.session_age_ms, 0xFFFFFFFF)) + names
    return body + hmac.new(key, body, hashlib.sha256).digest()


def decode(data: bytes, key_for: Callable[[bytes], Optional[bytes]]) -> Message:
    """The message in `data`, if it is well formed and its MAC verifies with the key `key_for(key id)`."""
    if len(data) < _HEADER.size + 2 + MAC_LEN or len(data) > MAX_SIZE:
        raise Rejected(MALFORMED, f"{len(data)} bytes")
    body, mac = data[:-MAC_LEN], data[-MAC_LEN:]
    magic, kind, kid, session, seq, time_ms, echo_session, age_ms = _HEADER.unpack_from(body)
    if magic != MAGIC or kind not in KINDS:
        raise Rejected(MALFORMED, "not an egress probe")
    key = key_for(kid)
    if key is None:
        raise Rejected(WRONG_KEY, f"signed with cluster key {kid.hex()}")
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise Rejected(BAD_MAC, f"MAC does not verify with cluster key {kid.hex()}")
    try:
        names, at = [], _HEADER.size
        for _ in range(2):
            n = body[at]
            names.append(body[at + 1 : at + 1 + n].decode())
            at += 1 + n
        if at != len(body):
            raise ValueError("trailing bytes")
    except (IndexError, UnicodeDecodeError, ValueError) as err:  # authentic but malformed: a bug, not an attack
        raise Rejected(MALFORMED, str(err)) from None
    return Message(kind, kid, session, seq, time_ms, names[0], names[1], echo_session, age_ms)
