"""Benchmark ``protlc score``: variants/s and peak memory for 10^4, 10^5 and 10^6 variants on the CPU.

    python benchmarks/bench_score.py [--sizes 10000,100000,1000000] [--checkpoint CKPT] [--no-record]

Libraries are random multi-mutants of the real Pab1 wild type (nn4dms wt_sequences.tsv): 1-4 distinct
positions each, mutant letters drawn uniformly from the 19 others, ProteinGym notation (``G1A:N2K``),
written as CSV to ``benchmarks/work/`` (a seeded numpy Generator, so every run scores the same
libraries). Each size is scored in a fresh child process, which reports its wall time and its peak
resident memory (``VmHWM``, see ``results.peak_rss_mb``: model, torch and the streaming pipeline
included).

The model is the checkpoint given, else an untrained fitness model of the ``configs/dms.yaml`` size
for the Pab1 wild type: speed and memory do not depend on the weights' values. Results are printed and
appended to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import append, peak_rss_mb, stamp  # noqa: E402

WORK = REPO / "benchmarks" / "work"
PAB1_WT = "GNIFIKNLHPDIDNKALYDTFSVFGDILSSKIATDENGKSKGFGFVHFEEEGAAKEAIDALNGMLLNGQEIYVAP"
LETTERS = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
MAX_SUBSTITUTIONS = 4


def write_library(path: Path, n: int, seed: int = 0, chunk: int = 200_000) -> None:
    """``n`` random 1-4-substitution mutants of Pab1 in a ``mutant`` column (ProteinGym notation)."""
    rng = np.random.default_rng(seed)
    wt = np.array(list(PAB1_WT))
    with open(path, "w") as handle:
        handle.write("mutant\n")
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            counts = rng.integers(1, MAX_SUBSTITUTIONS + 1, size)
            positions = np.argsort(rng.random((size, len(wt))), axis=1)[:, :MAX_SUBSTITUTIONS]
            shifts = rng.integers(1, len(LETTERS), (size, MAX_SUBSTITUTIONS))  # never the wild-type letter
            mutant = LETTERS[(np.searchsorted(LETTERS, wt[positions]) + shifts) % len(LETTERS)]  # LETTERS is sorted
            lines = [":".join(f"{wt[p]}{p + 1}{m}" for p, m in zip(positions[i, :c], mutant[i, :c]))
                     for i, c in enumerate(counts)]
            handle.write("\n".join(lines) + "\n")


def untrained_checkpoint(path: Path) -> dict:
    """An untrained fitness checkpoint of the default DMS size for Pab1; returns its sizes."""
    from protlc.model import get_preset
    from protlc.training.fitness import FitnessModule, export_checkpoint
    from protlc.training.fitness_run import load_dms_config

    config = load_dms_config([REPO / "configs" / "dms.yaml"])
    config["head"]["additive"] = "none"  # one network (the default, auto, is a choice made by training)
    model_config = get_preset(config["model"]["preset"]).to_dict()
    model_config.update({k: v for k, v in config["model"].items() if k != "preset"})
    export_checkpoint(FitnessModule(model_config, config["head"], PAB1_WT, "proteingym", 1, config), path)
    return {"model": model_config, "head": config["head"]}


def child(library: str, checkpoint: str, out: str, batch_size: int, chunk_size: int) -> None:
    """Score in this process and print wall seconds, peak RSS and counts as JSON."""
    from protlc.dms.scoring import score_library

    started = time.perf_counter()
    summary = score_library(checkpoint, library, out, batch_size=batch_size, chunk_size=chunk_size)
    seconds = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "rows": summary.scored,
                      "unique_sequences": summary.unique_sequences}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results.jsonl")
    parser.add_argument("--child", nargs=3, metavar=("LIBRARY", "CHECKPOINT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.batch_size, args.chunk_size)
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint
    sizes_info = {"model": "given checkpoint"}
    if checkpoint is None:
        checkpoint = WORK / "pab1_untrained.ckpt"
        sizes_info = untrained_checkpoint(checkpoint)
    records = []
    for n in (int(float(s)) for s in args.sizes.split(",")):
        library, out = WORK / f"pab1_random_{n}.csv", WORK / f"pab1_random_{n}_scores.csv"
        if not library.is_file():
            write_library(library, n)
        result = subprocess.run([sys.executable, __file__, "--child", str(library), str(checkpoint), str(out),
                                 "--batch-size", str(args.batch_size), "--chunk-size", str(args.chunk_size)],
                                capture_output=True, text=True, check=True)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        assert figures["rows"] == n, figures
        records.append({
            **stamp("score"), "device": "cpu",
            "torch_threads": torch.get_num_threads(), "variants": n,
            "seconds": round(figures["seconds"], 2), "variants_per_second": round(n / figures["seconds"]),
            "peak_rss_mb": round(figures["peak_rss_mb"], 1), "unique_sequences": figures["unique_sequences"],
            "batch_size": args.batch_size, "chunk_size": args.chunk_size, "wild_type": "pab1 (75 residues)",
            **sizes_info,
        })
        print(json.dumps(records[-1]))
        out.unlink(missing_ok=True)
    if not args.no_record:
        append(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
