"""The one place gRPC channels and servers are set up.

Target syntax (the provider's `endpoint`, `EGRESS_ENDPOINT`, `egressctl --endpoint`
and the agent's `--socket`/`--listen` all use it):

    unix:///abs/path     a unix socket (also accepted: unix:/abs/path, or a bare /abs/path)
    host:port            TCP, e.g. 127.0.0.1:7443

A unix socket is local and never encrypted: the agent learns who calls from the
kernel (SO_PEERCRED, see egress_agent.server.local_peers). TCP is plaintext unless
the client is given a `ClientTLS` (then TLS, and mutual TLS with a client
certificate); the agent's side is egress_agent.server.tls. `ClientTLS` reads
PEM contents or file paths, so the provider can take either.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass
from typing import Optional

import grpc

from egress_api import limits

# Requests are one object, responses may be lists: each direction has its own bound (egress_api.limits).
_CLIENT_OPTIONS = [
    ("grpc.max_send_message_length", limits.MAX_REQUEST_BYTES),
    ("grpc.max_receive_message_length", limits.MAX_RESPONSE_BYTES),
]
_SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", limits.MAX_REQUEST_BYTES),
    ("grpc.max_send_message_length", limits.MAX_RESPONSE_BYTES),
    ("grpc.max_concurrent_streams", limits.MAX_STREAMS_PER_CONNECTION),
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


class TLSConfigError(ValueError):
    """A CA, certificate or key the client was given cannot be used; the message names which and why."""


@dataclass(frozen=True)
class ClientTLS:
    """TLS for TCP endpoints: the CA that signed the agents' certificates, and this client's
    certificate and key (mutual TLS; the certificate carries the client's role). PEM bytes."""

    ca: bytes
    cert: bytes = b""
    key: bytes = b""

    @classmethod
    def load(cls, ca: str = "", cert: str = "", key: str = "", what: str = "") -> Optional["ClientTLS"]:
        """From file paths or PEM contents (each value may be either); None when all are empty.

        `what` names the settings in errors, e.g. "ca_file/cert_file/key_file".
        """
        names = (what or "ca/cert/key").split("/")
        if not (ca or cert or key):
            return None
        if not ca:
            raise TLSConfigError(f"{names[0]} is required with {names[1]}/{names[2]}: the CA that signed the "
                                 "agents' certificates")
        if bool(cert) != bool(key):
            raise TLSConfigError(f"{names[1]} and {names[2]} go together: give both or neither")
        tls = cls(_pem(ca, names[0], b"CERTIFICATE"), _pem(cert, names[1], b"CERTIFICATE") if cert else b"",
                  _pem(key, names[2], b"PRIVATE KEY") if key else b"")
        if cert:
            check_key_pair(tls.cert, tls.key, names[1], names[2])
        return tls

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key or None,
                                            certificate_chain=self.cert or None)


def _pem(value: str, name: str, kind: bytes) -> bytes:
    """PEM contents as given, or read from the file named by `value`."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        data = text.encode()
    else:
        try:
            with open(os.path.expanduser(text), "rb") as f:
                data = f.read()
        except OSError as err:
            if "\n" in text or len(text) > 4096:  # not a path: never echo what may be a key
                raise TLSConfigError(f"{name}: neither PEM contents nor a readable file") from None
            raise TLSConfigError(f"{name} {text}: cannot read it: {err.strerror}") from None
    if b"-----BEGIN" not in data or kind not in data:
        raise TLSConfigError(f"{name}: not a PEM {kind.decode().lower()} (expected a '-----BEGIN ...{kind.decode()}-----' block)")
    return data


def check_key_pair(cert: bytes, key: bytes, cert_name: str, key_name: str) -> None:
    """The key is the certificate's: a mismatch would only show as a failed handshake, far from its cause."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        public = x509.load_pem_x509_certificate(cert).public_key()
    except ValueError as err:
        raise TLSConfigError(f"{cert_name}: not a valid certificate: {err}") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as err:
        raise TLSConfigError(f"{key_name}: not a usable private key (encrypted keys are not supported): {err}") from None
    pem = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*pem) != public.public_bytes(*pem):
        raise TLSConfigError(f"{key_name} is not the private key of {cert_name}")


def channel(target: str, tls: Optional[ClientTLS] = None) -> grpc.Channel:
    """A channel to `target`; TCP targets use `tls` when given (unix sockets never do: they are local)."""
    t = parse_target(target)
    if tls is None or t.scheme == "unix":
        return grpc.insecure_channel(t.grpc_target, options=_CLIENT_OPTIONS)
    return grpc.secure_channel(t.grpc_target, tls.credentials(), options=_CLIENT_OPTIONS)


# --- server side ------------------------------------------------------------------


def server_options() -> list[tuple[str, int]]:
    return list(_SERVER_OPTIONS)


def bind(server: grpc.Server, target: str, creds: Optional[grpc.ServerCredentials] = None) -> Target:
    """Add a listener for `target` to a not-yet-started server, with TLS when `creds` are given.

    A unix socket is created with mode 0600 (only the agent's user may talk to
    it) and a stale socket file left by a crashed agent is removed first;
    a socket some live process still answers on is an error.
    """
    t = parse_target(target)
    add = (lambda addr: server.add_insecure_port(addr)) if creds is None else (
        lambda addr: server.add_secure_port(addr, creds)
    )
    if t.scheme == "tcp":
        if add(t.address) == 0:
            raise OSError(f"cannot listen on {t.address}: address in use or not local")
        return t
    remove_stale_socket(t.address)
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


def remove_stale_socket(path: str) -> None:
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
