"""The lab's control plane: etcd on the etcd host, one `egress-agent` per node, and clients to them.

etcd (Debian's etcd-server) runs in the etcd host namespace at 192.0.2.250:
one member, or three (`--etcd-members 3`) so that faults can hang or kill one
while the cluster keeps its quorum. Each agent runs inside its node's
namespace with `--store etcd:... --datapath kernel --interface eth0` (every
member listed), so it programs only that node, and
serves its API on a unix socket under the lab run dir, which Terraform and
egressctl reach from the root namespace unchanged.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

from egress_api import errors
from egress_api.client import EgressClient

from . import netns, topology as T
from .labstate import LabState

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
AGENT_START_TIMEOUT = 60.0  # 4 agents compiling their eBPF program at once on 2 cores


def agent_key(node: str) -> str:
    return f"agent-{node}"


def agent_command() -> list[str]:
    exe = Path(sys.executable).with_name("egress-agent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "egress_agent.cmd.agent"]


def pki_dir() -> Path:
    """The lab's certificates (`egressctl certs init`): ca.pem, node-NAME.pem, client-{admin,viewer,inventory}.pem."""
    return T.run_dir() / "pki"


def ensure_pki(specs: list[T.NodeSpec]) -> None:
    """A CA and a certificate per node (its name and IP) and per client role, once per lab."""
    if (pki_dir() / "ca.pem").exists():
        return
    from egress_agent.cmd import certs

    certs.init(pki_dir(), [certs.NodeSpec(s.name, (s.ip,)) for s in specs],
               certs.parse_clients("admin,viewer,inventory"))


def write_agent_config(node: str, labels: Mapping[str, str]) -> None:
    """The agent's --config file (its node labels; every other setting is a flag), replaced atomically so a
    SIGHUP never reads half a file."""
    import yaml

    path = T.agent_config(node)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump({"node_labels": dict(sorted(labels.items()))}))
    os.replace(tmp, path)


def reload_agent(st: LabState, node: str) -> bool:
    """SIGHUP the node's agent (it re-reads its --config); False when it is not running."""
    if not running(st, agent_key(node)):
        return False
    os.kill(st.processes[agent_key(node)], signal.SIGHUP)
    return True


def agent_argv(st: LabState, spec: T.NodeSpec) -> list[str]:
    pki = pki_dir()
    return [
        *agent_command(),
        "--node", spec.name,
        "--role", spec.role,
        "--node-ip", spec.ip_with_prefix,
        "--pod-cidr", spec.pod_cidr,
        "--service-cidr", T.SERVICE_CIDR,
        "--interface", T.UPLINK,
        "--socket", str(T.agent_socket(spec.name)),
        "--inventory-socket", str(T.inventory_socket(spec.name)),
        "--listen", f"{spec.ip}:{T.AGENT_PORT}",
        # Mutual TLS on the node network, as in production; the lab's own clients use the unix socket.
        "--tls-cert", str(pki / f"node-{spec.name}.pem"), "--tls-key", str(pki / f"node-{spec.name}-key.pem"),
        "--tls-client-ca", str(pki / "ca.pem"),
        "--audit-log", str(T.run_dir() / "audit" / f"{spec.name}.jsonl"),
        "--metrics-listen", f"{spec.ip}:{T.METRICS_PORT}",
        "--store", "etcd:" + ",".join(T.etcd_urls(st.etcd_members)),
        "--datapath", "kernel",
        "--config", str(T.agent_config(spec.name)),  # node_labels: `egress-lab node label` edits it and sends SIGHUP
    ]


def etcd_argv(st: LabState, member: T.EtcdMember) -> list[str]:
    members = T.etcd_members(st.etcd_members)
    return [
        ETCD, "--name", member.name, "--data-dir", str(T.run_dir() / "etcd" / member.name),
        "--listen-client-urls", member.url, "--advertise-client-urls", member.url,
        "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
        "--initial-cluster", ",".join(f"{m.name}={m.peer_url}" for m in members),
        "--initial-cluster-state", "new", "--initial-cluster-token", f"egress-lab-{st.prefix}",
        "--log-level", "warn", "--logger", "zap",
    ]


def running(st: LabState, what: str) -> bool:
    pid = st.processes.get(what)
    return bool(pid) and netns.alive(pid)


def start_process(st: LabState, what: str, ns: str, argv: list[str]) -> bool:
    """Start `argv` in `ns` unless the recorded process still runs; log to <run dir>/<what>.log."""
    if running(st, what):
        return False
    with open(T.run_dir() / f"{what}.log", "ab") as log:
        proc = subprocess.Popen(
            netns.argv_in(ns, argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    st.processes[what] = proc.pid
    return True


def kill(st: LabState, what: str, sig: int = signal.SIGKILL) -> None:
    pid = st.processes.pop(what, None)
    if not pid:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and netns.alive(pid):
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:  # our child (same CLI process): reap it
                break
        except ChildProcessError:
            pass
        time.sleep(0.01)


def start_etcd(st: LabState, only: str | None = None) -> None:
    """Start the lab's etcd members (or the one named `only`) unless running; with their data if they had some.

    Waits until each listens for clients: a member of three serves only once a quorum is up,
    and the agents retry until then."""
    members = [m for m in T.etcd_members(st.etcd_members) if only in (None, m.name)]
    if not members:
        raise KeyError(f"no etcd member {only!r} in the lab")
    for m in members:
        (T.run_dir() / "etcd" / m.name).mkdir(mode=0o700, parents=True, exist_ok=True)  # as etcd wants its data dir
        start_process(st, m.name, T.etcd_ns(), etcd_argv(st, m))
    deadline = time.monotonic() + 20
    for m in members:
        while True:
            out = netns.run(T.etcd_ns(), ["ss", "-Hltn", f"src {T.ETCD_IP}:{m.client_port}"], check=False).stdout
            if out.strip():
                break
            if not running(st, m.name) or time.monotonic() > deadline:
                raise RuntimeError(f"etcd member {m.name} did not start on {m.url}: see {etcd_log_path(m.name)}")
            time.sleep(0.05)


def stop_etcd(st: LabState, only: str | None = None) -> None:
    """kill -9 the lab's etcd members (or the one named `only`); their data stays for `start_etcd`."""
    for m in T.etcd_members(st.etcd_members):
        if only in (None, m.name):
            kill(st, m.name)


def signal_etcd(st: LabState, member: str, sig: int) -> None:
    """Send `sig` to one running member: SIGSTOP hangs it (it accepts connections, answers nothing)."""
    if not running(st, member):
        raise RuntimeError(f"etcd member {member!r} is not running")
    os.kill(st.processes[member], sig)


def start_agent(st: LabState, spec: T.NodeSpec) -> bool:
    T.agent_socket(spec.name).parent.mkdir(parents=True, exist_ok=True)
    write_agent_config(spec.name, st.node_labels.get(spec.name, {}))
    return start_process(st, agent_key(spec.name), spec.netns, agent_argv(st, spec))


def wait_healthy(st: LabState, nodes: list[T.NodeSpec], timeout: float = AGENT_START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for spec in nodes:
        sock = T.agent_socket(spec.name)
        while True:
            if not running(st, agent_key(spec.name)):
                raise RuntimeError(f"egress-agent on {spec.name} exited: see {log_path(spec.name)}\n{log_tail(spec.name)}")
            if sock.exists():
                with EgressClient(f"unix://{sock}", timeout=1) as c:
                    try:
                        if c.health().status == "SERVING":
                            break
                    except errors.ApiError:
                        pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"egress-agent on {spec.name} not healthy after {timeout:g}s: see {log_path(spec.name)}")
            time.sleep(0.05)


def log_path(node: str) -> Path:
    return T.run_dir() / f"{agent_key(node)}.log"


def etcd_log_path(member: str) -> Path:
    return T.run_dir() / f"{member}.log"  # start_process's <run dir>/<what>.log


def log_tail(node: str, lines: int = 15) -> str:
    return tail(log_path(node), lines)


def tail(path: Path, lines: int = 15) -> str:
    """The last `lines` of a log file ("" when there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# As Prometheus with a `tls_config`: the lab's CA, and a client certificate (the agents ask for one).
_SCRAPE = """import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5, context=ctx).read().decode())"""


def metrics(spec: T.NodeSpec) -> str:
    """The node agent's Prometheus text, fetched over mutual TLS from inside the node's namespace (its only
    address is there)."""
    url = f"https://{spec.ip}:{T.METRICS_PORT}/metrics"
    pki = pki_dir()
    return netns.run(spec.netns, [sys.executable, "-c", _SCRAPE, url, str(pki / "ca.pem"),
                                  str(pki / "client-viewer.pem"), str(pki / "client-viewer-key.pem")]).stdout


def endpoint(node: str) -> str:
    return f"unix://{T.agent_socket(node)}"


def client(st: LabState, prefer: str | None = None, timeout: float = 20.0) -> EgressClient:
    """A client to `prefer`'s agent, or else to any running agent."""
    order = ([prefer] if prefer else []) + [n.name for n in st.nodes() if n.name != prefer]
    for node in order:
        if running(st, agent_key(node)) and T.agent_socket(node).exists():
            return EgressClient(endpoint(node), timeout=timeout)
    raise RuntimeError("no egress-agent is running in the lab: `egress-lab node start NODE` or `egress-lab up`")


def cleanup_node(spec: T.NodeSpec) -> None:
    """What a reboot does to a dead node's kernel: the datapath its killed agent left is gone."""
    netns.run(spec.netns, [*agent_command(), "--cleanup", "--interface", T.UPLINK, "--node-ip", spec.ip_with_prefix])
