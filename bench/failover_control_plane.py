"""Control-plane failover and convergence on real etcd and real egress-agent processes.

    .venv/bin/python bench/failover_control_plane.py [--runs 10] [--out bench/results]

1. Failover: 3 agents (worker1, worker2, master1) on a 3-member etcd, default
   settings (lease TTL 2 s, probes every 20 ms, Down after 10 misses). kill -9
   of a worker holding floating IPs -> time until *every other* agent's API
   shows all of its IPs on another node. Two cases: the holder is not the
   controller leader (the probe detector decides) and the holder is the leader
   (its lease must expire before another agent leads).
2. Convergence: an API write on one agent -> time until every agent's API
   returns it, for 3 and 10 agents.

Each agent is polled by its own thread every 2 ms through its gRPC API, so the
numbers include one API read; the victim is restarted between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from egress_api import errors, models  # noqa: E402
from helpers.agent import AgentProcess  # noqa: E402
from helpers.etcd import free_port, make_cluster  # noqa: E402
from machine import describe_machine, write_results  # noqa: E402

IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103"]


def machine() -> dict:
    return {**describe_machine(), "etcd": os.popen("etcd --version").readline().strip()}


class Group:
    def __init__(self, base: Path, store_url: str):
        self.base, self.store_url, self.agents = base, store_url, {}

    def add(self, name: str, role: str, ip: str) -> AgentProcess:
        a = AgentProcess(self.base / name, node=name, role=role, node_ip=ip,
                         extra_args=["--store", self.store_url, "--listen", f"127.0.0.1:{free_port()}",
                                     "--datapath", "off", "--log-level", "WARNING",
                                     # kill -9 models a dead node here; see tests/helpers/agent_group.py
                                     "--restart-window", "0"])
        self.agents[name] = a
        a.start(timeout=60)
        return a

    def close(self):
        for a in self.agents.values():
            a.close()


def wait_until(pred, timeout=30.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except errors.ApiError:
            pass
        time.sleep(interval)
    raise TimeoutError("condition not reached")


def time_until_all(agents, pred, timeout=15.0) -> tuple[list[float], threading.Event]:
    """Start one poller per agent; returns (monotonic times each first saw pred true, started)."""
    seen: list[float] = []
    lock = threading.Lock()
    threads = []
    for a in agents:
        def poll(client=a.client):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if pred(client):
                        with lock:
                            seen.append(time.monotonic())
                        return
                except errors.ApiError:
                    pass
                time.sleep(0.002)
        threads.append(threading.Thread(target=poll, daemon=True))
    return seen, threads


def failover(base: Path, runs: int, leader_runs: int) -> dict:
    etcd = make_cluster(base / "etcd", size=3).start()
    g = Group(base, etcd.store_url)
    results = {"holder_not_leader": [], "holder_is_leader": [], "down_visible": []}
    try:
        g.add("worker1", "worker", "192.0.2.11/24")
        g.add("worker2", "worker", "192.0.2.12/24")
        g.add("master1", "master", "192.0.2.21/24")
        g.agents["worker1"].client.create_gateway(models.Gateway(name="default", floating_ips=IPS))

        def status(a):
            return a.client.gateway_status("default")

        def settled():
            sts = [status(a) for a in g.agents.values()]
            ok = all(all(s.floating_ips.get(ip) for ip in IPS) and set(s.nodes.values()) == {"Up"} for s in sts)
            return sts[0] if ok and all(s.floating_ips == sts[0].floating_ips for s in sts) else None

        wanted = {"holder_not_leader": runs, "holder_is_leader": leader_runs}
        attempts = 0
        while attempts < 3 * (runs + leader_runs):
            attempts += 1
            case = next((c for c, n in wanted.items() if len(results[c]) < n), None)
            if case is None:
                break
            try:
                st = wait_until(settled)
            except TimeoutError:
                raise TimeoutError(f"agents never agreed: {[status(a) for a in g.agents.values()]}") from None
            if len(set(st.floating_ips.values())) < 2:
                # After a failover every IP sits on the survivor (no stealing back): rebalance
                # by recreating the gateway, so each worker holds IPs again.
                c = g.agents["master1"].client
                c.delete_gateway("default")
                c.create_gateway(models.Gateway(name="default", floating_ips=IPS))
                continue
            leader = g.agents["master1"].client.health().leader
            holders = sorted({n for n in st.floating_ips.values()})
            if case == "holder_not_leader":
                victim = next((h for h in holders if h != leader), None)
            else:
                victim = leader if leader in holders else None
                if victim is None:
                    # Make a holder lead: kill the current (non-holding) leader and let a worker win.
                    g.agents[leader].kill()
                    wait_until(lambda: g.agents[holders[0]].client.health().leader not in ("", leader), timeout=15)
                    g.agents[leader].start(timeout=60)
                    continue
            if victim is None:
                continue
            others = [a for n, a in g.agents.items() if n != victim]
            gone = lambda c, v=victim: v not in c.gateway_status("default").floating_ips.values()  # noqa: E731
            down = lambda c, v=victim: c.gateway_status("default").nodes.get(v) == "Down"  # noqa: E731
            seen, threads = time_until_all(others, gone)
            seen_down, threads_down = time_until_all(others, down)
            t0 = time.monotonic()
            g.agents[victim].kill()
            for t in threads + threads_down:
                t.start()
            for t in threads + threads_down:
                t.join()
            if len(seen) == len(others):
                results[case].append(max(seen) - t0)
            if len(seen_down) == len(others):
                results["down_visible"].append(max(seen_down) - t0)
            g.agents[victim].start(timeout=60)
            print(f"{case}: killed {victim}: reassigned everywhere after {results[case][-1]*1000:.0f} ms", flush=True)
    finally:
        g.close()
        etcd.close()
    return {k: summary(v) for k, v in results.items()}


def convergence(base: Path, n_agents: int, writes: int) -> dict:
    etcd = make_cluster(base / "etcd", size=3).start()
    g = Group(base, etcd.store_url)
    samples = []
    try:
        for i in range(n_agents):
            role = "master" if i == n_agents - 1 else "worker"
            g.add(f"node{i}", role, f"192.0.2.{11 + i}/24")
        agents = list(g.agents.values())
        writer = agents[0].client
        writer.create_gateway(models.Gateway(name="default", floating_ips=["192.0.2.200"]))
        for i in range(writes):
            ips = ["192.0.2.200", f"192.0.2.{201 + i}"]
            expect = sorted(ips, key=lambda s: tuple(map(int, s.split("."))))
            pred = lambda c, e=expect: c.get_gateway("default").obj.floating_ips == e  # noqa: E731
            seen, threads = time_until_all(agents, pred)
            version = writer.get_gateway("default").resource_version
            for t in threads:
                t.start()
            t0 = time.monotonic()
            writer.update_gateway(models.Gateway(name="default", floating_ips=ips), resource_version=version)
            for t in threads:
                t.join()
            if len(seen) == len(agents):
                samples.append(max(seen) - t0)
    finally:
        g.close()
        etcd.close()
    return summary(samples)


def summary(xs: list[float]) -> dict:
    if not xs:
        return {"runs": 0}
    ms = sorted(x * 1000 for x in xs)
    return {"runs": len(ms), "median_ms": round(statistics.median(ms), 1), "max_ms": round(max(ms), 1),
            "min_ms": round(min(ms), 1), "samples_ms": [round(x, 1) for x in ms]}


def render(out: dict) -> str:
    f = out["failover"]
    rows = [
        ("kill -9 of a worker holding IPs (not the leader) -> new holder visible on every other agent",
         f["holder_not_leader"]),
        ("kill -9 of a worker holding IPs that is also the controller leader -> same", f["holder_is_leader"]),
        ("kill -9 -> every other agent's status shows the node `Down`", f["down_visible"]),
        ("API write on one agent -> visible through every agent's API, 3 agents", out["convergence_3_agents"]),
        ("same, 10 agents", out["convergence_10_agents"]),
    ]
    s = out["settings"]
    lines = [
        f"{out['machine']['etcd']}, {s['etcd']}; real `egress-agent --datapath off` processes on 127.0.0.1 "
        f"(lease TTL {s['lease_ttl_s']} s, keepalive {s['keepalive_s']} s, UDP probes every "
        f"{s['probe_interval_ms']} ms, Down after {s['probe_misses']} misses). Each time includes one gRPC read "
        "per agent, polled every 2 ms; about 200 ms of every failover is the detector's window "
        "(probe interval x misses). Raw samples in the .json.",
        "",
        "| measurement | runs | median (ms) | max (ms) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {r['runs']} | {r.get('median_ms', '-')} | {r.get('max_ms', '-')} |" for name, r in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--leader-runs", type=int, default=5)
    p.add_argument("--writes", type=int, default=20)
    args = p.parse_args()
    out = {"machine": machine(), "settings": {"lease_ttl_s": 2, "keepalive_s": 0.5, "probe_interval_ms": 20,
                                             "probe_misses": 10, "etcd": "3 members, heartbeat 100 ms, election 1000 ms"}}
    with tempfile.TemporaryDirectory(prefix="egress-bench-") as tmp:
        out["failover"] = failover(Path(tmp) / "f", args.runs, args.leader_runs)
        out["convergence_3_agents"] = convergence(Path(tmp) / "c3", 3, args.writes)
        out["convergence_10_agents"] = convergence(Path(tmp) / "c10", 10, args.writes)
    print(json.dumps(out, indent=2))
    write_results("failover-control-plane", out, render(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
