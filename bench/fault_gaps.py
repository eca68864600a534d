"""The traffic gap of a pod per fault, in the lab: the data-plane side of bench/faults.py's fault matrix.

Run as root from the repo: `.venv/bin/python bench/fault_gaps.py [--runs 5]`.

The lab and probe pods of bench/failover.py (3 workers + 1 master in network namespaces, three etcd members (one with
--etcd-members 1), a real egress-agent per node with the kernel datapath, agent defaults: probes every 20 ms, Down
after 10 misses). A pod on a
node that does not hold 192.0.2.100 pings the external host through it every 10 ms (`ping -D`). Each
fault is injected for real:

  * holder dies:             its cable goes down and its agent is killed -9 (`egress-lab node stop`);
  * holder partitioned:      its cable down for 2 s, its agent running; then the cable comes back;
  * holder's agent paused:   SIGSTOP for 1 s (past the 0.2 s detection window), then SIGCONT; its
                             kernel keeps forwarding meanwhile (fail static);
  * pod node's agent paused: SIGSTOP for 1 s of the agent on the pinging pod's own node (not the holder);
  * leader killed:           kill -9 of the controller leader's agent, the leader holding no IP;
  * etcd gone:               the lab's etcd killed -9 for everyone for 4.5 s (2 lease TTLs), then restarted;
  * etcd member hung:        SIGSTOP of the member first in every agent's list; 3.5 s later (etcd's re-election
                             and the agents' health checks have had their time) the holder dies as above; the
                             member resumes 2 s after that. Needs three members.

Per fault, over --runs runs: the longest silence between two answered probes from the fault on
(median / max), probes lost, FloatingIPMoved events beyond those the fault calls for (false moves), and
leader changes beyond those it calls for (one when the fault strikes the leader). Writes
bench/results/fault-gaps-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from failover import FIP, PROBE_PODS, add_probe_pods, create_probe_policy, ping_answers, ping_totals  # noqa: E402
from helpers.agent_lab import AgentLab, eventually  # noqa: E402
from machine import describe_machine, write_results  # noqa: E402

from egress_api import errors  # noqa: E402
from egress_lab import agents, build, labstate, topology as T  # noqa: E402


@dataclass(frozen=True)
class Fault:
    name: str
    moves: int  # FloatingIPMoved events the fault calls for
    leader_changes: int  # leader changes it calls for (at most)
    inject: Callable[["Run"], None]  # injects and undoes the fault; returns when the cluster may settle


@dataclass
class Run:
    lab: AgentLab
    holder: str
    leader: str
    pod_node: str


def agent_pid(node: str) -> int:
    return labstate.require().processes[agents.agent_key(node)]


def holder_dies(r: Run) -> None:
    r.lab.node_stop(r.holder)
    time.sleep(2.0)


def holder_partitioned(r: Run) -> None:
    r.lab.partition(r.holder)
    time.sleep(2.0)
    r.lab.heal(r.holder)
    time.sleep(1.5)


def pause(node: str, seconds: float) -> None:
    pid = agent_pid(node)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def holder_paused(r: Run) -> None:
    pause(r.holder, 1.0)
    time.sleep(1.5)


def pod_node_paused(r: Run) -> None:
    pause(r.pod_node, 1.0)
    time.sleep(1.5)


def leader_killed(r: Run) -> None:
    with labstate.locked():
        st = labstate.require()
        agents.kill(st, agents.agent_key(r.leader))
        labstate.save(st)
    time.sleep(2.0)


def etcd_gone(r: Run) -> None:
    r.lab.etcd_stop()
    time.sleep(4.5)
    r.lab.etcd_start()
    time.sleep(3.0)


ETCD_SETTLE = 2 * 1.0 + 1.5  # etcd's election timeout twice, then a keepalive to the hung member timing out


def etcd_member_hung_then_holder_dies(r: Run) -> None:
    hung = r.lab.etcd_members[0].name
    r.lab.etcd_pause(hung)
    try:
        time.sleep(ETCD_SETTLE)
        holder_dies(r)
    finally:
        r.lab.etcd_resume(hung)
    time.sleep(1.0)


FAULTS = [
    Fault("holder dies (cable down, agent kill -9)", 1, 0, holder_dies),
    Fault("holder partitioned 2 s (cable down, agent running)", 1, 0, holder_partitioned),
    Fault("holder's agent paused 1 s (SIGSTOP)", 1, 0, holder_paused),
    Fault("pod node's agent paused 1 s (SIGSTOP; not the holder)", 0, 0, pod_node_paused),
    Fault("leader killed (kill -9; holds no IP)", 0, 1, leader_killed),
    Fault("etcd gone for everyone 4.5 s, then back", 0, 0, etcd_gone),
    Fault("one etcd member hung (SIGSTOP), then the holder dies", 1, 0, etcd_member_hung_then_holder_dies),
]


def views_settled(lab: AgentLab, names: list[str]) -> bool:
    """Every agent serves and sees every node Up, and all agree on the holder."""
    want = dict.fromkeys(names, "Up")
    holders = set()
    for name in names:
        try:
            with lab.client(name, timeout=2.0) as c:
                if {n.name: n.state for n in c.list_nodes()} != want:
                    return False
            holders.add(lab.holder(FIP, via=name))
        except (errors.ApiError, OSError):
            return False
    return len(holders) == 1 and "" not in holders


def restore(lab: AgentLab, names: list[str]) -> None:
    st = labstate.require()
    for spec in st.nodes():
        build.build_cable(spec, "up")
        if not agents.running(labstate.require(), agents.agent_key(spec.name)):
            lab.node_start(spec.name)
    eventually(lambda: views_settled(lab, names), True, timeout=30)


def moves_and_leader(lab: AgentLab, via: str) -> tuple[int, str]:
    with lab.client(via) as c:
        moves = sum(e.count for e in c.list_events("gateway", "default") if e.reason == "FloatingIPMoved")
        return moves, c.health().leader


def leader_without_ip(lab: AgentLab, names: list[str], holder: str) -> str:
    """The leader, made to be another node than the holder if it is the holder (a graceful restart of it
    hands leadership on and keeps its IPs)."""
    _, leader = moves_and_leader(lab, holder)
    if leader == holder:
        build.agent_restart(holder, kill=False)
        eventually(lambda: views_settled(lab, names), True, timeout=30)
        eventually(lambda: moves_and_leader(lab, holder)[1] not in ("", holder), True, timeout=10)
        _, leader = moves_and_leader(lab, holder)
    return leader


def one_run(lab: AgentLab, names: list[str], fault: Fault) -> dict:
    holder = lab.holder(FIP)
    pod = next(p for p, n in PROBE_PODS.items() if n != holder)
    pod_node = PROBE_PODS[pod]
    leader = leader_without_ip(lab, names, holder) if fault.inject is leader_killed else moves_and_leader(lab, pod_node)[1]
    # Whose API the outcome is read from: an agent the fault leaves alone.
    touched = {leader_killed: {leader}, pod_node_paused: {pod_node}}.get(fault.inject, {holder})
    watcher = next(n for n in [pod_node, *names] if n not in touched)
    moves_before, _ = moves_and_leader(lab, watcher)
    ping = subprocess.Popen(["ip", "netns", "exec", T.pod_ns(pod), "ping", "-D", "-n", "-i", "0.01", T.EXT_HOST_IP],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    t_fault = time.time()
    fault.inject(Run(lab, holder, leader, pod_node))
    eventually(lambda: lab.holder(FIP, via=watcher) != "", True, timeout=20)
    time.sleep(1.0)
    ping.send_signal(signal.SIGINT)
    out = ping.communicate()[0]
    sent, received = ping_totals(out)
    answered = ping_answers(out)
    spans = [b - a for a, b in zip(answered, answered[1:]) if b > t_fault]
    if not answered or answered[-1] < t_fault + 0.5:
        raise RuntimeError(f"{fault.name}: probes did not resume\n{out[-2000:]}")
    moves_after, leader_after = moves_and_leader(lab, watcher)
    holder_after = lab.holder(FIP, via=watcher)
    restore(lab, names)
    return {"fault": fault.name, "holder": holder, "holder_after": holder_after, "pod": pod, "leader": leader,
            "leader_after": leader_after, "leader_hit": leader in touched, "sent": sent, "lost": sent - received,
            "gap_ms": round(max(spans) * 1000, 1) if spans else 0.0, "moves": moves_after - moves_before}


def summarize(fault: Fault, runs: list[dict]) -> dict:
    gaps = [r["gap_ms"] for r in runs]
    return {
        "fault": fault.name, "runs": runs, "gap_ms_median": round(statistics.median(gaps), 1), "gap_ms_max": max(gaps),
        "lost": sum(r["lost"] for r in runs), "sent": sum(r["sent"] for r in runs),
        "false_moves": sum(max(0, r["moves"] - fault.moves) for r in runs),
        "missing_moves": sum(max(0, fault.moves - r["moves"]) for r in runs),
        # A fault that strikes the leader (e.g. the holder was leading) calls for one leader change.
        "extra_leader_changes": sum(max(0, int(r["leader_after"] != r["leader"]) - max(fault.leader_changes, int(r["leader_hit"])))
                                    for r in runs),
    }


def render(results: dict) -> str:
    lines = [
        f"Lab: 3 workers + 1 master in network namespaces, {results['params']['etcd_members']} etcd member(s), "
        "one egress-agent per node (kernel datapath, "
        "defaults: probes every 20 ms, Down after 10 misses, lease TTL 2 s). A pod on a node that does not hold "
        f"{FIP} pings the external host through it every 10 ms; the gap is the longest silence between two answered "
        "probes from the fault on. False moves: FloatingIPMoved events beyond those the fault calls for.",
        "",
        "| fault | runs | traffic gap median / max | probes lost / sent | false moves | missed moves | extra leader changes |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for s in results["faults"]:
        lines.append(f"| {s['fault']} | {len(s['runs'])} | {s['gap_ms_median']} / {s['gap_ms_max']} ms | "
                     f"{s['lost']} / {s['sent']} | {s['false_moves']} | {s['missing_moves']} | {s['extra_leader_changes']} |")
    lines += ["", "Gaps per run (ms):"]
    for s in results["faults"]:
        lines.append(f"- {s['fault']}: " + ", ".join(str(r["gap_ms"]) for r in s["runs"]))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", help="run only the faults whose name contains this text")
    ap.add_argument("--etcd-members", type=int, choices=[1, 3], default=3)
    args = ap.parse_args()
    faults = [f for f in FAULTS if (not args.only or args.only in f.name)
              and (args.etcd_members > 1 or f.inject is not etcd_member_hung_then_holder_dies)]
    results: dict = {"machine": describe_machine(), "params": {"runs": args.runs, "etcd_members": args.etcd_members},
                     "faults": []}
    with tempfile.TemporaryDirectory(prefix="egress-fault-gaps-") as tmp:
        lab = AgentLab(Path(tmp) / "run", workers=3, masters=1, prefix=os.environ.get("EGRESS_TEST_NS_TAG", "eg") + "g-",
                       etcd_members=args.etcd_members)
        try:
            names = [s.name for s in labstate.require().nodes()]
            add_probe_pods(lab)
            create_probe_policy(lab)
            eventually(lambda: lab.seen_as("probe-b"), FIP)
            eventually(lambda: views_settled(lab, names), True, timeout=30)
            for fault in faults:
                runs = []
                for i in range(args.runs):
                    runs.append(one_run(lab, names, fault))
                    print(f"{fault.name} run {i + 1}: {runs[-1]}", flush=True)
                results["faults"].append(summarize(fault, runs))
        finally:
            lab.close()
    write_results("fault-gaps", results, render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
