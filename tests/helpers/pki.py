"""Certificates for TLS tests: what `egressctl certs init` makes, plus the bad ones an attacker would try."""

from __future__ import annotations

import datetime
from pathlib import Path

from egress_agent.cmd import certs
from egress_api import roles


def make_pki(d: Path, nodes: str = "worker1=127.0.0.1") -> Path:
    """In `d`: ca.pem, node-*.pem, client-{admin,viewer,inventory,ops}.pem, an expired admin
    (client-expired.pem) and another CA's admin (other/client-admin.pem); keys beside them (-key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certs.init(d, certs.parse_nodes(nodes), certs.parse_clients("admin,viewer,inventory,ops:viewer"))
    certs.init(d / "other", [], certs.parse_clients("admin"))
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((d / "ca-key.pem").read_bytes(), password=None)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert, key = certs.issue(ca, ca_key, "old-admin", [roles.ROLE_URI + "admin"], [], [],
                            not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1),
                            server=False)
    certs.write_pair(d, "client-expired", cert, key)
    return d


def mtls_args(pki: Path, node: str = "worker1") -> list[str]:
    """The agent flags for mutual TLS with `node`'s certificate."""
    return ["--tls-cert", str(pki / f"node-{node}.pem"), "--tls-key", str(pki / f"node-{node}-key.pem"),
            "--tls-client-ca", str(pki / "ca.pem")]
