"""The shared results file of the benchmarks: one JSON record per line in ``benchmarks/results.jsonl``,
each stamped with date, machine, load and git commit."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
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


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: ``VmHWM`` of /proc/self/status, else ``ru_maxrss``.

    Not ``ru_maxrss`` first: Linux carries it over from the parent when a child is started with
    vfork + exec (as ``subprocess`` does), so a child would report its parent's peak when that is larger.
    """
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stamp(benchmark: str) -> dict:
    """The fields every record starts with."""
    return {"benchmark": benchmark, "date": datetime.date.today().isoformat(), "machine": machine(),
            "load_average_1min": round(os.getloadavg()[0], 2), "git_commit": git_commit()}


def append(records: list[dict]) -> None:
    with open(RESULTS, "a") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    print(f"appended {len(records)} results to {RESULTS.relative_to(REPO)}")


EXTHOMFAM = REPO.parent / "shared" / "data" / "pfam" / "exthomfam.tsv.gz"
CLEAN_DATASET = REPO / "runs" / "bench" / "ext_clean"
NOISY_DATASET = REPO / "runs" / "bench" / "ext_r40"


def ensure_exthomfam_datasets() -> tuple[Path, Path]:
    """The clean and r=0.4 extHomFam datasets (per-family split, seed 0), prepared on first use."""
    from protlc.data.prepare import PrepareOptions, prepare_dataset

    for out, noise in ((CLEAN_DATASET, 0.0), (NOISY_DATASET, 0.4)):
        if not (out / "manifest.json").is_file():
            if not EXTHOMFAM.is_file():
                raise SystemExit(f"{EXTHOMFAM} not found: the benchmarks need ../shared/data (or pass --dataset)")
            prepare_dataset([EXTHOMFAM], out, PrepareOptions(label_noise=noise, seed=0), overwrite=True)
    return CLEAN_DATASET, NOISY_DATASET
