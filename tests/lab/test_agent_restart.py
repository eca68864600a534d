"""`egress-lab agent restart NODE [--kill]`: the rehearsal tool for agent restarts and upgrades."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from egress_lab import agents, labstate

pytestmark = pytest.mark.kernel

CLI = str(Path(sys.executable).with_name("egress-lab"))


@pytest.mark.parametrize("flag", [[], ["--kill"]], ids=["sigterm", "kill-9"])
def test_restart_replaces_the_agent_with_the_same_settings(clean_lab, flag):
    before = labstate.require().processes[agents.agent_key("worker2")]
    r = subprocess.run([CLI, "agent", "restart", "worker2", *flag], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "agent on worker2 restarted" in r.stdout and "healthy after" in r.stdout
    after = labstate.require().processes[agents.agent_key("worker2")]
    assert after != before and Path(f"/proc/{after}").exists()
    st = labstate.require()
    argv = agents.agent_argv(st, st.node("worker2"))
    running = Path(f"/proc/{after}/cmdline").read_bytes().split(b"\0")[:-1]  # [python,] egress-agent, flags...
    assert running[-(len(argv) - 1):] == [a.encode() for a in argv[1:]]  # the same flags
    with clean_lab.client("worker2") as c:
        assert c.health().status == "SERVING"
        assert {n.name: n.state for n in c.list_nodes()}["worker2"] == "Up"
