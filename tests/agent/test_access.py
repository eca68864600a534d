"""Who may call the agent: mutual TLS on TCP, roles from certificates, uids on the unix socket, the audit log.

Real agents, real TLS (certificates from `egressctl certs init`'s code), real unix-socket callers of
another uid (`nobody`). Every refusal is checked to have changed nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from egress_agent.cmd import certs
from egress_api import errors, models, roles, transport
from egress_api.client import EgressClient
from egress_api.v1 import egress_pb2
from helpers.agent import AgentProcess, agent_command, start_agent
from helpers.etcd import free_port
from helpers.pki import make_pki, mtls_args

NOBODY = 65534
GATEWAY = models.Gateway(name="gw", floating_ips=["192.0.2.100"])


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_for(pki: Path, client: str | None, ca: Path | None = None) -> transport.ClientTLS:
    ca = ca or pki / "ca.pem"
    if client is None:
        return transport.ClientTLS.load(str(ca))
    base = pki / f"client-{client}" if "/" not in client else Path(client)
    return transport.ClientTLS.load(str(ca), f"{base}.pem", f"{base}-key.pem")


@pytest.fixture(scope="module")
def mtls_agent(tmp_path_factory, pki):
    port = free_port()
    workdir = tmp_path_factory.mktemp("mtls")
    agent = start_agent(workdir, extra_args=[
        "--listen", f"127.0.0.1:{port}", *mtls_args(pki), "--audit-log", str(workdir / "audit.jsonl")])
    agent.tcp = f"127.0.0.1:{port}"
    agent.audit = workdir / "audit.jsonl"
    yield agent
    agent.close()


def over_tcp(agent, tls) -> EgressClient:
    return EgressClient(agent.tcp, timeout=5, tls=tls)


def audit_lines(agent) -> list[dict]:
    return [json.loads(line) for line in agent.audit.read_text().splitlines()]


def test_callers_without_a_valid_client_certificate_are_refused(mtls_agent, pki):
    cases = {
        "plaintext": None,
        "TLS without a client certificate": tls_for(pki, None),
        "a certificate from another CA": tls_for(pki, str(pki / "other" / "client-admin"), ca=pki / "ca.pem"),
        "an expired certificate": tls_for(pki, "expired"),
    }
    for what, tls in cases.items():
        with over_tcp(mtls_agent, tls) as c, pytest.raises(errors.Unavailable) as err:
            c.create_gateway(GATEWAY)
        assert "closed the connection" in err.value.message or "TLS" in err.value.message, what
    assert mtls_agent.client.list_gateways() == []  # nothing got through


def test_a_viewer_reads_and_cannot_write(mtls_agent, pki):
    with over_tcp(mtls_agent, tls_for(pki, "viewer")) as viewer:
        assert viewer.health().status == "SERVING"
        assert viewer.list_policies() == []
        with pytest.raises(errors.PermissionDenied) as err:
            viewer.create_gateway(GATEWAY)
    assert err.value.message == ("spiffe://egress/role/viewer has role viewer, which may not call CreateGateway; "
                                 "nothing was changed")
    assert mtls_agent.client.list_gateways() == []
    last = audit_lines(mtls_agent)[-1]
    assert {k: last[k] for k in ("identity", "role", "method", "object", "outcome")} == {
        "identity": "spiffe://egress/role/viewer", "role": "viewer", "method": "CreateGateway",
        "object": "gateway/gw", "outcome": "PERMISSION_DENIED"}


def test_inventory_feeds_pods_and_cannot_touch_policies(mtls_agent, pki):
    with over_tcp(mtls_agent, tls_for(pki, "inventory")) as inv:
        inv.upsert_namespace(models.Namespace(name="team-a", labels={"user": "alice"}))
        assert [n.name for n in inv.list_namespaces()] == ["team-a"]
        for call in (lambda: inv.create_gateway(GATEWAY), lambda: inv.list_policies(), lambda: inv.delete_policy("x")):
            with pytest.raises(errors.PermissionDenied, match="has role inventory, which may not call"):
                call()


def test_admin_writes_and_every_write_is_audited_with_its_identity(mtls_agent, pki):
    with over_tcp(mtls_agent, tls_for(pki, "admin")) as admin:
        created = admin.create_gateway(GATEWAY)
        admin.delete_gateway("gw")
    lines = [line for line in audit_lines(mtls_agent) if line["role"] == "admin"]
    assert [(line["method"], line["object"], line["outcome"]) for line in lines[-2:]] == [
        ("CreateGateway", "gateway/gw", "OK"), ("DeleteGateway", "gateway/gw", "OK")]
    assert lines[-2]["resource_version"] == created.resource_version
    assert lines[-2]["identity"] == "spiffe://egress/role/admin" and lines[-2]["node"] == "worker1"
    assert lines[-2]["request_id"]  # the create's; deletes carry none
    # egressctl audit reads it back, filtered.
    ctl = Path(sys.executable).with_name("egressctl")
    out = subprocess.run([str(ctl), "audit", "--file", str(mtls_agent.audit), "--role", "admin",
                          "--method", "CreateGateway"], capture_output=True, text=True, check=True).stdout
    assert "spiffe://egress/role/admin" in out and "CreateGateway" in out and "DeleteGateway" not in out


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_only_tls_1_2_and_later_with_a_client_certificate(mtls_agent, pki):
    host, port = mtls_agent.tcp.split(":")
    for version, ok in ((ssl.TLSVersion.TLSv1_1, False), (ssl.TLSVersion.TLSv1_2, True), (ssl.TLSVersion.TLSv1_3, True)):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(pki / "ca.pem")
        ctx.load_cert_chain(pki / "client-viewer.pem", pki / "client-viewer-key.pem")
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_alpn_protocols(["h2"])
        if version < ssl.TLSVersion.TLSv1_2:
            ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer it; the agent must refuse
        try:
            with socket.create_connection((host, int(port)), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname="worker1") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3") and ok, version
                assert "GCM" in tls.cipher()[0] or "CHACHA20" in tls.cipher()[0]
        except ssl.SSLError:
            assert not ok, f"{version} was refused"


def server_certificate(agent, pki) -> bytes:
    host, port = agent.tcp.split(":")
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    ctx.load_cert_chain(pki / "client-viewer.pem", pki / "client-viewer-key.pem")
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="worker1") as tls:
        return tls.getpeercert(binary_form=True)


def test_a_rotated_server_certificate_is_used_without_a_restart(tmp_path, pki):
    live = tmp_path / "live"
    live.mkdir()
    for name in ("node-worker1.pem", "node-worker1-key.pem"):
        shutil.copy(pki / name, live / name)
    port = free_port()
    with start_agent(tmp_path / "agent", extra_args=[
            "--listen", f"127.0.0.1:{port}", "--tls-cert", str(live / "node-worker1.pem"),
            "--tls-key", str(live / "node-worker1-key.pem"), "--tls-client-ca", str(pki / "ca.pem")]) as agent:
        agent.tcp = f"127.0.0.1:{port}"
        before = server_certificate(agent, pki)
        # A half-done rotation (new certificate, old key) is refused and the old pair stays in use.
        fresh = tmp_path / "fresh"
        shutil.copytree(pki, fresh, dirs_exist_ok=True)
        for name in ("node-worker1.pem", "node-worker1-key.pem"):
            (fresh / name).unlink()
        certs.init(fresh, certs.parse_nodes("worker1=127.0.0.1"), [])  # same CA, new key and serial
        shutil.copy(fresh / "node-worker1.pem", live / "node-worker1.pem")
        assert server_certificate(agent, pki) == before
        assert "cannot be used, keeping the previous certificate" in agent.log()
        shutil.copy(fresh / "node-worker1-key.pem", live / "node-worker1-key.pem")
        after = server_certificate(agent, pki)
        assert after != before and after == ssl.PEM_cert_to_DER_cert((fresh / "node-worker1.pem").read_text())
        with over_tcp(agent, tls_for(pki, "viewer")) as viewer:
            assert viewer.health().status == "SERVING"
        assert agent.proc.poll() is None  # no restart


@pytest.fixture
def shared_socket_dir():
    """A socket directory another uid may enter (pytest's tmp dirs are root-only)."""
    d = Path(tempfile.mkdtemp(prefix="egress-sock-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# egressctl as `nobody`: started as root, it imports (and warms up) all it will run, then drops to nobody
# before it connects. A checkout where nobody cannot read (a clone in /root, as the fresh-machine check
# makes) could not be exec'd as nobody; the kernel reports the uid at connect, which is what counts.
AS_NOBODY = f"""
import os, sys
from egress_agent.cmd import ctl, ctl_apply
from egress_api import manifest, models, transport
models.parse("gateway", {{"name": "warm", "floating_ips": ["192.0.2.100"]}})
if "-f" in sys.argv:
    manifest.load(open(sys.argv[sys.argv.index("-f") + 1]).read(), "warm-up")
transport.channel("unix:///nonexistent/warm-up.sock").close()  # grpc imports its channel code lazily
os.setgroups([])
os.setgid({NOBODY})
os.setuid({NOBODY})
sys.exit(ctl.main(sys.argv[1:]))
"""


def run_as_nobody(agent, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", AS_NOBODY, "--endpoint", agent.endpoint, *args],
                          capture_output=True, text=True, timeout=30)


def test_unix_socket_callers_get_the_role_of_their_uid(tmp_path, shared_socket_dir):
    # Default: root (and the agent's own user) only; the socket is 0600, so others cannot even connect.
    agent = AgentProcess(tmp_path / "default")
    agent.socket = shared_socket_dir / "default.sock"
    with agent.start():
        assert oct(os.stat(agent.socket).st_mode & 0o777) == "0o600"
        r = run_as_nobody(agent, "get", "gateways")
        assert r.returncode == 1 and "Permission denied" in r.stderr or "cannot reach" in r.stderr

    mapped = AgentProcess(tmp_path / "mapped", extra_args=["--socket-roles", f"{NOBODY}=viewer"])
    mapped.socket = shared_socket_dir / "mapped.sock"
    with mapped.start():
        assert oct(os.stat(mapped.socket).st_mode & 0o777) == "0o666"  # the map decides, not the mode
        assert run_as_nobody(mapped, "get", "gateways").stdout.strip() == "No gateways found."
        manifest = shared_socket_dir / "gw.yaml"
        manifest.write_text("kind: Gateway\nmetadata: {name: gw}\nspec: {floating_ips: [192.0.2.100]}\n")
        r = run_as_nobody(mapped, "apply", "-f", str(manifest))
        assert r.returncode == 1
        assert f"unix:uid={NOBODY}(nobody)" in r.stderr and "has role viewer, which may not call CreateGateway" in r.stderr
        assert mapped.client.list_gateways() == []  # root is admin: it reads, and sees nothing was written
        mapped.client.create_gateway(GATEWAY)

    unmapped = AgentProcess(tmp_path / "unmapped", extra_args=["--socket-roles", "@root=inventory"])
    unmapped.socket = shared_socket_dir / "unmapped.sock"
    with unmapped.start():
        r = run_as_nobody(unmapped, "get", "gateways")
        assert r.returncode == 1 and "has no role on this agent, so it may not call ListGateways" in r.stderr


def test_the_tcp_listener_needs_mutual_tls_off_loopback(tmp_path, pki):
    base = [*agent_command(), "--node", "worker1", "--node-ip", "192.0.2.11/24", "--socket", str(tmp_path / "a.sock"),
            "--store", f"sqlite:{tmp_path / 's.db'}"]

    def run(*extra):
        return subprocess.run([*base, *extra], capture_output=True, text=True, timeout=30)

    for listen in ("0.0.0.0:7443", "192.0.2.11:7443", "agent.example:7443"):
        r = run("--listen", listen)
        assert r.returncode == 2 and f"--listen {listen} is not a loopback address" in r.stderr
        r = run("--listen", listen, "--tls-cert", str(pki / "node-worker1.pem"), "--tls-key",
                str(pki / "node-worker1-key.pem"))  # TLS, but nobody is authenticated
        assert r.returncode == 2 and "--tls-client-ca" in r.stderr
    r = run("--listen", "127.0.0.1:7443", "--tls-cert", str(pki / "node-worker1.pem"), "--tls-key",
            str(pki / "client-admin-key.pem"), "--tls-client-ca", str(pki / "ca.pem"))
    assert r.returncode == 2 and "is not the private key of --tls-cert" in r.stderr
    r = run("--tls-cert", str(pki / "node-worker1.pem"), "--tls-key", str(pki / "node-worker1-key.pem"))
    assert r.returncode == 2 and "needs --listen" in r.stderr
    r = run("--socket-roles", "nobody=superuser")
    assert r.returncode == 2 and "ROLE one of admin, viewer, inventory, peer" in r.stderr
    assert not (tmp_path / "s.db").exists()  # refused before anything was created


def test_insecure_listen_is_explicit_and_shows_in_health(tmp_path):
    port = free_port()
    with start_agent(tmp_path, extra_args=["--listen", f"127.0.0.1:{port}", "--insecure-listen"]) as agent:
        health = agent.client.health()
        assert health.status == "SERVING" and f"the API on 127.0.0.1:{port} has no client authentication" in health.detail
        assert "may call it as admin" in agent.log()


def test_every_method_of_the_api_has_its_roles():
    methods = set(egress_pb2.DESCRIPTOR.services_by_name["Egress"].methods_by_name)
    assert methods == set(roles.METHODS), "a new RPC needs a line in egress_api.roles.METHODS"
    assert roles.WRITES <= methods
    assert not any(roles.allowed(r, m) for r in ("viewer", "peer") for m in roles.WRITES)


def test_bad_client_tls_settings_are_named(pki, tmp_path):
    with pytest.raises(transport.TLSConfigError, match="ca is required"):
        transport.ClientTLS.load("", str(pki / "client-admin.pem"), str(pki / "client-admin-key.pem"))
    with pytest.raises(transport.TLSConfigError, match="key is not the private key of cert"):
        transport.ClientTLS.load(str(pki / "ca.pem"), str(pki / "client-admin.pem"), str(pki / "client-viewer-key.pem"))
    with pytest.raises(transport.TLSConfigError, match="cannot read it: No such file"):
        transport.ClientTLS.load(str(tmp_path / "missing.pem"))
    pem = (pki / "ca.pem").read_text()
    assert transport.ClientTLS.load(pem).ca == pem.strip().encode()  # contents work as well as paths


def test_the_inventory_socket_feeds_this_nodes_pods_and_nothing_else_even_for_root(tmp_path):
    """--inventory-socket is the CNI plugin's: JSON over HTTP, this node's pods only, every write audited."""
    from egress_cni.agent import AgentCalls, AgentFailure

    inventory, audit = tmp_path / "inv.sock", tmp_path / "audit.log"
    with start_agent(tmp_path / "agent", extra_args=["--inventory-socket", str(inventory),
                                                     "--audit-log", str(audit)]) as agent:
        assert oct(os.stat(inventory).st_mode & 0o777) == "0o600"
        cni = AgentCalls(str(inventory), timeout=5)
        stored = cni.upsert_pod("team-a/web-1", {"ip": "10.244.1.7", "interface": "veth1", "labels": {"app": "web"}})
        assert stored["node"] == agent.node and stored["labels"] == {"app": "web"}
        assert cni.get_pod("team-a/web-1")["ip"] == "10.244.1.7"
        with pytest.raises(AgentFailure) as refused:  # a pod of another node: not through this socket
            cni.upsert_pod("team-a/web-2", {"ip": "10.244.1.8", "node": "worker2"})
        assert refused.value.code == "INVALID_ARGUMENT" and "node: not an attribute" in str(refused.value)
        with pytest.raises(AgentFailure) as bad:  # every violation, at its attribute
            cni.upsert_pod("team-a/web-3", {"ip": "10.244.1.300", "labels": {"a/b/c": "x"}})
        assert bad.value.code == "INVALID_ARGUMENT" and "ip" in str(bad.value) and "labels" in str(bad.value)
        cni.delete_pod("team-a/web-1")
        with pytest.raises(AgentFailure) as gone:
            cni.get_pod("team-a/web-1")
        assert gone.value.code == "NOT_FOUND"
        with EgressClient(f"unix://{inventory}", timeout=3) as grpc_caller:  # the API is not served here at all
            with pytest.raises(errors.ApiError):
                grpc_caller.create_gateway(GATEWAY)
        assert agent.client.list_gateways() == [] and agent.client.list_pods() == []
        lines = [json.loads(line) for line in audit.read_text().splitlines()]
        assert [(e["method"], e["object"], e["outcome"], e["role"]) for e in lines] == [
            ("UpsertPod", "pod/team-a/web-1", "OK", "inventory"),
            ("UpsertPod", "pod/team-a/web-2", "INVALID_ARGUMENT", "inventory"),
            ("UpsertPod", "pod/team-a/web-3", "INVALID_ARGUMENT", "inventory"),
            ("DeletePod", "pod/team-a/web-1", "OK", "inventory"),
        ]
        assert lines[0]["identity"].startswith("unix:uid=0(root),pid=")
    assert not inventory.exists()  # removed at shutdown, like the API socket


def test_metrics_are_served_over_mutual_tls_with_the_apis_certificate(tmp_path, pki):
    import urllib.error
    import urllib.request

    api, metrics = free_port(), free_port()
    with start_agent(tmp_path, extra_args=["--listen", f"127.0.0.1:{api}", *mtls_args(pki),
                                           "--metrics-listen", f"127.0.0.1:{metrics}"]):
        url = f"https://127.0.0.1:{metrics}/metrics"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        ctx.load_cert_chain(pki / "client-viewer.pem", pki / "client-viewer-key.pem")
        assert "egress_api_requests_total" in urllib.request.urlopen(url, timeout=5, context=ctx).read().decode()
        bare = ssl.create_default_context(cafile=str(pki / "ca.pem"))  # no client certificate
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(url, timeout=5, context=bare).read()
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read()  # no plaintext
