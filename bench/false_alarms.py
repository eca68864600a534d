"""False alarms of the failure detector with both cores saturated, per probe interval x misses.

    .venv/bin/python bench/false_alarms.py [--seconds 120] [--settings 0.02x10,0.02x25,0.05x10,...]
                                           [--busy 2] [--etcd-stall 0.5/2]

For each setting, a fresh cluster (3 agents on a real 3-member etcd, as bench/faults.py: worker1,
worker2, master1, 4 floating IPs) runs for `--seconds` while two busy processes (one per core, same
priority as the agents) saturate the machine. Counted: Down verdicts of healthy peers (each agent's
log), FloatingIPMoved events (false moves: nobody failed) and new leader terms. Then, still
saturated, a holder is killed (kill -9) and the time until every surviving agent's API shows its IPs
moved is measured (the failover time under load). Extrapolated per hour only as a rate: a run of
two minutes does not see rare events.

`--busy N` sets the number of busy processes (0: an idle machine); `--etcd-stall S/P` also makes etcd
slow: every P seconds all three members are frozen (SIGSTOP) for S seconds at once, as a cluster whose
disks stall on fsync (tests/helpers/etcd.py EtcdStalls).

The agents on loopback share one kernel, so they run with --restart-window 0 (see
tests/helpers/agent_group.py): the kill models a dead node.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faults import Run, until_moved  # noqa: E402
from machine import describe_machine, write_results  # noqa: E402

from helpers.agent import wait_for  # noqa: E402  (faults put tests/ on the path)
from helpers.agent_group import down_verdicts, leader_of  # noqa: E402
from helpers.etcd import EtcdStalls  # noqa: E402
from helpers.load import busy_processes  # noqa: E402


def parse_settings(text: str) -> list[tuple[float, int]]:
    out = []
    for item in text.split(","):
        interval, misses = item.split("x")
        out.append((float(interval), int(misses)))
    return out


def one(base: Path, interval: float, misses: int, seconds: float, n_busy: int,
        etcd_stall: tuple[float, float] | None) -> dict:
    run = Run(base, agent_flags=("--probe-interval", str(interval), "--probe-misses", str(misses)))
    agents = list(run.group.agents.values())
    stalls = EtcdStalls(run.etcd, *etcd_stall) if etcd_stall else None
    try:
        with busy_processes(n_busy):
            downs0 = down_verdicts(agents)
            with stalls or contextlib.nullcontext():
                time.sleep(seconds)
            outcome = run.outcome(list(run.agents), expected_moves=0)
            quiet = {"down_verdicts": down_verdicts(agents) - downs0, "etcd_stalls": stalls.stalls if stalls else 0,
                     **outcome}
            # Failover under the same load: kill -9 a holder that does not lead.
            run.leader = wait_for(lambda: leader_of(run.agents), timeout=10, what="a leader")
            run.before = run.status(run.agents, lambda h: all(h.get(ip) for ip in run.ips))  # after any false move
            victim = run.holder_not_leader()
            run.group[victim].kill()
            took = until_moved(run, victim, [a for a in run.agents if a.node != victim])
    finally:
        run.close()
    return {"interval_s": interval, "misses": misses, "window_ms": round(interval * misses * 1000),
            "seconds": seconds, **quiet, "failover_s": round(took, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--settings", default="0.02x10,0.02x15,0.02x25,0.05x6,0.05x10")
    ap.add_argument("--busy", type=int, default=2, help="busy processes (one per core saturates this machine)")
    ap.add_argument("--etcd-stall", default="", metavar="S/P", help="freeze all etcd members S seconds every P")
    ap.add_argument("--name", default="", help="results file name (default: false-alarms[-etcd-stalls])")
    args = ap.parse_args()
    stall = tuple(float(x) for x in args.etcd_stall.split("/")) if args.etcd_stall else None
    results = {"machine": describe_machine(), "params": vars(args), "runs": []}
    with tempfile.TemporaryDirectory(prefix="egress-false-alarms-") as tmp:
        for i, (interval, misses) in enumerate(parse_settings(args.settings)):
            r = one(Path(tmp) / f"s{i}", interval, misses, args.seconds, args.busy, stall)
            print(r, flush=True)
            results["runs"].append(r)
    write_results(args.name or ("false-alarms-etcd-stalls" if stall else "false-alarms"), results, render(results))


def render(r: dict) -> str:
    p = r["params"]
    load = f"{p['busy']} busy Python processes (2 saturate both cores)" if p["busy"] else "no other load"
    if p["etcd_stall"]:
        stall, period = p["etcd_stall"].split("/")
        load += f", every etcd member frozen for {float(stall) * 1000:.0f} ms every {period} s"
    lines = [
        f"3 agents on a 3-member etcd (loopback), {load}, for {p['seconds']:.0f} s per setting; then, under the "
        f"same load, kill -9 of a holder.", "",
        "| probe interval x misses | window | Down verdicts of healthy peers | false moves | leader changes | "
        "failover under load |", "|---|---|---|---|---|---|"]
    for x in r["runs"]:
        lines.append(f"| {x['interval_s'] * 1000:.0f} ms x {x['misses']} | {x['window_ms']} ms | {x['down_verdicts']} | "
                     f"{x['false_moves']} | {x['leader_changes']} | {x['failover_s'] * 1000:.0f} ms |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
