"""`egress-provider-mirror`: a self-contained provider package, real offline `terraform init`, a lock that means something."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import egress_provider
from helpers.terraform import Terraform, TerraformCore

pytestmark = pytest.mark.terraform

MIRROR = Path(sys.executable).parent / "egress-provider-mirror"
GATEWAY = 'resource "egress_gateway" "gw" {\n  floating_ips = ["192.0.2.100"]\n}\n'
SOURCE_TREE = Path(egress_provider.__file__).resolve().parents[1]  # provider/ (editable install)


def install(mirror: Path, env: dict | None = None) -> str:
    """Run egress-provider-mirror; returns the CLI config it prints."""
    res = subprocess.run([str(MIRROR), "--dir", str(mirror)], capture_output=True, text=True, check=True,
                         timeout=300, env=env)
    return res.stdout


def locked_hashes(tf: Terraform) -> set[str]:
    return set(re.findall(r'"(h1:[^"]+)"', (tf.dir / ".terraform.lock.hcl").read_text()))


def test_mirror_install_then_offline_init(agent_process, tmp_path):
    mirror = tmp_path / "mirror"
    cli_config = install(mirror)
    assert f'path    = "{mirror}"' in cli_config and "exclude" in cli_config
    launchers = list(mirror.glob("registry.terraform.io/egressnat/egress/*/linux_*/terraform-provider-egress_v*"))
    assert len(launchers) == 1 and launchers[0].stat().st_mode & 0o111
    package = launchers[0].parent
    # The package carries the provider's code and its libraries; the launcher does not point into the venv.
    assert (package / "lib/egress_provider/framework/protocol.py").is_file()
    assert (package / "lib/tf/provider.py").is_file() and (package / "lib/grpc").is_dir()
    command = [ln for ln in launchers[0].read_text().splitlines() if ln.startswith("exec ")]
    assert len(command) == 1 and sys.prefix not in command[0]  # (a comment records where it came from)

    # The printed config as the only CLI config; "direct" excludes us, so nothing is fetched from a registry.
    tf = Terraform(tmp_path, endpoint=agent_process.endpoint, cli_config=cli_config)
    tf.write(GATEWAY)
    init = tf.run("init", "-input=false", "-no-color")
    assert "Installing egressnat/egress v" in init.stdout
    assert "Terraform has been successfully initialized!" in init.stdout
    lock = (tf.dir / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/egressnat/egress"' in lock and len(locked_hashes(tf)) == 1

    plan = tf.plan()
    assert plan.actions("egress_gateway.gw") == ["create"]

    # Reinstalling the same code gives the same package: the lock file stays valid.
    install(mirror)
    tf.run("init", "-input=false", "-no-color")


def test_lock_hash_changes_when_the_code_changes(agent_process, tmp_path):
    mirror = tmp_path / "mirror"
    cli_config = install(mirror)
    tf = Terraform(tmp_path, endpoint=agent_process.endpoint, cli_config=cli_config)
    tf.write(GATEWAY)
    tf.run("init", "-input=false", "-no-color")
    before = locked_hashes(tf)

    # The same version of the provider with one changed line of code (a copy first on the import path).
    changed = tmp_path / "changed-src"
    shutil.copytree(SOURCE_TREE / "egress_provider", changed / "egress_provider",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(changed / "egress_provider/main.py", "a") as f:
        f.write("# a change\n")
    install(mirror, env={**os.environ, "PYTHONPATH": str(changed)})
    installed = next(mirror.glob("registry.terraform.io/egressnat/egress/*/linux_*/lib/egress_provider/main.py"))
    assert installed.read_text().endswith("# a change\n")

    refused = tf.run("init", "-input=false", "-no-color", check=False)
    assert refused.code == 1
    assert "doesn't match any of the checksums previously recorded in the dependency lock file" in \
        re.sub(r"\s+", " ", refused.output), refused.output
    (tf.dir / ".terraform.lock.hcl").unlink()  # the user accepts the new code (same version number)
    tf.run("init", "-input=false", "-no-color")
    after = locked_hashes(tf)
    assert after and after != before
    assert tf.plan().actions("egress_gateway.gw") == ["create"]


def test_mirror_survives_the_venv_moving(agent_process, tmp_path, terraform_core):
    if terraform_core.kind != "standalone":
        pytest.skip("hides the venv from Terraform: needs a Terraform that does not live in the venv")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to hide the venv in a private mount namespace")
    mirror = tmp_path / "mirror"
    cli_config = install(mirror)

    # Terraform in a mount namespace where the venv and the provider's source tree are empty directories:
    # as if both had moved away after `egress-provider-mirror` ran.
    hide = " && ".join(f"mount -t tmpfs tmpfs {d}" for d in (sys.prefix, SOURCE_TREE))
    hidden = TerraformCore(
        "standalone",
        ("unshare", "--mount", "--propagation", "private", "sh", "-c", f'{hide} && exec "$@"', "sh",
         *terraform_core.argv),
        terraform_core.version,
    )
    tf = Terraform(tmp_path, endpoint=agent_process.endpoint, cli_config=cli_config, core=hidden)
    tf.write(GATEWAY)
    assert tf.run("version").code == 0
    tf.run("init", "-input=false", "-no-color")
    assert tf.plan().actions("egress_gateway.gw") == ["create"]
    tf.apply_plan()
    assert [v.obj.name for v in agent_process.client.list_gateways()] == ["default"]
