"""`egress-provider-mirror`: install this provider into a local filesystem mirror so `terraform init` works offline.

Terraform's *unpacked* mirror layout is one directory per provider package:

    DIR/registry.terraform.io/egressnat/egress/VERSION/OS_ARCH/
        terraform-provider-egress_vVERSION     the executable Terraform starts (a launcher)
        lib/                                   the provider's code and every library it imports

The package is self-contained: `lib/` holds copies of egress_provider,
egress_api and their runtime dependencies (tf, grpcio, protobuf, pydantic,
...), byte-compiled, and the launcher runs them with the base Python
interpreter in isolated mode. So

- the `h1:` hash Terraform records in .terraform.lock.hcl covers the
  provider's real code: reinstalling after a code change gives a different
  hash, and `terraform init` against the old lock file refuses it;
- nothing points back into the virtualenv it was installed from: the mirror
  keeps working when that venv moves or is deleted (only the interpreter,
  e.g. /usr/bin/python3.11, must stay).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.metadata as metadata
import importlib.util
import os
import platform
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Iterator

from egress_provider.provider import FULL_NAME, SOURCE

EXECUTABLE = "terraform-provider-egress"
# Our packages the plugin imports, and the distributions they import at run time (with their own
# requirements, resolved below). The agent's own dependencies (pyroute2, etcd3gw, ...) are not needed.
OWN_PACKAGES = ("egress_provider", "egress_api")
RUNTIME_DISTRIBUTIONS = ("tf", "grpcio", "protobuf", "pydantic", "msgpack", "cryptography")


def version() -> str:
    try:
        return metadata.version("egress")
    except metadata.PackageNotFoundError:
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


def base_interpreter() -> Path:
    """The Python the venv was made from: it stays where it is when the venv moves."""
    exe = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    return exe


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_distributions() -> list[metadata.Distribution]:
    """RUNTIME_DISTRIBUTIONS and everything they require here (markers evaluated, extras skipped)."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = list(RUNTIME_DISTRIBUTIONS)
    while todo:
        name = _canonical(todo.pop())
        if name in found:
            continue
        dist = metadata.distribution(name)
        found[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(found.values(), key=lambda d: _canonical(d.metadata["Name"]))


def _distribution_files(dist: metadata.Distribution) -> Iterator[tuple[Path, Path]]:
    """(source, path relative to site-packages) of a distribution's installed files, scripts and caches left out."""
    for f in dist.files or []:
        rel = Path(str(f))
        if ".." in rel.parts or "__pycache__" in rel.parts or rel.suffix == ".pyc":
            continue
        yield Path(dist.locate_file(f)), rel


def _package_files(package: str) -> Iterator[tuple[Path, Path]]:
    """Our own package's files as imported now (an editable install's source tree included)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"egress-provider-mirror: cannot find the {package} package")
    root = Path(list(spec.submodule_search_locations)[0])
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path, Path(package) / path.relative_to(root)


def launcher(interpreter: Path, ver: str, origin: str) -> str:
    return f"""#!/bin/sh
# {SOURCE} provider {ver}, installed by egress-provider-mirror from {origin}.
# Its code and libraries are in lib/ next to this file (covered by the lock file's h1: hash);
# nothing here refers back to that environment.
here=$(dirname "$0")
exec {shlex.quote(str(interpreter))} -I -S -B -c 'import sys; sys.path[:0] = [sys.argv.pop(1)]; from egress_provider.main import main; main()' "$here/lib" "$@"
"""


def install(mirror_dir: Path) -> Path:
    """Write the provider package into `mirror_dir` (replacing one of the same version); returns the launcher."""
    ver = version()
    package_dir = mirror_dir / FULL_NAME / ver / platform_name()
    staging = package_dir.with_name(package_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    lib = staging / "lib"
    files = [f for p in OWN_PACKAGES for f in _package_files(p)]
    files += [f for d in runtime_distributions() for f in _distribution_files(d)]
    for src, rel in files:
        dst = lib / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)
    # Byte-compiled once here (checked by hash, not mtime, so copies stay valid): the plugin starts
    # fast, and -B keeps it from writing caches into the hashed package directory.
    compileall.compile_dir(lib, quiet=2, invalidation_mode=compileall.py_compile.PycInvalidationMode.UNCHECKED_HASH,
                           workers=0)
    exe = staging / f"{EXECUTABLE}_v{ver}"
    exe.write_text(launcher(base_interpreter(), ver, sys.prefix))
    exe.chmod(0o755)
    shutil.rmtree(package_dir, ignore_errors=True)
    staging.replace(package_dir)
    return package_dir / exe.name


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
        description=f"Install the {SOURCE} Terraform provider (self-contained: its code and libraries) into a "
        "local filesystem mirror and print the Terraform CLI configuration that uses it.",
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
