"""The plugin process and the provider block: startup contract, endpoint handling, error wrapping."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from tf.gen import grpc_controller_pb2, grpc_controller_pb2_grpc
from tf.gen import tfplugin_pb2 as pb
from tf.gen import tfplugin_pb2_grpc as rpc

from egress_provider.framework.serve import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE
from helpers.terraform import Acceptance, Terraform, find_diagnostic

PLUGIN = Path(sys.executable).parent / "terraform-provider-egress"
HANDSHAKE = re.compile(r"^1\|6\|unix\|(/[^|]+)\|grpc\|([A-Za-z0-9+/]+)$")
GATEWAY = 'resource "egress_gateway" "gw" {\n  floating_ips = ["192.0.2.100"]\n}\n'


class Plugin:
    """The plugin started the way go-plugin starts it, and a TLS gRPC channel to it."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen([str(PLUGIN)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.first_line = self.proc.stdout.readline().rstrip("\n")
        m = HANDSHAKE.match(self.first_line)
        assert m, f"not a go-plugin handshake: {self.first_line!r}; stderr: {self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.socket, cert_b64 = m.group(1), m.group(2)
        der = base64.b64decode(cert_b64 + "=" * (-len(cert_b64) % 4))
        pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
        creds = grpc.ssl_channel_credentials(root_certificates=pem)
        self.channel = grpc.secure_channel(f"unix:{self.socket}", creds, options=[("grpc.ssl_target_name_override", "localhost")])
        self.provider = rpc.ProviderStub(self.channel)

    def shutdown(self) -> int:
        grpc_controller_pb2_grpc.GRPCControllerStub(self.channel).Shutdown(grpc_controller_pb2.Empty(), timeout=5)
        self.channel.close()
        return self.proc.wait(timeout=5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def plugin():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env[MAGIC_COOKIE_KEY] = MAGIC_COOKIE_VALUE
    env["HOME"] = "/dev/null"  # not a directory: nothing can be written under it, even by root
    p = Plugin(env)
    yield p
    p.kill()


def test_plugin_handshake_first_with_unwritable_home_and_clean_shutdown(plugin):
    # The very first stdout line is the handshake (asserted by Plugin), then a real RPC over TLS.
    resp = plugin.provider.GetProviderSchema(pb.GetProviderSchema.Request(), timeout=10)
    assert set(resp.resource_schemas) == {"egress_gateway", "egress_nat_policy"}
    assert set(resp.data_source_schemas) == {"egress_gateway_status", "egress_policy_status", "egress_node",
                                             "egress_effective_ip"}
    assert not resp.diagnostics
    start = time.monotonic()
    assert plugin.shutdown() == 0
    assert time.monotonic() - start < 2  # go-plugin kills a plugin that takes longer than 2 s
    assert plugin.proc.stdout.read() == ""  # and nothing else was printed on stdout


def test_uncaught_exception_becomes_a_diagnostic(plugin):
    # An unknown resource type makes tf raise KeyError inside the RPC: the user gets a diagnostic, not
    # "rpc error: code = Unknown".
    resp = plugin.provider.ImportResourceState(pb.ImportResourceState.Request(type_name="egress_nope", id="x"), timeout=10)
    assert len(resp.diagnostics) == 1
    diag = resp.diagnostics[0]
    assert diag.severity == pb.Diagnostic.ERROR
    assert diag.summary == "Internal error in the egress provider (ImportResourceState)"
    assert "KeyError" in diag.detail and "TF_LOG=debug" in diag.detail


def test_run_by_hand_explains_itself():
    env = {k: v for k, v in os.environ.items() if k != MAGIC_COOKIE_KEY}
    res = subprocess.run([str(PLUGIN)], env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert res.stdout == ""
    assert "plugin for Terraform" in res.stderr and "egress-provider-mirror" in res.stderr


@pytest.mark.terraform
def test_missing_endpoint_says_how_to_set_it(tmp_path):
    tf = Terraform(tmp_path)  # no EGRESS_ENDPOINT, no provider block
    tf.write(GATEWAY)
    res = tf.run("plan", "-no-color", "-input=false", check=False)
    assert res.code == 1
    box = find_diagnostic(res.output, "Error: No egress agent endpoint configured")
    assert "EGRESS_ENDPOINTS=unix:///run/egress/agent.sock" in box and "endpoints = " in box


@pytest.mark.terraform
def test_unreachable_or_invalid_endpoint(tmp_path):
    tf = Terraform(tmp_path, endpoint=f"unix://{tmp_path}/no-agent.sock", env={"HOME": "/dev/null"})
    tf.write(GATEWAY)
    res = tf.run("plan", "-no-color", "-input=false", check=False)
    assert res.code == 1
    box = find_diagnostic(res.output, f"Error: Cannot reach the egress agent at unix://{tmp_path}/no-agent.sock")
    assert "egress-agent is running" in box

    tf.write('provider "egress" {\n  endpoint = "agent.sock"\n}\n' + GATEWAY)
    res = tf.run("plan", "-no-color", "-input=false", check=False)
    assert res.code == 1
    find_diagnostic(res.output, "Error: Invalid endpoint", 'endpoint = "agent.sock"', "host:port")


@pytest.mark.terraform
def test_endpoint_in_provider_block_with_unwritable_home(agent_process, tmp_path):
    """Terraform itself starts the plugin with HOME unusable; the provider block's endpoint wins over the env."""
    tf = Terraform(tmp_path, endpoint="unix:///nonexistent/agent.sock", env={"HOME": "/dev/null"})
    acc = Acceptance(tf, agent_process)
    acc.step(f'provider "egress" {{\n  endpoint = "{agent_process.endpoint}"\n  timeout  = 5\n}}\n' + GATEWAY)
    assert [v.obj.name for v in agent_process.client.list_gateways()] == ["default"]
    acc.destroy()
