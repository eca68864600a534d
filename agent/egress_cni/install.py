"""Puts egress-cni into a node's CNI chain: the plugin binary into the runtime's CNI bin dir, and
`{"type": "egress", ...}` as the last plugin of the network configuration the runtime uses.

    python -m egress_cni.install --conf-dir /etc/cni/net.d --bin-dir /opt/cni/bin \\
        --plugin /opt/egress/cni/egress [--failure-policy closed] [--every 10] [--uninstall]

The configuration the runtime uses is the first file of --conf-dir, in lexical order, ending in
.conf, .conflist or .json (how libcni, and so containerd and CRI-O, pick one). It must be a
conflist -- a file with a "plugins" list, which every common main plugin writes; a single-plugin
.conf cannot be chained and is refused with an error. Patching is idempotent: an egress entry
already in the chain is replaced and moved last, and a file that would not change is not rewritten.
Files are replaced atomically (write a temporary file, then rename), so the runtime never reads
half a file. `--every S` repeats the install every S seconds, so the chain is restored when the
main plugin's own installer rewrites its file; `--uninstall` takes egress out of the chain again.

This module uses only the standard library: it runs in an init container before anything else.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

PLUGIN_TYPE = "egress"
CONF_EXTENSIONS = (".conf", ".conflist", ".json")  # libcni's ConfFiles, in this order of preference
DEFAULT_PLUGIN_BINARY = "/opt/egress/cni/egress"  # where the image puts the PyInstaller bundle of egress-cni


class InstallError(Exception):
    """Something an operator has to fix; the message says what."""


def egress_plugin(agent_socket: str = "/run/egress/inventory.sock", failure_policy: str = "closed") -> dict:
    """The conflist entry for egress-cni."""
    return {"type": PLUGIN_TYPE, "agentSocket": agent_socket, "failurePolicy": failure_policy}


def _plugins(conflist: dict) -> list[dict]:
    plugins = conflist.get("plugins") if isinstance(conflist, dict) else None
    if not isinstance(plugins, list) or not all(isinstance(p, dict) and p.get("type") for p in plugins):
        raise InstallError('not a CNI conflist: expected "plugins", a list of objects that each have a "type"')
    return plugins


def patch_conflist(conflist: dict, plugin: dict) -> dict:
    """`conflist` with `plugin` as its last plugin; an entry of the same type is replaced, not repeated.

    Returns a new dict; the input is not changed. Patching the result again returns an equal dict.
    """
    if not isinstance(plugin, dict) or not plugin.get("type"):
        raise InstallError('the plugin to chain needs a "type"')
    others = [p for p in _plugins(conflist) if p["type"] != plugin["type"]]
    return {**conflist, "plugins": [*others, dict(plugin)]}


def unpatch_conflist(conflist: dict, plugin_type: str = PLUGIN_TYPE) -> dict:
    """`conflist` without plugins of `plugin_type`."""
    return {**conflist, "plugins": [p for p in _plugins(conflist) if p["type"] != plugin_type]}


def active_conf_file(conf_dir: Path) -> Path:
    """The network configuration file the container runtime uses: the first by name."""
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(CONF_EXTENSIONS))
    except FileNotFoundError:
        raise InstallError(f"{conf_dir} does not exist: is this a Kubernetes node with a CNI plugin?") from None
    if not names:
        raise InstallError(f"no CNI network configuration (*.conf, *.conflist, *.json) in {conf_dir}: "
                           "install the cluster's main CNI plugin first")
    return conf_dir / names[0]


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    # the temporary name ends in none of CONF_EXTENSIONS, so a runtime never loads it
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".egress-tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _read_conflist(path: Path) -> dict:
    try:
        conflist = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InstallError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(conflist, dict) or "plugins" not in conflist:
        raise InstallError(f"{path}: a single-plugin network configuration cannot be chained; egress needs "
                           'a conflist (a "plugins" list) -- configure the main CNI plugin to write one')
    try:
        _plugins(conflist)
    except InstallError as err:
        raise InstallError(f"{path}: {err}") from None
    return conflist


def install_conflist(conf_dir: Path, plugin: dict, conf_file: Optional[str] = None) -> tuple[Path, bool]:
    """Chains `plugin` last in the active conflist of `conf_dir`; returns (file, whether it changed)."""
    path = conf_dir / conf_file if conf_file else active_conf_file(conf_dir)
    conflist = _read_conflist(path)
    patched = patch_conflist(conflist, plugin)
    if patched == conflist:
        return path, False
    _write_atomically(path, (json.dumps(patched, indent=2) + "\n").encode(), path.stat().st_mode & 0o777)
    return path, True


def uninstall_conflist(conf_dir: Path, conf_file: Optional[str] = None) -> tuple[Path, bool]:
    path = conf_dir / conf_file if conf_file else active_conf_file(conf_dir)
    conflist = _read_conflist(path)
    cleaned = unpatch_conflist(conflist)
    if cleaned == conflist:
        return path, False
    _write_atomically(path, (json.dumps(cleaned, indent=2) + "\n").encode(), path.stat().st_mode & 0o777)
    return path, True


def install_binary(source: Path, bin_dir: Path) -> tuple[Path, bool]:
    """Puts the plugin into BIN_DIR as `egress` (the conflist's "type"); an unchanged plugin is not rewritten.

    `source` is an executable file, copied as BIN_DIR/egress, or a bundle directory holding an
    executable named `egress` (PyInstaller's --onedir output: the image builds that, because a
    --onefile build unpacks itself at every start, ~300 ms of CPU per pod where the bundle takes
    ~80 ms; bench numbers in docs/cni.md). A bundle is copied to BIN_DIR/.egress-<digest>/ and
    BIN_DIR/egress becomes a symlink to its executable, swapped atomically; the previous bundle
    is kept (a runtime may be running it right now), older ones are removed.
    """
    target = bin_dir / PLUGIN_TYPE
    if source.is_dir():
        return _install_bundle(source, bin_dir, target)
    try:
        data = source.read_bytes()
    except OSError as err:
        raise InstallError(f"plugin executable {source}: {err.strerror}") from None
    if target.is_file() and not target.is_symlink() and target.read_bytes() == data and os.access(target, os.X_OK):
        return target, False
    bin_dir.mkdir(parents=True, exist_ok=True)
    # never written in place: a runtime may be executing the old binary right now
    _write_atomically(target, data, 0o755)
    _remove_bundles(bin_dir, keep=())
    return target, True


def _bundle_digest(source: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _install_bundle(source: Path, bin_dir: Path, target: Path) -> tuple[Path, bool]:
    if not (source / PLUGIN_TYPE).is_file():
        raise InstallError(f"plugin bundle {source}: no executable named {PLUGIN_TYPE} in it")
    try:
        bundle = bin_dir / f".{PLUGIN_TYPE}-{_bundle_digest(source)}"
    except OSError as err:
        raise InstallError(f"plugin bundle {source}: {err.strerror}") from None
    link = os.path.join(bundle.name, PLUGIN_TYPE)
    if target.is_symlink() and os.readlink(target) == link and (bundle / PLUGIN_TYPE).is_file():
        return target, False
    previous = os.readlink(target).split("/")[0] if target.is_symlink() else None
    bin_dir.mkdir(parents=True, exist_ok=True)
    if not bundle.is_dir():
        staging = Path(tempfile.mkdtemp(dir=bin_dir, prefix=f".{PLUGIN_TYPE}-staging-"))
        shutil.copytree(source, staging, symlinks=True, dirs_exist_ok=True)
        os.replace(staging, bundle)  # a bundle directory is complete or absent
    tmp = bin_dir / f".{PLUGIN_TYPE}.link.egress-tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(link, tmp)
    os.replace(tmp, target)  # atomic: a runtime execs the old plugin or the new one
    _remove_bundles(bin_dir, keep=(bundle.name, previous))
    return target, True


def _remove_bundles(bin_dir: Path, keep) -> None:
    for d in bin_dir.glob(f".{PLUGIN_TYPE}-*"):
        if d.is_dir() and d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)
def uninstall_binary(bin_dir: Path) -> tuple[Path, bool]:
    target = bin_dir / PLUGIN_TYPE
    if not (target.exists() or target.is_symlink()):
        return target, False
    target.unlink()
    _remove_bundles(bin_dir, keep=())
    return target, True


def run_once(args: argparse.Namespace) -> list[str]:
    """One install (or uninstall) pass; returns what changed, for the log."""
    conf_dir, bin_dir = Path(args.conf_dir), Path(args.bin_dir)
    changes = []
    if args.uninstall:
        # the chain first: a conflist naming a plugin that is gone would fail every pod
        for path, changed in (uninstall_conflist(conf_dir, args.conflist), uninstall_binary(bin_dir)):
            changes += [f"removed egress from {path}"] if changed else []
        return changes
    # the binary first: a conflist naming a plugin that is not there yet would fail every pod
    target, changed = install_binary(Path(args.plugin), bin_dir)
    changes += [f"installed {target}"] if changed else []
    path, changed = install_conflist(conf_dir, egress_plugin(args.agent_socket, args.failure_policy), args.conflist)
    changes += [f"chained egress last in {path}"] if changed else []
    return changes


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m egress_cni.install",
                                 description="chain egress-cni into this node's CNI configuration")
    ap.add_argument("--conf-dir", default="/etc/cni/net.d", help="the runtime's CNI config dir (default %(default)s)")
    ap.add_argument("--bin-dir", default="/opt/cni/bin", help="the runtime's CNI bin dir (default %(default)s)")
    ap.add_argument("--plugin", default=DEFAULT_PLUGIN_BINARY,
                    help="the egress-cni executable, or a bundle directory with an executable named egress, "
                    "to install as BIN_DIR/egress (default %(default)s)")
    ap.add_argument("--conflist", help="patch this file of --conf-dir (default: the one the runtime uses)")
    ap.add_argument("--agent-socket", default="/run/egress/inventory.sock", help="agentSocket (default %(default)s)")
    ap.add_argument("--failure-policy", choices=("closed", "open"), default="closed",
                    help="failurePolicy: closed keeps a pod from starting when its egress cannot be set up")
    ap.add_argument("--every", type=float, default=0, metavar="S",
                    help="repeat every S seconds (restores the chain when the main plugin rewrites its file)")
    ap.add_argument("--uninstall", action="store_true", help="take egress out of the chain and remove the binary")
    args = ap.parse_args(argv)

    while True:
        try:
            for change in run_once(args):
                print(f"egress-cni install: {change}", flush=True)
        except (InstallError, OSError) as err:
            print(f"egress-cni install: {err}", file=sys.stderr, flush=True)
            if not args.every:
                return 1
        if not args.every:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
