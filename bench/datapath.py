"""Datapath benchmark: gateway path vs direct masquerade, and classification at scale.

Run as root from the repo: `.venv/bin/python bench/datapath.py [--seconds 10]`.
Builds its own lab (prefix `egb-`, 3 workers + 1 master), measures, tears it down,
and writes bench/results/datapath-<date>.json and .md with the machine noted.

Measured, side by side in one run, from pods on worker1 to 198.51.100.10:
  * direct: an unselected pod, masqueraded to its node IP by worker1;
  * gateway: a selected pod, steered by eBPF to worker2, SNATed there;
  * gateway with 1,000 policies x 10 CIDRs and 10,000 inventory pods (every
    policy also selects the measured pod, so its trie group holds 10,000 CIDRs,
    and worker2 holds all 1,000 policies). Each policy also excludes a /26 of
    its first CIDR and has one of three priorities (issue #12), so the group's
    trie holds resolved answers (hole entries included) and worker2 SNATs per
    selection group through interval maps of the same resolution. (Label
    expressions are resolved to pod IPs before the datapath: they cost in
    node/desired.py, not here.) Map and rule sizes are recorded;
  * naive baseline: the same steering written as one nftables rule per
    (pod, CIDR) on worker1 (`meta mark set`, 100,000 rules, evaluated per
    packet), which is what a user would otherwise write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
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

from helpers.lab import KernelLab, LabPolicy  # noqa: E402
from machine import describe_machine  # noqa: E402

from egress_agent.datapath.routing import mark_for  # noqa: E402
from egress_lab import topology as T  # noqa: E402

EXT = T.EXT_HOST_IP


def iperf(lab: KernelLab, pod: str, seconds: int) -> float:
    out = lab.run(T.pod_ns(pod), f"iperf3 -c {EXT} -t {seconds} -J")
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def ping(lab: KernelLab, pod: str, count: int) -> dict:
    out = lab.run(T.pod_ns(pod), f"ping -q -c {count} -i 0.002 {EXT}")
    mn, avg, mx, mdev = map(float, re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out).groups())
    loss = float(re.search(r"([\d.]+)% packet loss", out).group(1))
    return {"rtt_avg_us": round(avg * 1000, 1), "rtt_min_us": round(mn * 1000, 1), "rtt_max_us": round(mx * 1000, 1),
            "rtt_mdev_us": round(mdev * 1000, 1), "loss_pct": loss}


def measure(lab: KernelLab, pod: str, seconds: int, probes: int) -> dict:
    r = {"gbit_s": round(iperf(lab, pod, seconds), 2)}
    r.update(ping(lab, pod, probes))
    return r


def scale_policies(n_policies: int, cidrs_per: int, pods_per: int, measured_pod: str) -> tuple[list[LabPolicy], dict]:
    """Policies 1..n-1 use CIDRs in 100.64.0.0/10 and select fake inventory pods (10.244.100+.x)."""
    nets = ipaddress.ip_network("100.64.0.0/10").subnets(new_prefix=24)
    fake = (str(ipaddress.ip_address("10.244.100.0") + i) for i in range(1, 1 << 16))
    fake_pods: dict[str, list[str]] = {}
    policies = []
    for i in range(n_policies - 1):
        cidrs = tuple(next(nets).with_prefixlen for _ in range(cidrs_per))
        name = f"bulk-{i}"
        fake_pods[name] = [next(fake) for _ in range(pods_per)]
        src = str(ipaddress.ip_address("100.127.0.0") + i + 1)  # not in the node subnet: SNAT rule only, no address
        hole = next(ipaddress.ip_network(cidrs[0]).subnets(new_prefix=26)).with_prefixlen
        policies.append(LabPolicy(name, cidrs, src, "worker2", (measured_pod,), excluded_cidrs=(hole,),
                                  priority=999 + i % 3))
    measured = LabPolicy("measured", ("198.51.100.0/24",) + tuple(next(nets).with_prefixlen for _ in range(cidrs_per - 1)),
                         "192.0.2.100", "worker2", (measured_pod,))
    return [measured] + policies, fake_pods


def apply_with_inventory(lab: KernelLab, policies: list[LabPolicy], fake_pods: dict[str, list[str]]) -> float:
    """Apply, adding the fake inventory pods to each policy's cluster-wide selection."""
    from dataclasses import replace

    t0 = time.monotonic()
    for node in ("worker1", "worker2", "worker3", "master1"):
        st = lab.node_state(node, policies)
        paths = tuple(replace(p, selected_pod_ips=p.selected_pod_ips | frozenset(fake_pods.get(p.name, ()))) for p in st.policies)
        lab.datapath(node).apply(replace(st, policies=paths))
    return round(time.monotonic() - t0, 2)


def naive_chain(lab: KernelLab, pods: list[str], cidrs: list[str], measured_ip: str, gateway_ip: str) -> float:
    """One rule per (pod, CIDR) on the source node, the measured pair last (worst case, as for any late-added pod)."""
    mark = mark_for(gateway_ip)
    lines = ["table ip naive_steer", "delete table ip naive_steer",
             "add table ip naive_steer",
             "add chain ip naive_steer classify { type filter hook prerouting priority mangle; policy accept; }"]
    for pod in pods:
        for c in cidrs:
            lines.append(f"add rule ip naive_steer classify ip saddr {pod} ip daddr {c} meta mark set {mark:#x}")
    lines.append(f"add rule ip naive_steer classify ip saddr {measured_ip} ip daddr 198.51.100.0/24 meta mark set {mark:#x}")
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    t0 = time.monotonic()
    subprocess.run(["ip", "netns", "exec", lab.node("worker1").netns, "nft", "-f", f.name], check=True)
    os.unlink(f.name)
    return round(time.monotonic() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5, help="alternations of the one-policy and the scale state")
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--cidrs", type=int, default=10)
    ap.add_argument("--pods", type=int, default=10000)
    args = ap.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="egress-bench-"))
    os.environ["EGRESS_LAB_PREFIX"] = "egb-"
    import helpers.lab as hl

    hl.PREFIX = "egb-"
    lab = KernelLab(run_dir, workers=3, masters=1)
    results: dict = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": describe_machine(),
                     "params": vars(args)}
    try:
        lab.add_pod("direct", "worker1", "bench")
        lab.add_pod("steered", "worker1", "bench")
        one = [LabPolicy("measured", ("198.51.100.0/24",), "192.0.2.100", "worker2", ("steered",))]
        lab.apply(one)
        assert lab.whoami("steered") == "192.0.2.100" and lab.whoami("direct") == "192.0.2.11"
        for _ in range(2):  # warm up both paths
            iperf(lab, "direct", 1), iperf(lab, "steered", 1)
        # Rounds alternate the one-policy and the scale state, so slow spells of this shared machine hit both
        # alike; the ratios are medians of the per-round ratios (paired), the table shows per-path medians.
        policies, fake = scale_policies(args.policies, args.cidrs, args.pods // max(1, args.policies - 1), "steered")
        rounds: list[dict] = []
        for _ in range(args.rounds):
            lab.apply(one)
            assert lab.whoami("steered") == "192.0.2.100"
            r = {"direct": measure(lab, "direct", args.seconds, args.probes),
                 "gateway_1_policy": measure(lab, "steered", args.seconds, args.probes)}
            r["apply_scale_seconds"] = apply_with_inventory(lab, policies, fake)
            assert lab.whoami("steered") == "192.0.2.100"
            r["gateway_scale"] = measure(lab, "steered", args.seconds, args.probes)
            r["direct_during_scale"] = measure(lab, "direct", args.seconds, args.probes)
            rounds.append(r)
        results["rounds"] = rounds
        for path in ("direct", "gateway_1_policy", "gateway_scale", "direct_during_scale"):
            results[path] = {k: statistics.median(r[path][k] for r in rounds) for k in rounds[0][path]}
        results["apply_scale_seconds"] = statistics.median(r["apply_scale_seconds"] for r in rounds)
        results["sizes_scale"] = {"worker1": lab.datapath("worker1").sizes(), "worker2": lab.datapath("worker2").sizes()}

        # Naive baseline: detach eBPF steering from the measured pod, steer by nftables rules instead.
        lab.apply(one)
        lab.datapath("worker1").steering.detach(lab.veth("steered"))
        assert lab.whoami("steered") == "192.0.2.11"  # no steering without the program
        all_fake = [ip for ips in fake.values() for ip in ips]
        cidrs = sorted({c for p in policies[1:] for c in p.destination_cidrs})[: args.cidrs]
        results["naive_rules"] = len(all_fake) * len(cidrs) + 1
        results["naive_load_seconds"] = naive_chain(lab, all_fake, cidrs, lab.pod_ip("steered"), lab.node("worker2").ip)
        assert lab.whoami("steered") == "192.0.2.100"
        results["naive_gateway"] = measure(lab, "steered", args.seconds, args.probes)
    finally:
        lab.close()
    g1, nv = results["gateway_1_policy"], results["naive_gateway"]

    def paired(a: str, b: str, key: str) -> float:
        return round(statistics.median(r[a][key] / r[b][key] for r in results["rounds"]), 2)

    results["ratios"] = {
        "gateway_vs_direct_throughput": paired("gateway_1_policy", "direct", "gbit_s"),
        "gateway_vs_direct_rtt": paired("gateway_1_policy", "direct", "rtt_avg_us"),
        "scale_vs_1_policy_throughput": paired("gateway_scale", "gateway_1_policy", "gbit_s"),
        "scale_vs_1_policy_rtt": paired("gateway_scale", "gateway_1_policy", "rtt_avg_us"),
        "naive_vs_1_policy_throughput": round(nv["gbit_s"] / g1["gbit_s"], 3),
        "naive_vs_1_policy_rtt": round(nv["rtt_avg_us"] / g1["rtt_avg_us"], 2),
    }
    out = ROOT / "bench" / "results" / f"datapath-{dt.date.today().isoformat()}"
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(results))
    print(render(results))


def render(r: dict) -> str:
    m = r["machine"]
    rows = [("direct (node masquerade)", r["direct"]), ("gateway, 1 policy", r["gateway_1_policy"]),
            (f"gateway, {r['params']['policies']} policies x {r['params']['cidrs']} CIDRs, {r['params']['pods']} pods", r["gateway_scale"]),
            ("direct, during the scale run", r["direct_during_scale"]),
            (f"naive nftables steering ({r['naive_rules']} rules)", r["naive_gateway"])]
    lines = [f"# Datapath benchmark {r['date']}", "",
             f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
             f"Python {m['python']}. "
             f"iperf3 {r['params']['seconds']} s single TCP stream, ping {r['params']['probes']} probes at 2 ms, "
             f"{r['params'].get('rounds', 1)} rounds alternating the one-policy and the scale state (medians; "
             "ratios are medians of per-round ratios; the naive row is one run), "
             "pod on worker1 -> 198.51.100.10; gateway = worker2. All in network namespaces on one host (veth + bridge).", "",
             "| path | Gbit/s | RTT avg µs | RTT min µs | RTT max µs | loss % |", "|---|---|---|---|---|---|"]
    for name, x in rows:
        lines.append(f"| {name} | {x['gbit_s']} | {x['rtt_avg_us']} | {x['rtt_min_us']} | {x['rtt_max_us']} | {x['loss_pct']} |")
    lines += ["", "Ratios: " + ", ".join(f"{k} = {v}" for k, v in r["ratios"].items()),
              f"Applying the scale state to 4 nodes took {r['apply_scale_seconds']} s; loading the naive chain took {r['naive_load_seconds']} s.",
              "", "State at scale (entries written): " + "; ".join(
                  f"{node}: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()) for node, sizes in r.get("sizes_scale", {}).items()),
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
