"""TLS for the agent's TCP listener: its certificate, and the CA whose client certificates it accepts.

The files are re-read when they change, without a restart: gRPC asks for the
certificate configuration at every new handshake (dynamic credentials), and we
answer with a new one only when a file's modification time or size moved and
the new files form a usable pair. A half-written or mismatched rotation is
logged and the previous certificate stays in use, so rotating by copying files
in place cannot take the API down. Connections already open keep the
certificate they were made with (TLS cannot change it mid-connection).

gRPC's TLS (BoringSSL) negotiates TLS 1.2 or 1.3 only, with forward-secret AEAD
cipher suites (ECDHE with AES-GCM or ChaCha20-Poly1305); older protocol
versions are refused at the handshake. tests/agent/test_tls.py checks this
with Python's ssl module.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Optional

import grpc

log = logging.getLogger(__name__)


class TLSFilesError(ValueError):
    """The agent's TLS files cannot be used; the message names the flag and why."""


@dataclass(frozen=True)
class ServerTLSFiles:
    cert: str  # --tls-cert: PEM certificate chain, the agent's own first
    key: str  # --tls-key: its private key
    client_ca: str = ""  # --tls-client-ca: client certificates are required and must chain to it

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca)


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise TLSFilesError(f"{flag} {path}: {err.strerror}") from None


def file_stamp(paths: tuple[str, ...]) -> tuple:
    """What changes when any of the files is rewritten or replaced (mtime, size, inode)."""
    stamps = []
    for p in paths:
        try:
            st = os.stat(p)
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def load_pair(files: ServerTLSFiles) -> tuple[bytes, bytes, bytes]:
    """(key, cert, client CA) read and checked: the key matches the certificate, the CA parses."""
    from cryptography import x509

    from egress_api import transport

    key, cert = _read(files.key, "--tls-key"), _read(files.cert, "--tls-cert")
    try:
        transport.check_key_pair(cert, key, f"--tls-cert {files.cert}", f"--tls-key {files.key}")
    except transport.TLSConfigError as err:
        raise TLSFilesError(str(err)) from None
    ca = b""
    if files.client_ca:
        ca = _read(files.client_ca, "--tls-client-ca")
        try:
            x509.load_pem_x509_certificates(ca)
        except ValueError as err:
            raise TLSFilesError(f"--tls-client-ca {files.client_ca}: not PEM certificates: {err}") from None
    return key, cert, ca


class ReloadingCredentials:
    """Server credentials that pick up rotated files at the next handshake."""

    def __init__(self, files: ServerTLSFiles):
        self.files = files
        self._paths = tuple(p for p in (files.cert, files.key, files.client_ca) if p)
        self._lock = threading.Lock()
        self._stamp = file_stamp(self._paths)
        self.reloads = 0  # rotations picked up (for tests and the log)
        key, cert, ca = load_pair(files)  # at start a bad file is an error, not a warning
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._config(key, cert, ca), self._fetch, require_client_authentication=files.mutual)

    @staticmethod
    def _config(key: bytes, cert: bytes, ca: bytes):
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca or None)

    def _fetch(self) -> Optional[object]:
        """gRPC's per-handshake question: a new configuration, or None to keep the current one."""
        stamp = file_stamp(self._paths)
        with self._lock:
            if stamp == self._stamp:
                return None
            self._stamp = stamp
        try:
            key, cert, ca = load_pair(self.files)
        except Exception as err:  # noqa: BLE001 - this runs inside gRPC's handshake: never let it raise
            log.warning("TLS files changed but cannot be used, keeping the previous certificate: %s", err)
            return None
        self.reloads += 1
        log.info("TLS: reloaded %s", ", ".join(self._paths))
        return self._config(key, cert, ca)
