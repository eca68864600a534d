"""The cluster key that authenticates liveness probes: where it comes from, and its rotation.

Two sources:

- a file (`--cluster-key-file`): at least 32 bytes, used as they are (raw random bytes, or text
  such as `openssl rand -base64 32`: every agent must have the same bytes). It must not be
  readable or writable by other users: whoever reads it can forge probes, so the agent refuses
  such a file rather than run with a key it cannot trust.
- etcd, when no file is given: the first agent creates a random key at
  `<prefix>/secret/probe-key` in one create-if-absent transaction and every agent reads it.
  The first run stays zero-config, but then whoever can read etcd can forge probes: protect
  etcd (TLS and a prefix-scoped etcd user), or use a file.

Rotation (file key only): the file is re-read every `RELOAD_EVERY` seconds. New content is
accepted from other agents at once; this agent keeps *signing* with the old key for `grace`
seconds (so peers whose file has not changed yet still accept its probes), then signs with the
new one and still accepts the old key for another `grace`. Replace the file on every node
within `grace` (default 5 minutes, enough for a Kubernetes Secret volume to refresh). A file
that becomes unreadable or invalid is logged and the current key kept.

This module is stdlib-only (the agent's config imports it to check the file before starting).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
import threading
import time
from typing import Callable, Optional

from egress_agent.cluster.probe_wire import key_id

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 32
MAX_KEY_BYTES = 4096
DEFAULT_GRACE = 300.0
RELOAD_EVERY = 1.0
ETCD_KIND, ETCD_NAME = "secret", "probe-key"


class KeyFileError(ValueError):
    pass


def read_key_file(path: str) -> bytes:
    """The key in `path`; KeyFileError (saying what to fix) when it is unusable."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"{path}: not a regular file")
            if st.st_mode & 0o007:
                raise KeyFileError(
                    f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets other users read or change the cluster key "
                    f"(anyone who reads it can forge liveness probes); run `chmod 600 {path}`")
            key = f.read(MAX_KEY_BYTES + 1)
    except OSError as err:
        raise KeyFileError(f"{path}: {err.strerror}") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise KeyFileError(f"{path}: {len(key)} bytes; the cluster key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} "
                           f"bytes (e.g. `head -c 32 /dev/urandom > {path}`)")
    return key


class Keyring:
    """The keys this agent accepts, and the one it signs its probes with."""

    def __init__(self, key: bytes, *, source: str, grace: float = DEFAULT_GRACE,
                 reload: Optional[Callable[[], bytes]] = None, clock: Callable[[], float] = time.monotonic):
        self.source = source  # for log lines: "file /etc/egress/probe.key" or "etcd"
        self.grace = grace
        self._reload = reload
        self._clock = clock
        self._lock = threading.Lock()
        self._current = (key_id(key), key)
        self._previous: Optional[tuple[bytes, bytes]] = None
        self._changed_at = float("-inf")
        self._next_reload = clock() + RELOAD_EVERY
        self._bad_reload = b""  # the content last refused, so it is logged once
        self.rotations = 0

    @classmethod
    def from_file(cls, path: str, grace: float = DEFAULT_GRACE) -> "Keyring":
        return cls(read_key_file(path), source=f"file {path}", grace=grace, reload=lambda: read_key_file(path))

    def signing_key(self) -> tuple[bytes, bytes]:
        """(key id, key) to sign new probes with: the previous key until `grace` after a change."""
        with self._lock:
            if self._previous and self._clock() - self._changed_at < self.grace:
                return self._previous
            return self._current

    def key_for(self, kid: bytes) -> Optional[bytes]:
        """The key named `kid` if this agent accepts it now, else None."""
        with self._lock:
            if kid == self._current[0]:
                return self._current[1]
            if self._previous and kid == self._previous[0] and self._clock() - self._changed_at < 2 * self.grace:
                return self._previous[1]
            return None

    def ids(self) -> list[str]:
        """Accepted key ids (hex), current first: what an operator compares between nodes."""
        with self._lock:
            ids = [self._current[0].hex()]
            if self._previous and self._clock() - self._changed_at < 2 * self.grace:
                ids.append(self._previous[0].hex())
            return ids

    def rotate(self, key: bytes) -> bool:
        """Make `key` the current key (the old one stays in use for the grace period). False if unchanged."""
        with self._lock:
            if key == self._current[1]:
                return False
            self._previous, self._current = self._current, (key_id(key), key)
            self._changed_at = self._clock()
            self.rotations += 1
            old, new = self._previous[0].hex(), self._current[0].hex()
        log.warning("probe: cluster key changed (%s): key %s accepted now, used for probes in %.0f s; "
                    "old key %s accepted for %.0f s", self.source, new, self.grace, old, 2 * self.grace)
        return True

    def tick(self) -> None:
        """Re-read the source when due (called from the probe loop)."""
        if self._reload is None or self._clock() < self._next_reload:
            return
        self._next_reload = self._clock() + RELOAD_EVERY
        try:
            key = self._reload()
        except KeyFileError as err:
            text = str(err).encode()
            if text != self._bad_reload:
                self._bad_reload = text
                log.error("probe: cannot reload the cluster key (%s); keeping key %s", err, self._current[0].hex())
            return
        self._bad_reload = b""
        self.rotate(key)


def etcd_key(store, node: str, *, stop: threading.Event, max_wait: Optional[float] = None) -> bytes:
    """The cluster key in etcd, created at random if absent (one create-if-absent transaction).

    Retries with backoff until etcd answers (like registration); raises Unavailable after
    `max_wait` seconds or once `stop` is set.
    """
    from egress_agent.store.base import Unavailable
    from egress_agent.store.etcd_client import b64

    path = b64(store.key(ETCD_KIND, ETCD_NAME))
    mine = json.dumps({"key": base64.b64encode(secrets.token_bytes(MIN_KEY_BYTES)).decode()})
    txn = {
        "compare": [{"key": path, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
        "success": [{"request_put": {"key": path, "value": b64(mine)}}],
        "failure": [{"request_range": {"key": path}}],
    }
    delay, deadline = 0.2, (time.monotonic() + max_wait) if max_wait is not None else None
    while True:
        try:
            # Safe to retry: a put that landed makes the retry read it back instead.
            res = store.client.call("kv/txn", txn, idempotent=True)
            if res.get("succeeded") or res["responses"][0]["response_range"].get("kvs"):
                break
            raise Unavailable("the key was deleted between the compare and the read")
        except Unavailable as err:
            if stop.is_set() or (deadline is not None and time.monotonic() + delay > deadline):
                raise
            # Getting the key is the first step of joining: say so in the words of registration.
            log.warning("cannot register node %s in etcd: reading the cluster probe key failed (%s); "
                        "retrying in %.1fs", node, err, delay)
            stop.wait(delay)
            delay = min(delay * 2, 5.0)
    if res.get("succeeded"):
        log.info("probe: created the cluster key in etcd (%s)", store.key(ETCD_KIND, ETCD_NAME))
        value = mine
    else:
        value = base64.b64decode(res["responses"][0]["response_range"]["kvs"][0]["value"]).decode()
    try:
        key = base64.b64decode(json.loads(value)["key"], validate=True)
    except (ValueError, KeyError, TypeError):
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the cluster key in etcd ({store.key(ETCD_KIND, ETCD_NAME)}) is not a base64 key of at "
                         f"least {MIN_KEY_BYTES} bytes: delete it and restart the agents, or use --cluster-key-file")
    return key
