"""Pod-start benchmark: the latency egress-cni adds to a pod's CNI ADD.

Run as root from the repo: `.venv/bin/python bench/pod_start.py [--pods 200]`.
Builds its own lab (prefix `<tag>p-`, 1 worker + 1 master, etcd, kernel datapath),
and for each scenario starts `--pods` pods one after another on worker1
through the real chain, exactly as a runtime execs it:

  * without the plugin: Debian ptp + host-local only;
  * with the plugin: ptp + host-local, then egress-cni (ADD returns once
    worker1 has programmed the pod).

The added latency is the egress-cni step of each ADD (its process start,
imports, two RPCs, and the agent's wait for the node to program the pod).
Scenarios: 1 policy; and 1,000 policies with 10,000 pods in the inventory
(written straight to etcd from inside a node, 100 per transaction; they live
on a node that runs no datapath, so only the classification work grows).
Also measured: the plugin's bare start (VERSION, no agent call) and its import
time. Results: bench/results/pod-start-<date>.json and .md, machine noted.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from helpers.agent_lab import AgentLab  # noqa: E402
from machine import describe_machine, write_results  # noqa: E402

from egress_api import models  # noqa: E402
from egress_lab import cni, netns, topology as T  # noqa: E402

FIP = "192.0.2.100"
NODE = "worker1"
INVENTORY = r"""
import ipaddress, sys
from egress_agent.store.base import NAMESPACE, POD, Put
from egress_agent.store.etcd import EtcdStore
store = EtcdStore(sys.argv[1].split(","))
count = int(sys.argv[2])
store.commit([Put(NAMESPACE, f"inv{i}", {"name": f"inv{i}", "labels": {"team": f"t{i}"}}) for i in range(10)])
base = ipaddress.ip_address("10.244.16.0")  # outside every lab node's pod CIDR
batch = []
for i in range(count):
    name = f"inv-{i}"
    batch.append(Put(POD, f"inv{i % 10}/{name}", {"name": name, "namespace": f"inv{i % 10}", "node": "elsewhere",
                                                 "ip": str(base + i), "interface": "", "uid": "",
                                                 "labels": {"app": f"app{i % 100}"}}))
    if len(batch) == 100:
        store.commit(batch)
        batch = []
if batch:
    store.commit(batch)
print("ok")
"""


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def summary(values: list[float]) -> dict:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 1), "p99_ms": round(pct(ms, 99), 1),
            "mean_ms": round(statistics.fmean(ms), 1), "max_ms": round(max(ms), 1)}


def retried(call, *args):
    """One API write, retried while the agent says its store is busy (etcd times out on a loaded machine)."""
    from egress_api import errors

    for attempt in range(20):
        try:
            return call(*args)
        except errors.AlreadyExists:
            return None  # an earlier attempt landed after all
        except errors.Unavailable:
            time.sleep(min(5, 0.5 * 2**attempt))
    return call(*args)


def policies(client, count: int) -> None:
    """`count` policies; the first is the seed's (floating IP held by a node), the others use source IPs no node
    can hold (10.244.100.0+, fail closed), each selecting one of 100 app labels."""
    extra = [str(ipaddress.ip_address("10.244.100.0") + i) for i in range(count - 1)]
    retried(client.create_gateway, models.Gateway(name="default", floating_ips=[FIP, *extra]))
    retried(client.create_policy, models.Policy.model_validate({
        "name": "seed", "egress": [{"namespace_selector": {"match_labels": {"user": "alice"}},
                                    "pod_selector": {"match_labels": {"role": "frontend"}}}],
        "destination_cidrs": ["198.51.100.0/24"], "egress_source_ip": FIP}))
    for i, ip in enumerate(extra):
        retried(client.create_policy, models.Policy.model_validate({
            "name": f"p{i}", "egress": [{"pod_selector": {"match_labels": {"app": f"app{i % 100}"}}}],
            "destination_cidrs": [f"203.0.113.{(i % 16) * 16}/28"], "egress_source_ip": ip}))


def start_pods(lab: AgentLab, count: int, with_plugin: bool, tag: str) -> dict:
    """Start and delete `count` pods one after another: the whole ADD chain's wall time, and the egress-cni
    step's wall and CPU time (the plugin process and `ip netns exec`), summarised."""
    spec = lab.node(NODE)
    chain = cni.conflist(spec)
    if not with_plugin:
        chain["plugins"] = chain["plugins"][:1]
    totals, steps, cpus = [], [], []
    for i in range(count):
        name = f"{tag}{i}"
        pod_ns = T.pod_ns(name)
        netns.create(pod_ns)
        timings: dict[str, tuple[float, float]] = {}
        started = time.perf_counter()
        cni.add(spec, chain, name, pod_ns, "alice", name, {"role": "frontend" if i % 2 == 0 else "backend"}, timings)
        totals.append(time.perf_counter() - started)
        if with_plugin:
            steps.append(timings["egress"][0])
            cpus.append(timings["egress"][1])
        cni.delete(spec, chain, name, pod_ns, "alice", name)
        netns.remove(pod_ns)
    out = {"add_chain": summary(totals)}
    if with_plugin:
        out |= {"egress_step": summary(steps), "egress_step_cpu": summary(cpus)}
    return out


def bare_start(runs: int = 30) -> dict:
    exe = str(cni.plugin_dir() / "egress")
    env = dict(os.environ, CNI_COMMAND="VERSION")
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([exe], input='{"cniVersion": "1.0.0"}', env=env, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t)
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import egress_cni.main, egress_cni.agent"],
                         capture_output=True, text=True).stderr
    total_us = sum(int(line.split("|")[1]) for line in out.splitlines()
                   if line.startswith("import time:") and line.split("|")[2].startswith(" egress_cni")
                   and not line.split("|")[2].startswith("  "))
    return {"version_exec": summary(times), "import_ms": round(total_us / 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=200)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--inventory", type=int, default=10000)
    ap.add_argument("--scenario", choices=["small", "scale", "both"], default="both",
                    help="small: 1 policy; scale: --policies policies + --inventory pods (default both)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/pod_start.py needs root (network namespaces, eBPF)")
    tag = os.environ.get("EGRESS_TEST_NS_TAG", "eg")
    results: dict = {"machine": describe_machine(), "pods": args.pods, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        lab = AgentLab(Path(tmp) / "run", workers=1, masters=1, prefix=f"{tag}p-")
        try:
            with lab.client() as c:
                c.upsert_namespace(models.Namespace(name="alice", labels={"user": "alice"}))
            results["plugin_start"] = bare_start()
            print("plugin start:", results["plugin_start"], flush=True)
            if args.scenario in ("small", "both"):
                with lab.client() as c:
                    policies(c, 1)
                for label, with_plugin in (("1 policy, without egress-cni", False), ("1 policy, with egress-cni", True)):
                    results[label] = start_pods(lab, args.pods, with_plugin, "a" if with_plugin else "b")
                    print(label, results[label], flush=True)
                if args.scenario == "small":
                    return _write(results, args)
                with lab.client(timeout=120) as c:
                    for p in c.list_policies():
                        c.delete_policy(p.obj.name)
                    c.delete_gateway("default")
            # Scale: 1,000 policies and 10,000 pods in the inventory.
            with lab.client(timeout=120) as c:
                policies(c, args.policies)
            netns.run(lab.node(NODE).netns, [sys.executable, "-c", INVENTORY, lab.etcd_endpoints, str(args.inventory)],
                      timeout=600)
            time.sleep(5)  # let every node converge on the big snapshot before measuring
            big = f"{args.policies} policies + {args.inventory} pods"
            for label, with_plugin in ((f"{big}, without egress-cni", False), (f"{big}, with egress-cni", True)):
                results[label] = start_pods(lab, args.pods, with_plugin, "c" if with_plugin else "d")
                print(label, results[label], flush=True)
        finally:
            lab.close()
    _write(results, args)


def _write(results: dict, args) -> None:
    rows = ["| scenario | ADD chain p50 / p99 (ms) | added: egress-cni step p50 / p99 (ms) | its CPU p50 / p99 (ms) |",
            "|---|---|---|---|"]
    for label, r in results.items():
        if isinstance(r, dict) and "add_chain" in r:
            step, cpu = r.get("egress_step"), r.get("egress_step_cpu")
            rows.append(f"| {label} | {r['add_chain']['p50_ms']} / {r['add_chain']['p99_ms']} | "
                        + (f"{step['p50_ms']} / {step['p99_ms']} | {cpu['p50_ms']} / {cpu['p99_ms']}" if step
                           else "- | -") + " |")
    ps = results["plugin_start"]
    rows += ["", f"egress-cni bare start (VERSION, exec to exit): p50 {ps['version_exec']['p50_ms']} ms, "
                 f"p99 {ps['version_exec']['p99_ms']} ms; import of its modules {ps['import_ms']} ms.",
             f"{args.pods} pods per scenario, started one after another on {NODE} through ptp + host-local "
             "(+ egress-cni), each deleted (DEL) before the next. Goal: p99 added <= 150 ms."]
    results["load_after"] = os.getloadavg()
    rows.append(f"Load average (1 min) before / after: {results['load_before'][0]:.1f} / "
                f"{results['load_after'][0]:.1f} on {os.cpu_count()} CPUs shared with other jobs.")
    write_results("pod-start" if args.scenario == "both" else f"pod-start-{args.scenario}", results, "\n".join(rows))


if __name__ == "__main__":
    main()
