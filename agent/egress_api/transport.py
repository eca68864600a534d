"""The one place gRPC channels and servers are set up.

Target syntax (the provider's `endpoint`, `EGRESS_ENDPOINT`, `egressctl --endpoint`
and the agent's `--socket`/`--listen` all use it):

    unix:///abs/path     a unix socket (also accepted: unix:/abs/path, or a bare /abs/path)
    host:port            TCP, e.g. 127.0.0.1:7443

Everything is plaintext for now. mTLS comes later: it plugs in at `_channel_credentials`
and `_server_credentials`, the only two places that decide how bytes are protected.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass

import grpc

# Messages are small; this bounds a hostile or buggy peer, not normal use.
_MAX_MESSAGE = 16 * 1024 * 1024
_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
]


class TargetError(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    """A parsed endpoint: `unix` with an absolute `address` path, or `tcp` with `host:port`."""

    scheme: str  # "unix" | "tcp"
    address: str

    @property
    def grpc_target(self) -> str:
        return f"unix://{self.address}" if self.scheme == "unix" else self.address

    def __str__(self) -> str:
        return self.grpc_target


def parse_target(target: str) -> Target:
    text = (target or "").strip()
    if not text:
        raise TargetError("empty endpoint: use unix:///path/to/agent.sock or host:port")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/"):
            raise TargetError(f"{target!r}: a unix socket path must be absolute (e.g. unix:///run/egress/agent.sock)")
        return Target("unix", os.path.normpath(path))
    if text.startswith("/"):
        return Target("unix", os.path.normpath(text))
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"{target!r} is not a valid endpoint: use unix:///path/to/agent.sock or host:port")
    return Target("tcp", text)


# --- client side ------------------------------------------------------------------


def _channel_credentials(target: Target) -> grpc.ChannelCredentials | None:
    """mTLS hook: return credentials here to secure channels. None = plaintext."""
    return None


def channel(target: str) -> grpc.Channel:
    t = parse_target(target)
    creds = _channel_credentials(t)
    if creds is None:
        return grpc.insecure_channel(t.grpc_target, options=_OPTIONS)
    return grpc.secure_channel(t.grpc_target, creds, options=_OPTIONS)


# --- server side ------------------------------------------------------------------


def _server_credentials(target: Target) -> grpc.ServerCredentials | None:
    """mTLS hook: return credentials here to require TLS on a listener. None = plaintext."""
    return None


def server_options() -> list[tuple[str, int]]:
    return list(_OPTIONS)


def bind(server: grpc.Server, target: str) -> Target:
    """Add a listener for `target` to a not-yet-started server.

    A unix socket is created with mode 0600 (only the agent's user may talk to
    it) and a stale socket file left by a crashed agent is removed first;
    a socket some live process still answers on is an error.
    """
    t = parse_target(target)
    creds = _server_credentials(t)
    add = (lambda addr: server.add_insecure_port(addr)) if creds is None else (
        lambda addr: server.add_secure_port(addr, creds)
    )
    if t.scheme == "tcp":
        if add(t.address) == 0:
            raise OSError(f"cannot listen on {t.address}: address in use or not local")
        return t
    _remove_stale_socket(t.address)
    os.makedirs(os.path.dirname(t.address), exist_ok=True)
    # umask closes the window between bind() and chmod(): the socket is never group/world-accessible.
    old = os.umask(0o177)
    try:
        if add(t.grpc_target) == 0:
            raise OSError(f"cannot listen on {t.grpc_target}")
    finally:
        os.umask(old)
    return t


def secure_socket(t: Target) -> None:
    """Enforce mode 0600 once the server has started (gRPC may create the file lazily)."""
    if t.scheme == "unix" and os.path.exists(t.address):
        os.chmod(t.address, 0o600)


def remove_socket(t: Target) -> None:
    if t.scheme == "unix":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(t.address)


def _remove_stale_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket: refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: left behind by an agent that did not shut down cleanly
        return
    finally:
        probe.close()
    raise OSError(f"another process is already listening on {path}: stop it or choose another --socket")
