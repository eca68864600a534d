"""`egress-provider-mirror`: install this provider into a local filesystem mirror so `terraform init` works offline.

Terraform's *unpacked* mirror layout is

    DIR/registry.terraform.io/egressnat/egress/VERSION/OS_ARCH/terraform-provider-egress_vVERSION

The file installed there is a two-line launcher that execs this environment's
`terraform-provider-egress`. Its content depends only on that path, so the
hash Terraform records in .terraform.lock.hcl stays valid while the Python
code changes underneath (reinstalling gives the same bytes).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path

from egress_provider.provider import FULL_NAME, SOURCE

EXECUTABLE = "terraform-provider-egress"


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("egress")
    except PackageNotFoundError:
        return "0.0.0"


def platform_name() -> str:
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    if arch is None:
        raise SystemExit(f"egress-provider-mirror: unsupported machine {platform.machine()!r}")
    return f"{sys.platform}_{arch}"


def default_dir() -> Path:
    """Terraform's own implied local mirror on Linux, so init finds it even without the printed CLI config."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "terraform" / "plugins"


def plugin_executable() -> Path:
    found = Path(sys.executable).parent / EXECUTABLE
    if not found.exists():
        which = shutil.which(EXECUTABLE)
        if which is None:
            raise SystemExit(f"egress-provider-mirror: {EXECUTABLE} is not installed (pip install the egress project)")
        found = Path(which)
    return found.resolve()


def install(mirror_dir: Path) -> Path:
    """Write the launcher into `mirror_dir`; returns its path."""
    ver = version()
    target = mirror_dir / FULL_NAME / ver / platform_name() / f"{EXECUTABLE}_v{ver}"
    target.parent.mkdir(parents=True, exist_ok=True)
    launcher = f"#!/bin/sh\nexec {shlex.quote(str(plugin_executable()))} \"$@\"\n"
    if not target.exists() or target.read_text() != launcher:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(launcher)
        tmp.chmod(0o755)
        tmp.replace(target)
    return target


def cli_config(mirror_dir: Path) -> str:
    return f"""\
provider_installation {{
  filesystem_mirror {{
    path    = "{mirror_dir}"
    include = ["{FULL_NAME}"]
  }}
  direct {{
    exclude = ["{FULL_NAME}"]
  }}
}}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="egress-provider-mirror",
        description=f"Install the {SOURCE} Terraform provider into a local filesystem mirror and print the "
        "Terraform CLI configuration that uses it.",
    )
    ap.add_argument("--dir", type=Path, default=None, help=f"mirror directory (default: {default_dir()})")
    args = ap.parse_args(argv)
    mirror_dir = (args.dir or default_dir()).expanduser().resolve()
    path = install(mirror_dir)
    print(f"# installed {path}", file=sys.stderr)
    print(
        "# Put this in your Terraform CLI config (~/.terraformrc, or a file named by TF_CLI_CONFIG_FILE),\n"
        "# then run `terraform init` as usual:",
        file=sys.stderr,
    )
    sys.stdout.write(cli_config(mirror_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
