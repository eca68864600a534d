"""The lab's container-runtime side of CNI: run a conflist's plugins exactly as a runtime does.

Each node's chain is Debian's `containernetworking-plugins` (`ptp`, or `bridge`,
with `host-local` IPAM) followed by `egress-cni`:

    {"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [
       {"type": "ptp", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]], ...}},
       {"type": "egress", "agentSocket": "<run dir>/agents/worker1-inventory.sock", "failurePolicy": "closed"}]}

ADD runs the plugins in order, each with the previous one's result as
`prevResult`; DEL runs them in reverse with the cached ADD result (as libcni
does). Every plugin is exec'd inside the node's network namespace with
CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH,
its netconf on stdin. Labels travel as `args.cni.labels` (CNI conventions),
since the lab has no Kubernetes API for the agent to watch.
"""

from __future__ import annotations

import ipaddress
import json
import os
import resource
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

from egress_cni.main import install_plugin

from . import netns, topology as T

DEBIAN_PLUGINS = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
NETWORK = "k8s-pod-network"
VERSION = "1.0.0"
MAIN_PLUGINS = ("ptp", "bridge")
BRIDGE = "cni0"


class CniFailed(RuntimeError):
    """A plugin returned a CNI error object: its code and message."""


def plugin_dir() -> Path:
    """CNI_PATH of the lab: the Debian plugins it uses, and `egress` installed by egress-cni's own installer."""
    d = T.run_dir() / "cni" / "bin"
    if not (d / "egress").exists():
        d.mkdir(parents=True, exist_ok=True)
        for name in ("ptp", "bridge", "host-local", "loopback"):
            src = DEBIAN_PLUGINS / name
            if not src.exists():
                raise RuntimeError(f"{src} is missing: install Debian's containernetworking-plugins (scripts/setup)")
            link = d / name
            if not link.exists():
                link.symlink_to(src)
        install_plugin(str(d))
    return d


def conflist(spec: T.NodeSpec, main: str = "ptp", failure_policy: str = "closed") -> dict[str, Any]:
    if main not in MAIN_PLUGINS:
        raise ValueError(f"main CNI plugin {main!r}: the lab uses one of {', '.join(MAIN_PLUGINS)}")
    net = ipaddress.ip_network(spec.pod_cidr)
    ipam = {
        "type": "host-local",
        # .1 is the pods' gateway on the node; every node keeps its own allocations.
        "ranges": [[{"subnet": spec.pod_cidr, "rangeStart": str(net.network_address + 2)}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": str(T.run_dir() / "cni" / spec.name / "ipam"),
    }
    first = {"type": "ptp", "mtu": 1500, "ipam": ipam} if main == "ptp" else \
        {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": False, "ipam": ipam}
    return {
        "cniVersion": VERSION,
        "name": NETWORK,
        "plugins": [
            first,
            {"type": "egress", "agentSocket": str(T.inventory_socket(spec.name)), "failurePolicy": failure_policy},
        ],
    }


def _result_path(container_id: str) -> Path:
    return T.run_dir() / "cni" / "results" / f"{NETWORK}-{container_id}.json"


def _env(command: str, container_id: str, pod_ns: str, namespace: str, pod: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": f"/run/netns/{pod_ns}",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};"
                    f"K8S_POD_INFRA_CONTAINER_ID={container_id}",
        "CNI_PATH": str(plugin_dir()),
    })
    return env


def _exec(spec: T.NodeSpec, conf: dict, env: dict[str, str]) -> Optional[dict]:
    exe = plugin_dir() / conf["type"]
    res = subprocess.run(netns.argv_in(spec.netns, [str(exe)]), input=json.dumps(conf), capture_output=True,
                         text=True, env=env, timeout=60)
    out = json.loads(res.stdout) if res.stdout.strip() else None
    if res.returncode != 0:
        msg = out.get("msg", "") if isinstance(out, dict) else res.stderr.strip()
        code = out.get("code", "?") if isinstance(out, dict) else "?"
        raise CniFailed(f"CNI {env['CNI_COMMAND']} of plugin {conf['type']} failed (code {code}): {msg}")
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _plugin_conf(chain: dict, plugin: dict, prev: Optional[dict]) -> dict:
    conf = {**plugin, "name": chain["name"], "cniVersion": chain["cniVersion"]}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def add(spec: T.NodeSpec, chain: dict, container_id: str, pod_ns: str, namespace: str, pod: str,
        labels: dict[str, str], timings: Optional[dict[str, float]] = None) -> dict:
    """Run ADD through the chain; returns the final result (cached for DEL). On failure, DELs what was added.

    `timings`, when given, gets each plugin's (wall, CPU) time in seconds (bench/pod_start.py)."""
    env = _env("ADD", container_id, pod_ns, namespace, pod)
    result: Optional[dict] = None
    try:
        for plugin in chain["plugins"]:
            conf = _plugin_conf(chain, plugin, result)
            if plugin["type"] == "egress" and labels:
                conf["args"] = {"cni": {"labels": [{"key": k, "value": v} for k, v in sorted(labels.items())]}}
            started, cpu = time.perf_counter(), _children_cpu()
            result = _exec(spec, conf, env)
            if timings is not None:
                timings[plugin["type"]] = (time.perf_counter() - started, _children_cpu() - cpu)
    except BaseException:
        delete(spec, chain, container_id, pod_ns, namespace, pod, result)
        raise
    assert result is not None
    path = _result_path(container_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def delete(spec: T.NodeSpec, chain: dict, container_id: str, pod_ns: str, namespace: str, pod: str,
           prev: Optional[dict] = None) -> None:
    """Run DEL through the chain in reverse (idempotent: every plugin tolerates what is already gone)."""
    path = _result_path(container_id)
    if prev is None and path.exists():
        prev = json.loads(path.read_text())
    env = _env("DEL", container_id, pod_ns, namespace, pod)
    errors = []
    for plugin in reversed(chain["plugins"]):
        try:
            _exec(spec, _plugin_conf(chain, plugin, prev), env)
        except CniFailed as err:
            errors.append(str(err))
    path.unlink(missing_ok=True)
    if errors:
        raise CniFailed("; ".join(errors))


def check(spec: T.NodeSpec, chain: dict, container_id: str, pod_ns: str, namespace: str, pod: str) -> None:
    """Run CHECK through the chain with the cached ADD result (as a runtime does); raises CniFailed."""
    prev = json.loads(_result_path(container_id).read_text())
    env = _env("CHECK", container_id, pod_ns, namespace, pod)
    for plugin in chain["plugins"]:
        _exec(spec, _plugin_conf(chain, plugin, prev), env)


def pod_ip(result: dict) -> str:
    return str(ipaddress.ip_interface(result["ips"][0]["address"]).ip)


def host_interface(result: dict) -> str:
    """The pod's host-side interface in a main plugin's result (not in the sandbox, not the bridge)."""
    names = [i["name"] for i in result.get("interfaces", []) if not i.get("sandbox") and i.get("name") != BRIDGE]
    return names[-1] if names else ""
