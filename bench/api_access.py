"""Benchmark: what authentication costs an API call — unix socket (direct or through the uid relay), TCP
plaintext, TCP mutual TLS.

10 concurrent clients (threads, one EgressClient = one channel each) each run N cycles of create,
get and delete of a policy. Reported per transport: calls/s over the whole run, p50/p99 latency of
creates and of reads. With --baseline REV, an agent from that commit (checked out into a temporary worktree, run by
this venv's Python) is measured on its unix socket too: "before" for the relay's cost.
Transports are measured in turn, round-robin over --rounds, so machine noise spreads over all of them.

Usage: .venv/bin/python bench/api_access.py [--clients 10] [--per-client 40] [--rounds 3] [--baseline d14a4ab]
Writes bench/results/api-access-<date>.{json,md} with the machine noted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine, write_results  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO / "agent"))

from egress_agent.cmd import certs  # noqa: E402
from egress_api import errors, models, transport  # noqa: E402
from egress_api.client import EgressClient  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    def __init__(self, workdir: Path, extra: list[str], pythonpath: str = ""):
        workdir.mkdir(parents=True, exist_ok=True)
        self.sock = workdir / "a.sock"
        env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
        self.proc = subprocess.Popen(
            [str(BIN / "python"), "-m", "egress_agent.cmd.agent", "--node", "worker1", "--node-ip", "192.0.2.11/24",
             "--socket", str(self.sock), "--store", f"sqlite:{workdir / 's.db'}", *extra],
            stdout=subprocess.DEVNULL, stderr=open(workdir / "agent.log", "wb"), env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                with EgressClient(f"unix://{self.sock}", timeout=1) as c:
                    c.health()
                    break
            except errors.ApiError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"agent did not start: {(workdir / 'agent.log').read_text()[-2000:]}")
                time.sleep(0.05)
        with EgressClient(f"unix://{self.sock}", timeout=10) as c:
            c.create_gateway(models.Gateway(name="gw", floating_ips=[f"192.0.2.{100 + i}" for i in range(50)]))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def policy(name: str, source: str) -> models.Policy:
    return models.Policy.model_validate({
        "name": name, "egress_source_ip": source, "destination_cidrs": ["198.51.100.0/24"],
        "egress": [{"namespace_selector": {"match_labels": {"user": "alice"}}}]})


def run_clients(endpoint: str, tls, clients: int, per_client: int, tag: str) -> dict:
    """Each client: per_client cycles of create (timed), get (timed), delete, on its own source IP."""
    creates: list[float] = []
    reads: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        mine_c, mine_r = [], []
        with EgressClient(endpoint, timeout=30, tls=tls) as c:
            c.health()  # connect (and handshake) before the clock starts
            start.wait()
            for k in range(per_client):
                name = f"{tag}-{i}-{k}"
                t = time.perf_counter()
                created = c.create_policy(policy(name, f"192.0.2.{100 + i}"))
                t1 = time.perf_counter()
                c.get_policy(name)
                t2 = time.perf_counter()
                c.delete_policy(name, created.resource_version)
                mine_c.append(t1 - t)
                mine_r.append(t2 - t1)
        with lock:
            creates.extend(mine_c)
            reads.extend(mine_r)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"calls_per_s": 3 * clients * per_client / wall, "create_ms": creates, "read_ms": reads}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return 1000 * values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--per-client", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", default="", help="a commit to measure on its unix socket too (e.g. before the relay)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    pki = work / "pki"
    certs.init(pki, certs.parse_nodes("worker1=127.0.0.1"), certs.parse_clients("admin"))
    admin = transport.ClientTLS.load(str(pki / "ca.pem"), str(pki / "client-admin.pem"), str(pki / "client-admin-key.pem"))
    plain_port, tls_port = free_port(), free_port()
    baseline_tree = ""
    if args.baseline:
        baseline_tree = str(work / "baseline")
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", baseline_tree, args.baseline],
                       check=True, capture_output=True)

    variants = {
        "unix socket (mode 0600, served directly)": lambda r: (Agent(work / f"unix{r}", []), None, None),
        "unix socket through the uid relay (--socket-roles)": lambda r: (
            Agent(work / f"relay{r}", ["--socket-roles", "65534=viewer"]), None, None),
        "TCP plaintext (loopback)": lambda r: (Agent(work / f"plain{r}", ["--listen", f"127.0.0.1:{plain_port}"]),
                                               f"127.0.0.1:{plain_port}", None),
        "TCP mutual TLS": lambda r: (Agent(work / f"tls{r}", [
            "--listen", f"127.0.0.1:{tls_port}", "--tls-cert", str(pki / "node-worker1.pem"),
            "--tls-key", str(pki / "node-worker1-key.pem"), "--tls-client-ca", str(pki / "ca.pem")]),
            f"127.0.0.1:{tls_port}", admin),
    }
    if baseline_tree:
        variants[f"unix socket, before ({args.baseline}: no access control)"] = lambda r: (
            Agent(work / f"base{r}", [], pythonpath=str(Path(baseline_tree) / "agent")), None, None)

    raw: dict[str, list[dict]] = {name: [] for name in variants}
    try:
        for r in range(args.rounds):
            for name, make in variants.items():
                agent, endpoint, tls = make(r)
                try:
                    raw[name].append(run_clients(endpoint or f"unix://{agent.sock}", tls, args.clients,
                                                 args.per_client, f"r{r}"))
                finally:
                    agent.stop()
                last = raw[name][-1]
                print(f"round {r + 1} {name}: {last['calls_per_s']:.0f} calls/s", flush=True)
    finally:
        if baseline_tree:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", baseline_tree], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    summary = {}
    for name, runs in raw.items():
        creates = [x for run in runs for x in run["create_ms"]]
        reads = [x for run in runs for x in run["read_ms"]]
        summary[name] = {
            "calls_per_s_median": statistics.median(run["calls_per_s"] for run in runs),
            "create_p50_ms": pct(creates, 0.5), "create_p99_ms": pct(creates, 0.99),
            "read_p50_ms": pct(reads, 0.5), "read_p99_ms": pct(reads, 0.99),
        }
    rows = ["| transport | calls/s | create p50 / p99 ms | read p50 / p99 ms |", "|---|---|---|---|"]
    for name, s in summary.items():
        rows.append(f"| {name} | {s['calls_per_s_median']:.0f} | {s['create_p50_ms']:.1f} / {s['create_p99_ms']:.1f} | "
                    f"{s['read_p50_ms']:.1f} / {s['read_p99_ms']:.1f} |")
    note = (f"{args.clients} concurrent clients (threads of one process), each {args.per_client} cycles of create + "
            f"get + delete of a policy (calls/s counts all three); {args.rounds} rounds, transports in turn; medians "
            "of the per-round rates, percentiles over all calls. Clients and agent share the machine's cores.")
    path = write_results("api-access", {"machine": describe_machine(), "args": vars(args), "summary": summary},
                         "\n".join(rows) + "\n\n" + note + "\n")
    print("\n".join(rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
