"""The fault matrix, measured: real egress-agent processes on a real 3-member etcd, each fault injected for real.

    .venv/bin/python bench/faults.py [--runs 5] [--seconds 10]

For each fault, `--runs` fresh clusters (3 agents: worker1, worker2, master1;
4 floating IPs on the workers; agent defaults: probes every 20 ms, Down after
10 misses, lease TTL 2 s): the time until every surviving agent's API shows
the outcome (control plane, polled every 10 ms through the gRPC API), the
FloatingIPMoved events beyond the expected ones (false moves) and the new
leader terms. Then API write throughput and latency (guarded desired-state
writes: each client creates and deletes its own policy, each policy with its
own source IP, in a loop) at 10 and 50 concurrent clients through 1 and 3
agents, with the client's default 10 s deadline.

Not measured here: 1,000 floating IPs over 10 gateways on 20 agents (on this
shared 2-core machine 9 agents already starve each other's probe loops and
lease keepalives, so the numbers would measure the machine); the data-plane
traffic gap of a pod (bench/failover.py
measures it for kill -9 in the lab); the kernel side of fail-static is
asserted by tests/faults/test_fail_static.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from egress_api import errors, models  # noqa: E402
from helpers.agent import wait_for  # noqa: E402
from helpers.agent_group import AgentGroup, agreed_status, leader_of, leader_terms, moves  # noqa: E402
from helpers.etcd import make_cluster  # noqa: E402
from machine import describe_machine, write_results  # noqa: E402

IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103"]
BIG = [f"192.0.2.{30 + i}" for i in range(200)]
POLL = 0.01
NODES = [("worker1", "worker", "192.0.2.11/24"), ("worker2", "worker", "192.0.2.12/24"),
         ("master1", "master", "192.0.2.21/24")]


class Run:
    """One fresh cluster for one run of one fault."""

    def __init__(self, base: Path, ips=IPS, extra_master: bool = False, nodes=NODES, gateways: int = 1,
                 agent_flags: tuple[str, ...] = ()):
        self.etcd = make_cluster(base / "etcd", size=3).start()
        self.group = AgentGroup(base, self.etcd)
        for name, role, ip in nodes + ([("master2", "master", "192.0.2.22/24")] if extra_master else []):
            self.group.add(name, role, ip, extra=["--log-level", "INFO", *agent_flags])
        self.agents = self.group.running()
        names = {n[0] for n in nodes} | ({"master2"} if extra_master else set())
        wait_for(lambda: {n.name for n in self.agents[0].client.list_nodes() if n.state == "Up"} == names,
                 timeout=60, what="every node Up")
        self.ips = ips
        self.gateways = ["default"] + [f"gw{g}" for g in range(1, gateways)]
        for g, name in enumerate(self.gateways):
            self.agents[0].client.create_gateway(models.Gateway(name=name, floating_ips=ips[g::gateways]))
        self.before = self.status(self.agents, lambda h: all(h.get(ip) for ip in ips), timeout=60)
        self.leader = wait_for(lambda: leader_of(self.agents), timeout=10, what="a leader")
        self.moves0 = sum(moves(self.group[self.leader], g) for g in self.gateways)
        self.terms0 = leader_terms(self.agents)

    def status(self, agents, predicate, timeout=15.0) -> dict[str, str]:
        """ip -> holder over every gateway, once all `agents` agree and `predicate(holders)` holds."""
        def check():
            views = [{ip: n for g in self.gateways for ip, n in a.client.gateway_status(g).floating_ips.items()}
                     for a in agents]
            return views[0] if all(v == views[0] for v in views) and predicate(views[0]) else None
        return wait_for(check, timeout=timeout, interval=POLL, what="an agreed status")

    def holder_not_leader(self) -> str:
        return next(n for n in sorted(set(self.before.values())) if n != self.leader and n.startswith("worker"))

    def outcome(self, survivors, expected_moves: int) -> dict:
        via = next(a for a in survivors)
        return {"false_moves": sum(moves(via, g) for g in self.gateways) - self.moves0 - expected_moves,
                "leader_changes": leader_terms(self.agents) - self.terms0}

    def close(self):
        self.group.close()
        self.etcd.close()


def until_moved(run: Run, victim: str, survivors, timeout=15.0) -> float:
    t0 = time.monotonic()
    run.status(survivors, lambda h: victim not in h.values() and all(h.get(ip) for ip in run.ips), timeout=timeout)
    return time.monotonic() - t0


def fault_kill_holder(run: Run) -> dict:
    victim = run.holder_not_leader()
    n = list(run.before.values()).count(victim)
    run.group[victim].kill()
    rest = [a for a in run.agents if a.node != victim]
    return {"time_s": until_moved(run, victim, rest), **run.outcome(rest, n)}


def fault_kill_leader(run: Run, hang_member: bool = False) -> dict:
    if hang_member:
        run.etcd.members[0].pause()
        time.sleep(3.5)  # etcd's own re-election (1 s timeout, twice) + the agents noticing it (a 1 s keepalive deadline)
    victim = run.leader
    n = list(run.before.values()).count(victim)
    rest = [a for a in run.agents if a.node != victim]
    try:
        run.group[victim].kill()
        t0 = time.monotonic()
        wait_for(lambda: leader_of(rest) not in ("", victim), timeout=15, interval=POLL, what="a new leader")
        until_moved(run, victim, rest)
        took = time.monotonic() - t0
    finally:
        run.etcd.members[0].resume()
    out = run.outcome(rest, n)
    out["leader_changes"] -= 1  # the one expected
    return {"time_s": took, **out}


def fault_pause(run: Run, seconds: float, holder: bool) -> dict:
    if holder:
        target = run.holder_not_leader()
    else:
        target = next(n for n in ("master2", "master1") if n != run.leader and n in run.group.agents)
    n = list(run.before.values()).count(target)
    rest = [a for a in run.agents if a.node != target]
    run.group[target].pause()
    t0 = time.monotonic()
    took = None
    if holder:
        took = until_moved(run, target, rest)
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    run.group[target].resume()
    agreed_status(run.agents, lambda s: s.nodes.get(target) == "Up", "Up again", timeout=15)
    time.sleep(2.0)
    out = {"time_s": took, **run.outcome(rest, n)}
    return out


def fault_etcd_outage(run: Run, seconds: float = 4.5) -> dict:
    run.etcd.stop_all()
    time.sleep(seconds)
    t0 = time.monotonic()
    run.etcd.start_all()
    wait_for(lambda: all(_serving(a) for a in run.agents), timeout=30, interval=POLL, what="recovery")
    took = time.monotonic() - t0
    time.sleep(2.0)
    after = run.status(run.agents, lambda h: True)
    out = run.outcome(run.agents, 0)
    out["changed_assignments"] = sum(after[ip] != run.before[ip] for ip in run.ips)
    return {"time_s": took, **out}


def _serving(a) -> bool:
    try:
        return a.client.health().status == "SERVING"
    except errors.ApiError:
        return False


FAULTS = {
    "kill -9 of a holder (not the leader): its IPs on another node": (lambda r: fault_kill_holder(r), {}),
    "kill -9 of the controller leader: new leader, its IPs moved": (lambda r: fault_kill_leader(r), {}),
    "one etcd member hung (SIGSTOP), then kill -9 of the leader: same": (lambda r: fault_kill_leader(r, True), {}),
    "gateway of 200 IPs, kill -9 of a holder: its ~100 IPs moved": (lambda r: fault_kill_holder(r), {"ips": BIG}),
    "SIGSTOP 1 s of a holder: its IPs moved (time), nothing back on resume": (lambda r: fault_pause(r, 1.0, True), {}),
    "SIGSTOP 1 s of a non-holder, non-leader": (lambda r: fault_pause(r, 1.0, False), {"extra_master": True}),
    "SIGSTOP 5 s of a non-holder, non-leader": (lambda r: fault_pause(r, 5.0, False), {"extra_master": True}),
    "etcd stopped for all 4.5 s, restarted: time to SERVING": (lambda r: fault_etcd_outage(r), {}),
}


def matrix(base: Path, runs: int) -> dict:
    out = {}
    for i, (name, (fn, kw)) in enumerate(FAULTS.items()):
        samples = []
        for k in range(runs):
            run = Run(base / f"f{i}-{k}", **kw)
            try:
                samples.append(fn(run))
            finally:
                run.close()
            print(f"{name}: {samples[-1]}", flush=True)
        times = [s["time_s"] * 1000 for s in samples if s.get("time_s") is not None]
        out[name] = {
            "runs": len(samples),
            "median_ms": round(statistics.median(times), 1) if times else None,
            "max_ms": round(max(times), 1) if times else None,
            "false_moves": sum(s["false_moves"] for s in samples),
            "leader_changes": sum(s["leader_changes"] for s in samples),
            "changed_assignments": sum(s.get("changed_assignments", 0) for s in samples),
            "samples": samples,
        }
    return out


def throughput(base: Path, agents_n: int, clients: int, seconds: float) -> dict:
    etcd = make_cluster(base / "etcd", size=3).start()
    g = AgentGroup(base, etcd)
    try:
        for i in range(agents_n):
            g.add(f"worker{i + 1}", "worker", f"192.0.2.{11 + i}/24")
        agents = g.running()
        pool = [f"192.0.2.{100 + c}" for c in range(clients)]  # each policy needs its own source IP
        agents[0].client.create_gateway(models.Gateway(name="default", floating_ips=pool))
        lat: list[float] = []
        per_agent = [0] * agents_n  # ops answered through each agent: is one agent's writers starved?
        errs: dict[str, int] = {}
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def client_loop(c: int) -> None:
            from egress_api.client import EgressClient

            with EgressClient(agents[c % len(agents)].endpoint) as client:  # default 10 s deadline
                pol = models.Policy(name=f"c{c}", egress=[models.EgressRule()],
                                    destination_cidrs=["198.51.100.0/24"], egress_source_ip=pool[c])
                exists = False
                while time.monotonic() < stop:
                    t0 = time.monotonic()
                    try:
                        if exists:
                            client.delete_policy(pol.name)
                        else:
                            client.create_policy(pol)
                        exists = not exists
                        with lock:
                            lat.append(time.monotonic() - t0)
                            per_agent[c % len(agents)] += 1
                    except errors.ApiError as e:
                        with lock:
                            key = type(e).__name__ + (" (deadline)" if "timed out" in str(e) else "")
                            errs[key] = errs.get(key, 0) + 1
                        if isinstance(e, errors.AlreadyExists):
                            exists = True  # a timed-out create was committed after all
                        elif isinstance(e, errors.NotFound):
                            exists = False

        threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        ms = sorted(x * 1000 for x in lat)
        return {"agents": agents_n, "clients": clients, "ops": len(ms), "ops_per_s": round(len(ms) / wall, 1),
                "p50_ms": round(statistics.median(ms), 1) if ms else None,
                "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 1) if ms else None,
                "max_ms": round(ms[-1], 1) if ms else None, "errors": errs, "ops_per_agent": per_agent}
    finally:
        g.close()
        etcd.close()


def render(out: dict) -> str:
    lines = [
        f"{out['settings']}. Times are until every surviving agent's API shows the outcome (polled every "
        f"{POLL * 1000:.0f} ms); false moves are FloatingIPMoved events beyond the victim's own IPs; leader "
        "changes beyond the expected one. Raw samples in the .json.",
        "",
        "| fault | runs | median (ms) | max (ms) | false moves | leader changes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in out["matrix"].items():
        lines.append(f"| {name} | {r['runs']} | {r['median_ms'] if r['median_ms'] is not None else '-'} | "
                     f"{r['max_ms'] if r['max_ms'] is not None else '-'} | {r['false_moves']} | {r['leader_changes']} |")
    if not out["throughput"]:
        return "\n".join(lines)
    lines += ["", "API writes (CreatePolicy/DeletePolicy, guarded), 3-member etcd, client deadline 10 s:", "",
              "| agents | clients | ops | ops/s | p50 (ms) | p99 (ms) | max (ms) | ops per agent | errors |",
              "|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in out["throughput"]:
        lines.append(f"| {r['agents']} | {r['clients']} | {r['ops']} | {r['ops_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
                     f"{r['max_ms']} | {' / '.join(str(n) for n in r.get('ops_per_agent', []))} | "
                     f"{', '.join(f'{k}: {v}' for k, v in r['errors'].items()) or 'none'} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
    p.add_argument("--only", default="", help="run only the faults whose name contains this text (no throughput; "
                                              "results go to faults-subset-*)")
    p.add_argument("--throughput-only", action="store_true", help="only the API write runs (faults-throughput-*)")
    p.add_argument("--clients", default="10,50", help="client counts of the throughput runs")
    args = p.parse_args()
    if args.throughput_only:
        FAULTS.clear()
    if args.only:
        for k in [k for k in FAULTS if args.only not in k]:
            del FAULTS[k]
    out = {"machine": describe_machine(),
           "settings": "3 agents (`--datapath off`) on a 3-member etcd 3.4 (heartbeat 100 ms, election 1 s) on "
                       "127.0.0.1; probes every 20 ms, Down after 10 misses; lease TTL 2 s"}
    with tempfile.TemporaryDirectory(prefix="egress-bench-faults-") as tmp:
        out["matrix"] = matrix(Path(tmp) / "m", args.runs) if FAULTS else {}
        clients = [int(c) for c in args.clients.split(",")]
        out["throughput"] = [] if args.only else [
            throughput(Path(tmp) / f"t{a}-{c}", a, c, args.seconds) for a in (1, 3) for c in clients]
    name = "faults-subset" if args.only else "faults-throughput" if args.throughput_only else "faults"
    write_results(name, out, render(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
