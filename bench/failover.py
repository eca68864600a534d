"""Failover and change-latency benchmark on the agent lab (etcd + a real egress-agent per node).

Run as root from the repo: `.venv/bin/python bench/failover.py [--runs 10]`.
Builds its own lab (prefix `egf-`, 3 workers + 1 master), measures, tears it
down, and writes bench/results/failover-<date>.json and .md with the machine noted.

Measured:
  * failover gap: a selected pod pings the external host every 10 ms
    (`ping -D -i 0.01`); the node holding the policy's floating IP is stopped
    (`egress-lab node stop`: uplink down, agent killed -9); the gap is the time
    between the last answered probe before the stop and the first one after.
    Median and max over --runs runs (the stopped node is started again between runs);
  * restart gap: the same ping while the holder's agent is restarted in place
    (`egress-lab agent restart`: SIGTERM, a graceful restart; or kill -9, a crash),
    the node untouched: probes lost, the longest gap, whether the IP moved;
  * an established TCP stream (iperf3, 100 ms intervals) across the move: does
    it survive, and how long does it stall;
  * change latency: from `terraform apply` returning to every node reporting the
    new store revision as applied to its kernel (its `datapath` record, watched
    in etcd from inside the lab), over --changes applies that add/remove a CIDR.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from helpers.agent_lab import AgentLab, eventually  # noqa: E402
from helpers.terraform import Terraform  # noqa: E402
from machine import describe_machine, write_results  # noqa: E402

from egress_api import models  # noqa: E402
from egress_lab import topology as T  # noqa: E402

FIP = "192.0.2.100"
PROBE_PODS = {"probe-a": "worker1", "probe-b": "worker2"}

WATCHER = r"""
import json, sys, time
from egress_agent.store.etcd import EtcdStore
from egress_agent.node.status import DATAPATH
store = EtcdStore(sys.argv[1].split(","))
def on(rev, changes):
    for c in changes:
        if not c.deleted:
            print(json.dumps({"t": time.time(), "node": c.record.name, "applied": c.record.value.get("applied_revision", 0)}), flush=True)
store.watch([DATAPATH], on)
print("ready", flush=True)
time.sleep(1e9)
"""


def policy_tf(cidrs: list[str]) -> str:
    listed = ", ".join(f'"{c}"' for c in cidrs)
    return f"""
resource "egress_gateway" "default" {{
  name         = "default"
  floating_ips = ["{FIP}"]
}}
resource "egress_nat_policy" "probe" {{
  name = "probe"
  egress {{
    namespace_selector {{
      match_labels = {{ user = "alice" }}
    }}
  }}
  destination_cidrs = [{listed}]
  egress_source_ip  = "{FIP}"
  depends_on        = [egress_gateway.default]
}}
"""


def probe_pod(lab: AgentLab, holder: str) -> str:
    return next(p for p, n in PROBE_PODS.items() if n != holder)


def add_probe_pods(lab: AgentLab) -> None:
    """The pods that ping through the floating IP, one on each of two workers, in namespace alice."""
    lab.label_namespace("alice", user="alice")
    for pod, node in PROBE_PODS.items():
        lab.add_pod(pod, node, "alice")


def create_probe_policy(lab: AgentLab) -> None:
    """Gateway `default` with FIP, and policy `probe` sending alice's pods to 198.51.100.0/24 through it."""
    with lab.client() as c:
        c.create_gateway(models.Gateway(name="default", floating_ips=[FIP]))
        c.create_policy(models.Policy.model_validate({
            "name": "probe", "egress": [{"namespace_selector": {"match_labels": {"user": "alice"}}}],
            "destination_cidrs": ["198.51.100.0/24"], "egress_source_ip": FIP}))


def ping_answers(out: str) -> list[float]:
    """The `ping -D` timestamps of answered probes, in order."""
    return sorted(float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M))


def ping_totals(out: str) -> tuple[int, int]:
    """(sent, received) from ping's summary line (ping ended with SIGINT)."""
    sent, received = re.search(r"(\d+) packets transmitted, (\d+) received", out).groups()
    return int(sent), int(received)


def failover_gap(lab: AgentLab) -> dict:
    holder = lab.holder(FIP)
    pod = probe_pod(lab, holder)
    with lab.client(PROBE_PODS[pod]) as c:
        leader = c.health().leader
    ping = subprocess.Popen(["ip", "netns", "exec", T.pod_ns(pod), "ping", "-D", "-n", "-i", "0.01", T.EXT_HOST_IP],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    t_stop = time.time()
    lab.node_stop(holder)
    new = eventually(lambda: lab.holder(FIP, via=PROBE_PODS[pod]) not in ("", holder), True, timeout=20)
    time.sleep(1.5)
    ping.terminate()
    out = ping.communicate()[0]
    answered = ping_answers(out)
    new_holder = lab.holder(FIP, via=PROBE_PODS[pod])
    lab.node_start(holder)
    # The outage: the longest silence between two answered probes that ends after the stop.
    spans = [(b - a, a, b) for a, b in zip(answered, answered[1:]) if b > t_stop]
    if not spans or answered[-1] < t_stop + 0.5:
        raise RuntimeError(f"probes did not resume after stopping {holder}:\n{out[-2000:]}")
    gap, last_before, first_after = max(spans)
    return {"stopped": holder, "stopped_was_leader": leader == holder, "new_holder": new_holder, "pod": pod,
            "gap_ms": round(gap * 1000, 1), "stop_to_first_answer_ms": round((first_after - t_stop) * 1000, 1),
            "moved": bool(new)}


def restart_gap(lab: AgentLab, kill: bool) -> dict:
    """Restart the holder's agent in place (SIGTERM or kill -9) under a 10 ms ping through it."""
    from egress_lab import build

    holder = lab.holder(FIP)
    pod = probe_pod(lab, holder)
    via = PROBE_PODS[pod]
    with lab.client(via) as c:
        moves_before = sum(e.count for e in c.list_events("gateway", "default") if e.reason == "FloatingIPMoved")
        leader = c.health().leader
    ping = subprocess.Popen(["ip", "netns", "exec", T.pod_ns(pod), "ping", "-D", "-n", "-i", "0.01", T.EXT_HOST_IP],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    t_stop = time.time()
    healthy_after = build.agent_restart(holder, kill=kill)
    # A crash is not announced: the others may move the IP meanwhile; wait for the cluster to settle.
    eventually(lambda: lab.holder(FIP, via=via) != "", True, timeout=20)
    time.sleep(2.0)
    ping.send_signal(2)
    out = ping.communicate()[0]
    sent, received = ping_totals(out)
    answered = ping_answers(out)
    spans = [b - a for a, b in zip(answered, answered[1:]) if b > t_stop]
    with lab.client(via) as c:
        moves = sum(e.count for e in c.list_events("gateway", "default") if e.reason == "FloatingIPMoved") - moves_before
    return {"restarted": holder, "was_leader": leader == holder, "signal": "kill -9" if kill else "SIGTERM",
            "sent": sent, "lost": sent - received, "longest_gap_ms": round(max(spans) * 1000, 1) if spans else None,
            "moves": moves, "holder_after": lab.holder(FIP, via=via), "healthy_after_s": round(healthy_after, 2)}


def restart_summary(runs: list[dict]) -> dict:
    gaps = [r["longest_gap_ms"] for r in runs]
    return {"runs": runs, "lost_total": sum(r["lost"] for r in runs), "sent_total": sum(r["sent"] for r in runs),
            "gap_ms_median": round(statistics.median(gaps), 1), "gap_ms_max": max(gaps),
            "moves_total": sum(r["moves"] for r in runs)}


def tcp_stream(lab: AgentLab, seconds: int = 8) -> dict:
    holder = lab.holder(FIP)
    pod = probe_pod(lab, holder)
    iperf = subprocess.Popen(["ip", "netns", "exec", T.pod_ns(pod), "timeout", str(seconds + 15), "iperf3", "-c", T.EXT_HOST_IP, "-t", str(seconds),
                              "-i", "0.1", "-J", "-b", "200M"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    lab.node_stop(holder)
    out, err = iperf.communicate(timeout=seconds + 30)
    lab.node_start(holder)
    doc = json.loads(out) if out.strip() else {}
    intervals = [(i["sum"]["start"], i["sum"]["end"], i["sum"]["bytes"]) for i in doc.get("intervals", [])]
    stall, longest = 0.0, 0.0
    for start, end, nbytes in intervals:
        if nbytes == 0:
            stall += end - start
            longest = max(longest, stall)
        else:
            stall = 0.0
    survived = not doc.get("error") and bool(intervals) and intervals[-1][1] >= seconds - 0.5 and intervals[-1][2] > 0
    return {"stopped": holder, "pod": pod, "survived": survived, "stall_ms": round(longest * 1000),
            "error": doc.get("error", ""), "received_mbit_s": round(doc.get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 1e6, 1)}


def change_latency(lab: AgentLab, workdir: Path, changes: int) -> dict:
    nodes = [n.name for n in lab.state.nodes()]
    watcher = subprocess.Popen(["ip", "netns", "exec", T.etcd_ns(), sys.executable, "-c", WATCHER, lab.etcd_endpoints],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline().strip() == "ready"
        reports: list[dict] = []
        import threading

        threading.Thread(target=lambda: [reports.append(json.loads(line)) for line in watcher.stdout], daemon=True).start()
        tf = Terraform(workdir, endpoint=lab.endpoint("worker1"))
        tf.write(policy_tf(["198.51.100.0/24"]))
        tf.apply()
        samples, apply_s = [], []
        for i in range(changes):
            cidrs = ["198.51.100.0/24"] + (["203.0.113.0/24"] if i % 2 == 0 else [])
            tf.write(policy_tf(cidrs))
            t0 = time.time()
            tf.apply()
            t_done = time.time()
            apply_s.append(t_done - t0)
            with lab.client() as c:
                rev = c.get_policy("probe").resource_version
            deadline = time.monotonic() + 10
            while True:
                done = {}
                for r in list(reports):
                    if r["applied"] >= rev and r["node"] not in done:
                        done[r["node"]] = r["t"]
                if set(done) >= set(nodes) or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            if set(done) < set(nodes):
                raise RuntimeError(f"nodes {sorted(set(nodes) - set(done))} never reported revision {rev}")
            samples.append(max(done.values()) - t_done)  # negative: every node was done before apply returned
        tf.write("")
        tf.apply()
    finally:
        watcher.kill()
        watcher.wait()
    ms = [s * 1000 for s in samples]
    return {"changes": changes, "after_apply_ms_median": round(statistics.median(ms), 1), "after_apply_ms_max": round(max(ms), 1),
            "samples_ms": [round(x, 1) for x in ms], "terraform_apply_s_median": round(statistics.median(apply_s), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--changes", type=int, default=6)
    ap.add_argument("--restart-runs", type=int, default=5, help="restarts of the holder's agent per signal")
    ap.add_argument("--only", choices=["failover", "restart"], help="measure only this (default: everything)")
    args = ap.parse_args()
    results = {"machine": describe_machine(), "params": vars(args)}
    with tempfile.TemporaryDirectory(prefix="egress-failover-") as tmp:
        # Named after EGRESS_TEST_NS_TAG, so two checkouts can run it side by side ("egf-" by default).
        lab = AgentLab(Path(tmp) / "run", workers=3, masters=1, prefix=os.environ.get("EGRESS_TEST_NS_TAG", "eg") + "f-")
        try:
            add_probe_pods(lab)
            if not args.only:
                results["change_latency"] = change_latency(lab, Path(tmp) / "tf", args.changes)
            create_probe_policy(lab)
            eventually(lambda: lab.seen_as("probe-a"), FIP)
            if args.only in (None, "restart"):
                for kill in (False, True):
                    runs = []
                    for i in range(args.restart_runs):
                        runs.append(restart_gap(lab, kill))
                        print(f"restart run {i + 1}: {runs[-1]}", flush=True)
                    results["restart_kill" if kill else "restart_sigterm"] = restart_summary(runs)
            if args.only == "restart":
                return finish(results)
            runs = []
            for i in range(args.runs):
                runs.append(failover_gap(lab))
                print(f"failover run {i + 1}: {runs[-1]}", flush=True)
            gaps = [r["gap_ms"] for r in runs]
            results["failover"] = {"runs": runs, "gap_ms_median": round(statistics.median(gaps), 1), "gap_ms_max": max(gaps),
                                   "gap_ms_min": min(gaps),
                                   "gap_ms_p90": round(statistics.quantiles(gaps, n=10)[-1], 1) if len(gaps) > 1 else max(gaps)}
            for key, sel in (("holder_not_leader", False), ("holder_was_leader", True)):
                g = [r["gap_ms"] for r in runs if r["stopped_was_leader"] is sel]
                if g:
                    results["failover"][key] = {"runs": len(g), "gap_ms_median": round(statistics.median(g), 1),
                                                "gap_ms_max": max(g)}
            if not args.only:
                results["tcp_stream"] = tcp_stream(lab)
                print(f"tcp stream: {results['tcp_stream']}", flush=True)
        finally:
            lab.close()
    finish(results)


def finish(results: dict) -> None:
    only = results["params"].get("only")
    write_results(f"failover-{only}" if only else "failover", results, render(results))


def render(r: dict) -> str:
    return "\n\n".join(part for part in (render_restart(r), render_failover(r)) if part)


def render_restart(r: dict) -> str:
    if "restart_sigterm" not in r:
        return ""
    lines = ["Restart in place: the holder's agent restarted with `egress-lab agent restart` (the node untouched) "
             "while a pod on another node pings the external host through the floating IP every 10 ms.", "",
             "| signal | runs | probes lost / sent | longest gap median / max | FloatingIPMoved |", "|---|---|---|---|---|"]
    for key, name in (("restart_sigterm", "SIGTERM (graceful restart)"), ("restart_kill", "kill -9 (crash)")):
        x = r[key]
        lines.append(f"| {name} | {len(x['runs'])} | {x['lost_total']} / {x['sent_total']} | "
                     f"{x['gap_ms_median']} / {x['gap_ms_max']} ms | {x['moves_total']} |")
    return "\n".join(lines)


def render_failover(r: dict) -> str:
    if "failover" not in r:
        return ""
    f, t, c = r["failover"], r.get("tcp_stream"), r.get("change_latency")
    lines = [
        "Lab: 3 workers + 1 master in network namespaces, etcd 3.4 on the etcd host, one egress-agent per node "
        "(`--datapath kernel`, lease TTL 2 s, fast failure detector). The holder of 192.0.2.100 is stopped with "
        "`egress-lab node stop` (uplink down, agent killed -9).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| failover gap, ping every 10 ms (median of {len(f['runs'])}) | {f['gap_ms_median']} ms |",
        f"| failover gap, p90 | {f['gap_ms_p90']} ms |" if "gap_ms_p90" in f else None,
        f"| failover gap, max | {f['gap_ms_max']} ms |",
        f"| failover gap, min | {f['gap_ms_min']} ms |",
        *[f"| failover gap, {k.replace('_', ' ')} ({v['runs']} runs): median / max | {v['gap_ms_median']} / {v['gap_ms_max']} ms |"
          for k, v in f.items() if k.startswith("holder_")],
    ]
    if t:
        lines += [f"| established TCP stream survives the move | {'yes' if t['survived'] else 'no'} |",
                  f"| TCP stream stall | {t['stall_ms']} ms |"]
    if c:
        lines += [
            f"| last node programmed, relative to `terraform apply` returning (median of {c['changes']}; negative = before) | {c['after_apply_ms_median']} ms |",
            f"| change latency, max | {c['after_apply_ms_max']} ms |",
            f"| `terraform apply` itself (median) | {c['terraform_apply_s_median']} s |",
        ]
    lines += [
        "",
        "Gaps per run (ms): " + ", ".join(f"{x['gap_ms']}{' (leader)' if x['stopped_was_leader'] else ''}" for x in f["runs"]),
        "",
        "(leader): the stopped holder was also the controller leader, so a new leader had to take over before the IP could move.",
    ]
    if t:
        lines += ["", f"TCP stream: {'survived' if t['survived'] else 'did not survive'}; stall {t['stall_ms']} ms"
                  + (f"; iperf3 error: {t['error']}" if t["error"] else "")]
    return "\n".join(line for line in lines if line is not None)


if __name__ == "__main__":
    main()
