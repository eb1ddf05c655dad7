"""The DMS benchmark of issue 4: fitness head vs ridge on the nn4dms main splits, and transfer vs scratch.

    python workflows/dms_nn4dms.py OUT [--data ../shared/data/dms/nn4dms] [--accelerator cpu|gpu]
        [--datasets avgfp,bgl3,pab1] [--max-epochs 40] [--pfam PREPARED_DIR] [--pfam-epochs 2]
        [--deadline SECONDS]

Every data set is trained with each entry of :data:`GRID` (the configs/dms.yaml defaults, and the same
with ``head.additive=ridge``: a linear term that starts at ridge with substitution-type columns, whose
own Pearson is reported as ``additive_start/test/pearson``); the entry reported for a data set is the one with the best **tune**
Pearson (the test split is never used to choose). Every run's ridge baseline is fitted on the same
split. With ``--pfam`` (a dataset made by ``protlc prepare``, e.g. from extHomFam) a ProtCNN classifier
of the same encoder size is first trained with ``protlc train``, and Pab1 is trained from its encoder
(``--init``) for the transfer-vs-scratch comparison with ``pab1-default``. Runs go in parallel on a
GPU and one after the other on a CPU (about 75 minutes on 2 cores for the three data sets). Results:
``OUT/summary.json`` and each run directory. Runs still going at ``--deadline`` are stopped and
reported with the epochs they completed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
PROTLC = [sys.executable, "-m", "protlc"]
# name -> config overrides of configs/dms.yaml; each data set is trained with every entry.
GRID = {
    "default": ["head.additive=none"],  # (train-dms' own default, head.additive=auto, trains both entries itself)
    "additive": ["head.additive=ridge"],
}
# The Pfam classifier for the transfer run has the DMS default encoder size (configs/dms.yaml: model).
PFAM_ENCODER = ["--preset", "small", "--set", "model.filters=32", "--set", "model.dilations=[1, 2]"]
KEYS = ("test/pearson", "test/spearman", "tune/pearson", "tune/spearman", "ridge/test/pearson",
        "ridge/test/spearman", "ridge/tune/pearson", "additive_start/test/pearson", "additive_start/tune/pearson",
        "epochs", "best_epoch", "time/fit_seconds", "time/seconds_per_epoch", "num_parameters")


def train_dms_command(data: Path, name: str, out: Path, overrides: list[str], args, init: Path | None = None):
    command = [*PROTLC, "train-dms", str(data / name / f"{name}.tsv"), "--splits", str(data / name / "splits_main"),
               "--out", str(out), "--accelerator", args.accelerator, "--max-epochs", str(args.max_epochs),
               "--set", "trainer.progress_bar=false"]
    for item in overrides:
        command += ["--set", item]
    if init is not None:
        command += ["--init", str(init)]
    return command


def launch(command: list[str], log: Path, threads: str | None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": threads} if threads else {})}
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO, env=env)


def run_all(jobs: dict[str, list[str]], out: Path, parallel: bool, deadline: float) -> dict[str, float]:
    """Run ``jobs`` (name -> command); returns each job's wall seconds. Stops what runs past ``deadline``."""
    walls, running = {}, {}
    for name, command in jobs.items():
        if time.time() > deadline:
            break
        # parallel GPU runs only collate batches on the CPU: one thread each keeps 16 cores uncrowded
        running[name] = (launch(command, out / "logs" / f"{name}.log", "1" if parallel else None), time.time())
        if not parallel:
            _wait({name: running.pop(name)}, walls, deadline)
    _wait(running, walls, deadline)
    return walls


def _wait(running: dict, walls: dict, deadline: float) -> None:
    while running:
        for name, (process, started) in list(running.items()):
            if process.poll() is not None:
                walls[name] = time.time() - started
                del running[name]
            elif time.time() > deadline:
                process.terminate()
                process.wait()
                walls[name] = time.time() - started
                del running[name]
        time.sleep(1)


def summarize(run: Path, wall: float | None) -> dict:
    final = run / "final_metrics.json"
    if final.is_file():
        metrics = json.loads(final.read_text())
        row = {k: metrics.get(k) for k in KEYS}
    else:  # stopped at the deadline: what the log says so far
        row = {"unfinished": True}
        log = run / "metrics.csv"
        tune = pd.read_csv(log) if log.is_file() else pd.DataFrame()
        if "tune/pearson" in tune:
            tune = tune.dropna(subset=["tune/pearson"])
            row.update({"epochs": int(len(tune)), "best_tune_pearson_so_far": float(tune["tune/pearson"].max())})
    row["wall_seconds"] = wall
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "dms" / "nn4dms")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--datasets", default="avgfp,bgl3,pab1")
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--pfam", type=Path, default=None, help="prepared Pfam dataset for the transfer run")
    parser.add_argument("--pfam-epochs", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds before runs are stopped")
    args = parser.parse_args()
    started = time.time()
    deadline = started + args.deadline
    parallel = args.accelerator != "cpu"
    jobs = {f"{d}-{c}": train_dms_command(args.data, d, args.out / f"{d}-{c}", GRID[c], args)
            for d in args.datasets.split(",") for c in GRID}
    transfer_job = None
    if args.pfam is not None:
        pfam_run = args.out / "pfam-small"
        pfam = [*PROTLC, "train", str(args.pfam), "--out", str(pfam_run), *PFAM_ENCODER, "--max-epochs",
                str(args.pfam_epochs), "--accelerator", args.accelerator, "--seed", "0"]
        init = pfam_run / "checkpoints" / "last.ckpt"
        transfer = train_dms_command(args.data, "pab1", args.out / "pab1-transfer", GRID["default"], args, init)
        transfer_job = ["bash", "-c", f"{shlex.join(map(str, pfam))} && {shlex.join(map(str, transfer))}"]
        jobs = {"pfam-then-pab1-transfer": transfer_job, **jobs}
    walls = run_all(jobs, args.out, parallel, deadline)

    summary: dict = {"device_wall_seconds": time.time() - started, "runs": {}, "selected": {}}
    for name in jobs:
        if name == "pfam-then-pab1-transfer":
            summary["runs"]["pab1-transfer"] = summarize(args.out / "pab1-transfer", walls.get(name))
            pfam_metrics = args.out / "pfam-small" / "final_metrics.json"
            if pfam_metrics.is_file():
                m = json.loads(pfam_metrics.read_text())
                summary["pfam_classifier"] = {k: m.get(k) for k in ("test/accuracy", "epochs", "time/fit_seconds")}
        else:
            summary["runs"][name] = summarize(args.out / name, walls.get(name))
    for dataset in args.datasets.split(","):
        done = {c: summary["runs"][f"{dataset}-{c}"] for c in GRID
                if summary["runs"][f"{dataset}-{c}"].get("tune/pearson") is not None}
        if done:
            best = max(done, key=lambda c: done[c]["tune/pearson"])
            summary["selected"][dataset] = {"config": best, "overrides": GRID[best], **done[best]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["selected"], indent=2))


if __name__ == "__main__":
    main()
