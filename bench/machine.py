"""Shared by the benchmarks: describe the machine and write results side by side."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def describe_machine() -> dict:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def write_results(name: str, results: dict, table_md: str) -> Path:
    """Write bench/results/<name>-<date>.json and .md; return the .md path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    day = _dt.date.today().isoformat()
    (RESULTS / f"{name}-{day}.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    m = results.get("machine") or describe_machine()
    md = RESULTS / f"{name}-{day}.md"
    md.write_text(
        f"# {name} ({m['date']})\n\n"
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"Python {m['python']}.\n\n{table_md}\n"
    )
    print(f"wrote {md}")
    return md
