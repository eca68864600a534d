"""egress_cni.install: chaining egress last into the conflists that common main plugins write.

The files in cni_conf/ have the shapes containerd's bridge example, flannel, Calico and a ptp
setup install in /etc/cni/net.d (mynet.conf is a single-plugin configuration).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egress_cni.install import InstallError, egress_plugin, main, patch_conflist, unpatch_conflist

CONF = Path(__file__).parent / "cni_conf"
CONFLISTS = sorted(CONF.glob("*.conflist"))
EGRESS = {"type": "egress", "agentSocket": "/run/egress/inventory.sock", "failurePolicy": "closed"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", CONFLISTS, ids=[p.stem for p in CONFLISTS])
def test_egress_goes_last_and_nothing_else_changes(path):
    original = load(path)
    patched = patch_conflist(original, EGRESS)
    assert patched["plugins"] == original["plugins"] + [EGRESS]
    assert {k: v for k, v in patched.items() if k != "plugins"} == \
        {k: v for k, v in original.items() if k != "plugins"}
    assert patch_conflist(patched, EGRESS) == patched  # idempotent
    assert original == load(path)  # the input is not changed
    assert unpatch_conflist(patched) == original


def test_an_egress_entry_already_in_the_chain_is_replaced_and_moved_last():
    conflist = load(CONF / "calico.conflist")
    stale = {"type": "egress", "agentSocket": "/var/run/old.sock", "failurePolicy": "open"}
    conflist["plugins"].insert(1, stale)
    patched = patch_conflist(conflist, EGRESS)
    assert [p["type"] for p in patched["plugins"]] == ["calico", "portmap", "bandwidth", "egress"]
    assert patched["plugins"][-1] == EGRESS
    assert egress_plugin() == EGRESS


@pytest.mark.parametrize("bad", [load(CONF / "mynet.conf"), {"plugins": "bridge"}, {"plugins": [{"bridge": "x"}]}, []])
def test_what_is_not_a_conflist_is_refused(bad):
    with pytest.raises(InstallError, match="not a CNI conflist"):
        patch_conflist(bad, EGRESS)


@pytest.fixture
def node(tmp_path):
    """A node's /etc/cni/net.d (flannel's conflist first, a loopback .conf after it) and /opt/cni/bin."""
    conf_dir, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    conf_dir.mkdir()
    bin_dir.mkdir()
    shutil.copy(CONF / "flannel.conflist", conf_dir / "10-flannel.conflist")
    (conf_dir / "99-loopback.conf").write_text('{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}')
    plugin = tmp_path / "egress-cni"
    plugin.write_text("#!/bin/sh\necho egress-cni\n")
    args = ["--conf-dir", str(conf_dir), "--bin-dir", str(bin_dir), "--plugin", str(plugin)]
    return conf_dir, bin_dir, args


def test_cli_installs_binary_and_chain_once(node, capsys):
    conf_dir, bin_dir, args = node
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"installed {bin_dir / 'egress'}" in out and "chained egress last in" in out
    conflist = load(conf_dir / "10-flannel.conflist")
    assert [p["type"] for p in conflist["plugins"]] == ["flannel", "portmap", "egress"]
    assert conflist["plugins"][-1] == EGRESS
    assert (bin_dir / "egress").read_text() == "#!/bin/sh\necho egress-cni\n"
    assert os.stat(bin_dir / "egress").st_mode & 0o777 == 0o755
    assert load(conf_dir / "99-loopback.conf")["type"] == "loopback"  # not the file the runtime uses

    stamps = [os.stat(p).st_mtime_ns for p in (conf_dir / "10-flannel.conflist", bin_dir / "egress")]
    assert main(args) == 0  # again: nothing to do, nothing rewritten
    assert capsys.readouterr().out == ""
    assert [os.stat(p).st_mtime_ns for p in (conf_dir / "10-flannel.conflist", bin_dir / "egress")] == stamps
    assert sorted(os.listdir(conf_dir)) == ["10-flannel.conflist", "99-loopback.conf"]  # no temporary files


def test_cli_options_reach_the_chain_and_uninstall_restores_it(node):
    conf_dir, bin_dir, args = node
    assert main(args + ["--failure-policy", "open", "--agent-socket", "/run/e/a.sock"]) == 0
    assert load(conf_dir / "10-flannel.conflist")["plugins"][-1] == \
        {"type": "egress", "agentSocket": "/run/e/a.sock", "failurePolicy": "open"}
    assert main(args + ["--uninstall"]) == 0
    assert load(conf_dir / "10-flannel.conflist") == load(CONF / "flannel.conflist")
    assert not (bin_dir / "egress").exists()


def test_cli_refuses_a_single_plugin_conf_and_changes_nothing(node, capsys):
    conf_dir, bin_dir, args = node
    shutil.copy(CONF / "mynet.conf", conf_dir / "05-mynet.conf")  # now the runtime's choice
    before = {p.name: p.read_bytes() for p in conf_dir.iterdir()}
    assert main(args) == 1
    assert "05-mynet.conf: a single-plugin network configuration cannot be chained" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in conf_dir.iterdir()} == before


def test_cli_without_a_main_plugin_says_so(tmp_path, capsys):
    (tmp_path / "net.d").mkdir()
    plugin = tmp_path / "p"
    plugin.write_text("x")
    assert main(["--conf-dir", str(tmp_path / "net.d"), "--bin-dir", str(tmp_path / "bin"),
                 "--plugin", str(plugin)]) == 1
    assert "install the cluster's main CNI plugin first" in capsys.readouterr().err


def test_every_restores_the_chain_when_the_main_plugin_rewrites_its_file(node):
    conf_dir, _, args = node
    keeper = subprocess.Popen([sys.executable, "-m", "egress_cni.install", *args, "--every", "0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        target = conf_dir / "10-flannel.conflist"

        def chained() -> bool:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if load(target)["plugins"][-1] == EGRESS:
                    return True
                time.sleep(0.05)
            return False

        assert chained()
        shutil.copy(CONF / "flannel.conflist", target)  # flannel's installer puts its own file back
        assert chained()
    finally:
        keeper.terminate()
        keeper.wait(timeout=10)


def _bundle(path, version: str):
    """A PyInstaller --onedir-shaped bundle: an executable `egress` and its `_internal` directory."""
    (path / "_internal").mkdir(parents=True)
    (path / "_internal" / "lib.txt").write_text(version)
    (path / "egress").write_text(f"#!/bin/sh\necho {version}\n")
    os.chmod(path / "egress", 0o755)
    return path


def test_a_bundle_is_installed_beside_the_chain_and_swapped_atomically(node, tmp_path):
    conf_dir, bin_dir, args = node
    args = args[:-1] + [str(_bundle(tmp_path / "v1", "v1"))]
    assert main(args) == 0
    target = bin_dir / "egress"
    assert target.is_symlink() and subprocess.run([str(target)], capture_output=True, text=True).stdout == "v1\n"
    first = os.readlink(target)
    assert main(args) == 0 and os.readlink(target) == first  # unchanged: nothing rewritten

    for v in ("v2", "v3"):
        assert main(args[:-1] + [str(_bundle(tmp_path / v, v))]) == 0
        assert subprocess.run([str(target)], capture_output=True, text=True).stdout == f"{v}\n"
    bundles = sorted(p.name for p in bin_dir.glob(".egress-*"))
    assert len(bundles) == 2  # the current one and the one before it (a runtime may still run it)
    assert os.readlink(target).split("/")[0] in bundles

    assert main(args + ["--uninstall"]) == 0
    assert not target.exists() and not target.is_symlink() and list(bin_dir.glob(".egress-*")) == []


def test_a_bundle_without_its_executable_is_refused(node, tmp_path, capsys):
    conf_dir, bin_dir, args = node
    (tmp_path / "empty").mkdir()
    assert main(args[:-1] + [str(tmp_path / "empty")]) == 1
    assert "no executable named egress" in capsys.readouterr().err
    assert list(bin_dir.iterdir()) == []
