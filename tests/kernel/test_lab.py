"""egress-lab itself, driven through its console script: idempotent up, complete down, root namespace untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

CLI = str(Path(sys.executable).with_name("egress-lab"))


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, check=True).stdout


def root_view() -> str:
    return sh("ip -4 addr; ip -4 route show table all; ip rule; nft list ruleset")


def test_up_is_idempotent_down_removes_everything_and_root_is_untouched(tmp_path):
    env = dict(os.environ, EGRESS_LAB_PREFIX="egu-", EGRESS_LAB_DIR=str(tmp_path / "run"))
    lab = lambda *a, check=True: subprocess.run([CLI, *a], env=env, capture_output=True, text=True, check=check)  # noqa: E731
    before = root_view()
    try:
        lab("up", "--workers", "2", "--masters", "1")
        lab("pod", "add", "web", "--node", "worker2", "--namespace", "alice", "--label", "role=frontend")
        snapshot = sh("ip netns exec egu-worker2 sh -c 'ip -4 addr; ip route; nft list ruleset'")
        assert lab("up", "--workers", "2", "--masters", "1").returncode == 0
        assert sh("ip netns exec egu-worker2 sh -c 'ip -4 addr; ip route; nft list ruleset'") == snapshot
        assert lab("whoami", "web").stdout.strip() == "192.0.2.12"  # default masquerade to the node IP
        assert lab("whoami", "web", "--dst", "203.0.113.10").stdout.strip() == "192.0.2.12"
        assert "10.244.2.2" in lab("exec", "web", "--", "ip", "-4", "addr").stdout
        assert "198.51.100.10" in lab("ext", "--", "ip", "-4", "addr").stdout
        status = lab("status").stdout
        assert "master1" in status and "192.0.2.13" in status and "web" in status
        wrong = lab("up", "--workers", "3", check=False)
        assert wrong.returncode != 0 and "egress-lab down" in wrong.stderr
        lab("node", "stop", "worker2")
        assert lab("whoami", "web", check=False).returncode != 0
        lab("node", "start", "worker2")
        assert lab("whoami", "web").stdout.strip() == "192.0.2.12"
        assert root_view() == before
    finally:
        lab("down", check=False)
    assert not [n for n in sh("ip netns list").split() if n.startswith("egu-")]
    assert not (tmp_path / "run" / "state.json").exists()
