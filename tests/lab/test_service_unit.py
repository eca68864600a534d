"""deploy/systemd/egress-agent.service: systemd accepts it, and its capabilities are all the datapath needs.

No systemd runs as PID 1 here, so the unit is checked by `systemd-analyze verify` and the
capability set is checked for real: a lab node's agent runs under exactly the unit's
CapabilityBoundingSet (setpriv, as systemd applies it to a root service) and must program
steering, SNAT, the floating IP and its gratuitous ARP.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from egress_api import models
from egress_lab import agents, labstate
from helpers.agent_lab import eventually

FIP = "192.0.2.100"

pytestmark = pytest.mark.kernel

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "egress-agent.service"


def unit_setting(key: str) -> str:
    (value,) = re.findall(rf"^{key}=(.*)$", UNIT.read_text(), re.M)
    return value


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path):
    unit = tmp_path / UNIT.name  # ExecStart must exist: point it at this checkout's agent
    unit.write_text(UNIT.read_text().replace("/opt/egress/bin/egress-agent",
                                             str(Path(sys.executable).with_name("egress-agent"))))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def cap_mask(names: list[str]) -> int:
    numbers = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}
    return sum(1 << numbers[n] for n in names)


def test_the_units_capabilities_are_enough_for_the_datapath(clean_lab):
    caps = unit_setting("CapabilityBoundingSet").split()
    assert set(caps) == {"CAP_NET_ADMIN", "CAP_BPF", "CAP_NET_RAW"}
    st = labstate.require()
    spec = st.node("worker1")
    key = agents.agent_key("worker1")
    agents.kill(st, key, signal.SIGTERM)
    bounding = "-all," + ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
    argv = ["setpriv", "--bounding-set", bounding, "--inh-caps=-all", "--", *agents.agent_argv(st, spec)]
    try:
        agents.start_process(st, key, spec.netns, argv)
        labstate.save(st)
        agents.wait_healthy(st, [spec])
        pid = st.processes[key]
        status = Path(f"/proc/{pid}/status").read_text()
        effective = int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
        assert effective == cap_mask(caps), f"CapEff {effective:#x}"

        with clean_lab.client() as c:  # alice's frontends leave as 192.0.2.100, which worker1 takes (ties by name)
            c.create_gateway(models.Gateway(name="default", floating_ips=[FIP]))
            c.create_policy(models.Policy.model_validate({
                "name": "egress", "egress_source_ip": FIP, "destination_cidrs": ["198.51.100.0/24"],
                "egress": [{"namespace_selector": {"match_labels": {"user": "alice"}},
                            "pod_selector": {"match_labels": {"role": "frontend"}}}]}))
        eventually(lambda: clean_lab.holder(FIP), "worker1")
        eventually(lambda: clean_lab.seen_as("fe1"), FIP)
        log = agents.log_path("worker1").read_text(errors="replace")
        since = log.rfind("egress-agent 0.1.0 up")
        assert "ERROR" not in log[since:] and "Operation not permitted" not in log[since:]
    finally:
        agents.kill(st, key, signal.SIGTERM)
        labstate.save(st)
        clean_lab.node_start("worker1")  # back to the lab's own agent
