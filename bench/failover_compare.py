"""The lab's failover gap (bench/failover.py) for two git revisions, side by side, on this machine.

    .venv/bin/python bench/failover_compare.py --baseline main --candidate HEAD [--rounds 2] [--runs 15]
        [--include BASELINE.json CANDIDATE.json] [--name failover-probe-auth]

Each revision is exported (`git archive`) to a temporary directory and bench/failover.py runs from
there with that revision's agent code on PYTHONPATH (same venv, same harness: this checkout's
bench/failover.py is copied into both). Rounds alternate the order (baseline first, then candidate
first, ...) so a change in the machine's load during the run does not favour one side. `--include`
adds the JSON of earlier runs made the same way. Writes bench/results/<name>-<date>.json and .md.
Needs root (the lab is network namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe_machine, write_results  # noqa: E402


def export(rev: str, into: Path) -> str:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.copy(ROOT / "bench" / "failover.py", into / "bench" / "failover.py")
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True, capture_output=True,
                          text=True).stdout.strip()


def run_once(tree: Path, runs: int) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'agent'}:{tree / 'provider'}"}
    for old in (tree / "bench" / "results").glob("failover-*.json"):
        old.unlink()
    subprocess.run([sys.executable, "bench/failover.py", "--runs", str(runs), "--changes", "1"], cwd=tree, env=env,
                   check=True)
    return json.loads(next((tree / "bench" / "results").glob("failover-*.json")).read_text())


def gaps(result: dict) -> list[float]:
    return [r["gap_ms"] for r in result["failover"]["runs"]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="main")
    ap.add_argument("--candidate", default="HEAD")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--include", nargs=2, metavar=("BASELINE_JSON", "CANDIDATE_JSON"))
    ap.add_argument("--name", default="failover-compare")
    args = ap.parse_args()
    out = {"machine": describe_machine(), "params": vars(args), "baseline": [], "candidate": []}
    if args.include:
        out["baseline"].append(json.loads(Path(args.include[0]).read_text()))
        out["candidate"].append(json.loads(Path(args.include[1]).read_text()))
    with tempfile.TemporaryDirectory(prefix="egress-compare-") as tmp:
        trees = {side: Path(tmp) / side for side in ("baseline", "candidate")}
        out["revisions"] = {side: export(getattr(args, side), trees[side]) for side in trees}
        for i in range(args.rounds):
            order = ("baseline", "candidate") if (i + len(out["baseline"])) % 2 == 0 else ("candidate", "baseline")
            for side in order:
                print(f"round {i + 1}: {side} ({out['revisions'][side]})", flush=True)
                out[side].append(run_once(trees[side], args.runs))
    summary = {}
    for side in ("baseline", "candidate"):
        g = [x for r in out[side] for x in gaps(r)]
        summary[side] = {"runs": len(g), "median_ms": round(statistics.median(g), 1), "mean_ms": round(statistics.mean(g), 1),
                         "min_ms": min(g), "max_ms": max(g),
                         "per_round_median_ms": [round(statistics.median(gaps(r)), 1) for r in out[side]]}
    summary["median_ratio"] = round(summary["candidate"]["median_ms"] / summary["baseline"]["median_ms"], 3)
    out["summary"] = summary
    write_results(args.name, out, render(out))
    return 0


def render(out: dict) -> str:
    s, rev = out["summary"], out.get("revisions", {})
    b, c = s["baseline"], s["candidate"]
    lines = [
        f"bench/failover.py's failover gap (a pod pings the external host every 10 ms; the floating IP's holder is "
        f"stopped: uplink down, agent killed -9) for two revisions on the same machine, in alternating rounds. "
        f"Baseline `{out['params']['baseline']}` ({rev.get('baseline', '?')}), candidate "
        f"`{out['params']['candidate']}` ({rev.get('candidate', '?')}).",
        "",
        "| | runs | median (ms) | mean (ms) | min (ms) | max (ms) | median per round (ms) |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| baseline | {b['runs']} | {b['median_ms']} | {b['mean_ms']} | {b['min_ms']} | {b['max_ms']} | "
        f"{', '.join(map(str, b['per_round_median_ms']))} |",
        f"| candidate | {c['runs']} | {c['median_ms']} | {c['mean_ms']} | {c['min_ms']} | {c['max_ms']} | "
        f"{', '.join(map(str, c['per_round_median_ms']))} |",
        "",
        f"Candidate / baseline median: **{s['median_ratio']}**.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
