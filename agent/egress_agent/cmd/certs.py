"""`egressctl certs init`: a CA and the certificates a small cluster needs, with the right identities.

    egressctl certs init --dir DIR --nodes worker1=192.0.2.11,worker2=192.0.2.12 --clients admin,viewer,ci:viewer

writes into DIR (created 0700):
    ca.pem, ca-key.pem                      the cluster CA (reused if DIR already has one, so the
                                            command can add nodes and clients later)
    node-NAME.pem, node-NAME-key.pem        an agent's certificate: --tls-cert/--tls-key; SANs: the
                                            node's name and IPs, spiffe://egress/node/NAME (role peer)
    client-NAME.pem, client-NAME-key.pem    a client's: SAN spiffe://egress/role/ROLE (NAME:ROLE, or
                                            NAME alone when it is a role's name)

Keys are ECDSA P-256, files with keys mode 0600. For labs, tests and small
clusters; bring your own PKI (cert-manager, Vault, step-ca) by issuing the same
SANs (docs/security.md).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from egress_api import roles


class CertsError(ValueError):
    pass


@dataclass(frozen=True)
class NodeSpec:
    name: str
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClientSpec:
    name: str
    role: str


def parse_nodes(text: str) -> list[NodeSpec]:
    """`worker1=192.0.2.11+127.0.0.1,worker2`: names with optional IPs the agent listens on."""
    out = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, _, ips = entry.partition("=")
        addresses = tuple(i for i in ips.split("+") if i)
        for ip in addresses:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise CertsError(f"--nodes {entry}: {ip!r} is not an IP address") from None
        out.append(NodeSpec(name.strip(), addresses))
    if not out:
        raise CertsError("--nodes: give at least one node, e.g. worker1=192.0.2.11")
    return out


def parse_clients(text: str) -> list[ClientSpec]:
    """`admin,viewer,ci:viewer`: NAME:ROLE, or NAME alone when NAME is a role."""
    out = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, _, role = entry.partition(":")
        role = role or name
        if role not in roles.ROLES:
            raise CertsError(f"--clients {entry}: role {role!r} is not one of {', '.join(roles.ROLES)} "
                             "(write NAME:ROLE)")
        out.append(ClientSpec(name, role))
    return out


def init(directory: str | Path, nodes: list[NodeSpec], clients: list[ClientSpec], days: int = 365) -> list[Path]:
    """Issue the certificates; returns the files written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    written: list[Path] = []
    ca_cert_path, ca_key_path = d / "ca.pem", d / "ca-key.pem"
    if ca_cert_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    else:
        ca_key = _key()
        ca_cert = _ca(ca_key)
        written += write_pair(d, "ca", ca_cert, ca_key)
    for node in nodes:
        cert, key = _leaf(ca_cert, ca_key, node.name, [roles.NODE_URI + node.name], [node.name, "localhost"],
                          list(node.ips), days, server=True)
        written += write_pair(d, f"node-{node.name}", cert, key)
    for client in clients:
        cert, key = _leaf(ca_cert, ca_key, client.name, [roles.ROLE_URI + client.role], [], [], days, server=False)
        written += write_pair(d, f"client-{client.name}", cert, key)
    return written


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "egress"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(key):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(_name("egress CA")).issuer_name(_name("egress CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


def issue(ca_cert, ca_key, common_name: str, uris: list[str], dns: list[str], ips: list[str], *,
          not_before: datetime.datetime, not_after: datetime.datetime, server: bool, key=None):
    """One leaf certificate; `issue` with past dates makes an expired one (tests)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = key or _key()
    sans = ([x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(n) for n in dns]
            + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips])
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def _leaf(ca_cert, ca_key, common_name, uris, dns, ips, days: int, server: bool):
    now = datetime.datetime.now(datetime.timezone.utc)
    return issue(ca_cert, ca_key, common_name, uris, dns, ips, not_before=now - datetime.timedelta(minutes=5),
                 not_after=now + datetime.timedelta(days=days), server=server)


def write_pair(d: Path, stem: str, cert, key) -> list[Path]:
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = d / f"{stem}.pem", d / f"{stem}-key.pem"
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return [cert_path, key_path]


def command(args) -> int:
    """`egressctl certs init` (args from egressctl's parser)."""
    import sys

    try:
        nodes = parse_nodes(args.nodes) if args.nodes else []
        clients = parse_clients(args.clients) if args.clients else []
        if not nodes and not clients:
            raise CertsError("give --nodes and/or --clients")
        written = init(args.dir, nodes, clients, days=args.days)
    except (CertsError, OSError) as err:
        print(f"egressctl: certs init: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
