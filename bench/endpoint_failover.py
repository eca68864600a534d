"""Benchmark: what a dead or hung first endpoint costs a fresh client (one provider plugin process).

Terraform starts the provider several times per command, and each process
starts with the first endpoint of its list, so this cost is paid per process.
For each endpoint list, a new EgressClient makes the provider's configure-time
probe (health with a 2 s per-attempt timeout, HEALTH_PROBE_TIMEOUT) and one
read; reported: wall time of the two calls, median and max over the repeats.

- live:            [live agent]
- dead unix first: [socket path nobody listens on, live]
- dead tcp first:  [127.0.0.1:<closed port>, live]
- hung first:      [agent stopped with SIGSTOP (accepts, never answers), live]

Usage: .venv/bin/python bench/endpoint_failover.py [--repeat 20]
Writes bench/results/endpoint-failover-<date>.{json,md} with the machine noted.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine, write_results  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO / "agent"))
sys.path.insert(0, str(REPO / "provider"))

from egress_api import errors  # noqa: E402
from egress_api.client import EgressClient  # noqa: E402
from egress_provider.provider import HEALTH_PROBE_TIMEOUT  # noqa: E402


def start_agent(workdir: Path, node: str) -> tuple[subprocess.Popen, str]:
    sock = workdir / f"{node}.sock"
    proc = subprocess.Popen(
        [str(BIN / "egress-agent"), "--node", node, "--role", "worker", "--node-ip", "192.0.2.11/24",
         "--socket", str(sock), "--store", f"sqlite:{workdir / node}.db"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"unix://{sock}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with EgressClient(endpoint, timeout=1) as c:
                c.health()
            return proc, endpoint
        except errors.ApiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


def first_calls(endpoints: list[str]) -> float:
    began = time.perf_counter()
    with EgressClient(endpoints, timeout=10) as c:
        c.health(timeout=HEALTH_PROBE_TIMEOUT)
        c.list_gateways()
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="egress-bench-") as tmp:
        work = Path(tmp)
        live, live_ep = start_agent(work, "live")
        hung, hung_ep = start_agent(work, "hung")
        try:
            os.kill(hung.pid, signal.SIGSTOP)
            cases = {
                "live": ([live_ep], args.repeat),
                "dead unix first": ([f"unix://{work}/nobody.sock", live_ep], args.repeat),
                "dead tcp first": ([f"127.0.0.1:{closed_port()}", live_ep], args.repeat),
                "hung first": ([hung_ep, live_ep], max(3, args.repeat // 5)),
            }
            results = {"machine": describe_machine(), "probe_timeout_s": HEALTH_PROBE_TIMEOUT, "cases": {}}
            rows = []
            for name, (endpoints, repeat) in cases.items():
                first_calls(endpoints)  # warm imports and the live agent
                times = [first_calls(endpoints) for _ in range(repeat)]
                ms = sorted(t * 1000 for t in times)
                results["cases"][name] = {"repeat": repeat, "median_ms": round(statistics.median(ms), 1),
                                          "max_ms": round(ms[-1], 1)}
                rows.append(f"| {name} | {repeat} | {statistics.median(ms):.1f} | {ms[-1]:.1f} |")
                print(rows[-1], flush=True)
        finally:
            os.kill(hung.pid, signal.SIGCONT)
            for p in (live, hung):
                p.terminate()
                p.wait(10)
    table = ("First two calls of a fresh client (configure-time health probe + one read), by endpoint list:\n\n"
             "| first endpoint | runs | median ms | max ms |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    write_results("endpoint-failover", results, table)


if __name__ == "__main__":
    main()
