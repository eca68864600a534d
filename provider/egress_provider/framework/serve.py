"""Start the plugin the way go-plugin expects: gRPC on a unix socket, TLS, one handshake line.

Terraform starts the plugin several times per command, so this module imports
only what the handshake needs; the provider itself is built by a factory
called after the magic-cookie check.
"""

from __future__ import annotations

import base64
import os
import signal
import sys
import tempfile
import threading
from concurrent import futures
from typing import Callable

# go-plugin's handshake config for Terraform providers (hashicorp/terraform/internal/plugin6).
MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
CORE_PROTOCOL_VERSION = 1
APP_PROTOCOL_VERSION = 6

NOT_A_COMMAND = """\
This binary is a plugin for Terraform (provider egressnat/egress). It is started by
Terraform, not by hand. To use it, add to your configuration:

  terraform {
    required_providers {
      egress = { source = "egressnat/egress" }
    }
  }

and either install it into a local mirror with `egress-provider-mirror`, or point
Terraform at it with dev_overrides (see docs/index.md).
"""


def self_signed_cert() -> tuple[bytes, bytes, bytes]:
    """An in-memory P-256 key and a one-day self-signed cert: (key PEM, cert PEM, cert DER).

    Nothing is written to disk, so the plugin starts where $HOME is read-only.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.DER)


def check_magic_cookie() -> None:
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(NOT_A_COMMAND)
        sys.exit(1)


def serve(make_provider: Callable[[], object]) -> None:
    """Serve the provider built by `make_provider` until Terraform shuts the plugin down."""
    check_magic_cookie()

    import logging

    from egress_provider.framework import logs

    logs.setup()  # stderr only: stdout carries nothing but the handshake line

    import grpc
    from tf.gen import grpc_controller_pb2 as controller_pb
    from tf.gen import grpc_controller_pb2_grpc as controller_rpc
    from tf.gen import grpc_stdio_pb2_grpc as stdio_rpc

    from egress_provider.framework import protocol
    from egress_provider.framework.servicer import Servicer

    # Terraform handles Ctrl-C and tells plugins to stop; the plugin must not die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    done = threading.Event()

    class Controller(controller_rpc.GRPCControllerServicer):
        def Shutdown(self, request, context):
            done.set()
            return controller_pb.Empty()

    class Stdio(stdio_rpc.GRPCStdioServicer):
        # We write logs to stderr, which go-plugin forwards itself; nothing to stream.
        def StreamStdio(self, request, context):
            return iter(())

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    protocol.add_to_server(Servicer(make_provider()), server)  # tfplugin6.10 over tf's servicer
    controller_rpc.add_GRPCControllerServicer_to_server(Controller(), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(Stdio(), server)

    sock_dir = tempfile.mkdtemp(prefix="tf-egress-", dir=os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or None)
    sock = os.path.join(sock_dir, "plugin.sock")
    key_pem, cert_pem, cert_der = self_signed_cert()
    creds = grpc.ssl_server_credentials([(key_pem, cert_pem)], require_client_auth=False)
    server.add_secure_port(f"unix://{sock}", creds)
    server.start()

    handshake = "|".join(
        [
            str(CORE_PROTOCOL_VERSION),
            str(APP_PROTOCOL_VERSION),
            "unix",
            sock,
            "grpc",
            base64.b64encode(cert_der).decode().rstrip("="),
        ]
    )
    sys.stdout.write(handshake + "\n")
    sys.stdout.flush()
    logging.getLogger("plugin").debug("serving tfplugin6", extra={"socket": sock, "pid": os.getpid()})

    # The handler only appends to a list: calling done.set() there could land inside this thread's
    # own done.wait() while it holds the Event's lock, and block forever.
    terminated: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: terminated.append(signum))
    try:
        while not terminated and not done.wait(0.5):
            pass
    finally:
        server.stop(grace=0.2).wait()
        try:
            os.unlink(sock)
            os.rmdir(sock_dir)
        except OSError:
            pass
