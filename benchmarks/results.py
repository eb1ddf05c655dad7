"""The shared results file of the benchmarks: one JSON record per line in ``benchmarks/results.jsonl``,
each stamped with date, machine, load and git commit."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results.jsonl"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()} ({cpu}, {os.cpu_count()} cores, Python {platform.python_version()})"


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def stamp(benchmark: str) -> dict:
    """The fields every record starts with."""
    return {"benchmark": benchmark, "date": datetime.date.today().isoformat(), "machine": machine(),
            "load_average_1min": round(os.getloadavg()[0], 2), "git_commit": git_commit()}


def append(records: list[dict]) -> None:
    with open(RESULTS, "a") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    print(f"appended {len(records)} results to {RESULTS.relative_to(REPO)}")
