"""`egress-provider-mirror`, then a real, offline `terraform init` from that mirror, then a plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.terraform import Terraform

pytestmark = pytest.mark.terraform

MIRROR = Path(sys.executable).parent / "egress-provider-mirror"


def test_mirror_install_then_offline_init(agent_process, tmp_path):
    mirror = tmp_path / "mirror"
    res = subprocess.run([str(MIRROR), "--dir", str(mirror)], capture_output=True, text=True, check=True, timeout=60)
    cli_config = res.stdout
    assert f'path    = "{mirror}"' in cli_config and "exclude" in cli_config
    launchers = list(mirror.glob("registry.terraform.io/egressnat/egress/*/linux_*/terraform-provider-egress_v*"))
    assert len(launchers) == 1 and launchers[0].stat().st_mode & 0o111
    first = launchers[0].read_bytes()

    # The printed config as the only CLI config; "direct" excludes us, so nothing is fetched from a registry.
    tf = Terraform(tmp_path, endpoint=agent_process.endpoint, cli_config=cli_config)
    tf.write('resource "egress_gateway" "gw" {\n  floating_ips = ["192.0.2.100"]\n}\n')
    init = tf.run("init", "-input=false", "-no-color")
    assert "Installing egressnat/egress v" in init.stdout
    assert "Terraform has been successfully initialized!" in init.stdout
    lock = (tf.dir / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/egressnat/egress"' in lock and '"h1:' in lock

    plan = tf.plan()
    assert plan.actions("egress_gateway.gw") == ["create"]

    # Reinstalling (e.g. after a code change) writes the same bytes: the lock file stays valid.
    subprocess.run([str(MIRROR), "--dir", str(mirror)], capture_output=True, check=True, timeout=60)
    assert launchers[0].read_bytes() == first
    tf.run("init", "-input=false", "-no-color")
