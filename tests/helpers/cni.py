"""Invoke `egress-cni` exactly as a container runtime does: exec with CNI_* variables, the netconf on stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

BIN = Path(sys.executable).parent


def plugin_command() -> list[str]:
    exe = BIN / "egress-cni"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "egress_cni"]


@dataclass
class CniResult:
    status: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error_code(self) -> Optional[int]:
        return self.json.get("code") if self.status != 0 else None


def invoke(
    command: str,
    conf: dict | str | None,
    container_id: str = "c0ffee",
    netns: str = "/run/netns/pod",
    ifname: str = "eth0",
    args: str = "",
    env: Optional[dict[str, str]] = None,
    timeout: float = 30,
) -> CniResult:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    base.update({"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
                 "CNI_ARGS": args, "CNI_PATH": str(BIN)})
    base.update(env or {})
    stdin = conf if isinstance(conf, str) else json.dumps(conf) if conf is not None else ""
    res = subprocess.run(plugin_command(), input=stdin, capture_output=True, text=True, env=base, timeout=timeout)
    return CniResult(res.returncode, res.stdout, res.stderr)


def k8s_args(namespace: str, name: str, uid: str = "") -> str:
    parts = ["IgnoreUnknown=1", f"K8S_POD_NAMESPACE={namespace}", f"K8S_POD_NAME={name}",
             "K8S_POD_INFRA_CONTAINER_ID=c0ffee"]
    if uid:
        parts.append(f"K8S_POD_UID={uid}")
    return ";".join(parts)


def ptp_result(ip: str, host_if: str, version: str = "1.0.0", netns: str = "/run/netns/pod") -> dict:
    """A prevResult shaped like the ptp plugin's (host veth without sandbox, eth0 in the sandbox)."""
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": host_if, "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": netns},
        ],
        "ips": [{"address": f"{ip}/24", "gateway": "10.244.1.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }


def egress_conf(socket: str, prev: Optional[dict] = None, version: str = "1.0.0", **extra) -> dict:
    conf = {"cniVersion": version, "name": "k8s-pod-network", "type": "egress", "agentSocket": socket, **extra}
    if prev is not None:
        conf["prevResult"] = prev
    return conf
