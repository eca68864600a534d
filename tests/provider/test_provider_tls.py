"""Terraform through mutual TLS: ca_file/cert_file/key_file (or EGRESS_*_FILE), roles, plan-time errors."""

from __future__ import annotations

import pytest

from helpers.agent import start_agent
from helpers.etcd import free_port
from helpers.pki import make_pki, mtls_args
from helpers.terraform import Terraform

pytestmark = pytest.mark.terraform

CONFIG = """
variable "ca" {
  type = string
}
variable "cert" {
  type = string
}
variable "key" {
  type = string
}

provider "egress" {
  ca_file   = var.ca
  cert_file = var.cert
  key_file  = var.key
}

resource "egress_gateway" "default" {
  name         = "default"
  floating_ips = ["192.0.2.100"]
}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_agent(tmp_path_factory, pki):
    port = free_port()
    agent = start_agent(tmp_path_factory.mktemp("agent"), extra_args=["--listen", f"127.0.0.1:{port}", *mtls_args(pki)])
    agent.tcp = f"127.0.0.1:{port}"
    yield agent
    agent.close()


def text(result) -> str:
    """Terraform's output with its line wrapping undone."""
    return " ".join(result.output.split())


def creds(pki, client: str, key_of: str = "") -> list[str]:
    return ["-var", f"ca={pki / 'ca.pem'}", "-var", f"cert={pki / f'client-{client}.pem'}",
            "-var", f"key={pki / f'client-{key_of or client}-key.pem'}"]


def test_plan_with_a_viewer_apply_with_an_admin_over_mutual_tls(mtls_agent, pki, tmp_path, terraform_core):
    tf = Terraform(tmp_path, endpoint=mtls_agent.tcp, core=terraform_core)
    tf.write(CONFIG)
    plan = tf.plan(*creds(pki, "viewer"))  # a review pipeline needs no write rights
    assert plan.actions("egress_gateway.default") == ["create"]
    denied = tf.apply(*creds(pki, "viewer"), check=False)
    assert denied.code == 1 and "Not allowed to create" in text(denied)
    assert "has role viewer, which may not call CreateGateway" in text(denied)
    assert mtls_agent.client.list_gateways() == []

    tf.apply(*creds(pki, "admin"))
    assert [g.obj.name for g in mtls_agent.client.list_gateways()] == ["default"]
    tf.run("plan", "-input=false", "-no-color", "-detailed-exitcode", *creds(pki, "viewer"))  # empty: exit 0
    tf.run("destroy", "-auto-approve", "-input=false", "-no-color", *creds(pki, "admin"))


def test_tls_files_from_the_environment_with_pem_contents(mtls_agent, pki, tmp_path, terraform_core):
    env = {"EGRESS_CA_FILE": (pki / "ca.pem").read_text(), "EGRESS_CERT_FILE": str(pki / "client-viewer.pem"),
           "EGRESS_KEY_FILE": str(pki / "client-viewer-key.pem")}
    tf = Terraform(tmp_path, endpoint=mtls_agent.tcp, env=env, core=terraform_core)
    tf.write('data "egress_node" "w" {\n  name = "worker1"\n}\noutput "state" {\n  value = data.egress_node.w.state\n}\n')
    tf.apply()
    assert tf.outputs()["state"] == "Up"


def test_bad_tls_settings_fail_the_plan_with_the_attribute_named(mtls_agent, pki, tmp_path, terraform_core):
    tf = Terraform(tmp_path, endpoint=mtls_agent.tcp, core=terraform_core)
    tf.write(CONFIG)
    mismatched = tf.run("plan", "-input=false", "-no-color", *creds(pki, "admin", key_of="viewer"), check=False)
    assert mismatched.code == 1 and "key_file is not the private key of cert_file" in text(mismatched)
    missing = tf.run("plan", "-input=false", "-no-color", "-var", f"ca={tmp_path / 'nope.pem'}", "-var", "cert=",
                     "-var", "key=", check=False)
    assert missing.code == 1 and "cannot read it: No such file or directory" in text(missing)
    other_ca = tf.run("plan", "-input=false", "-no-color", "-var", f"ca={pki / 'ca.pem'}",
                      "-var", f"cert={pki / 'other' / 'client-admin.pem'}",
                      "-var", f"key={pki / 'other' / 'client-admin-key.pem'}", check=False)
    assert other_ca.code == 1 and "closed the connection" in text(other_ca)
    assert mtls_agent.client.list_gateways() == []
