"""Run the benchmarks, append their figures to ``benchmarks/results.jsonl`` and refresh ``README.md``.

    python benchmarks/run.py [--quick] [--only NAME ...] [--checkpoint CKPT ...]
                             [--dataset DIR] [--noisy-dataset DIR]

NAME is one of prepare, train, score, hmmer, profile, gpu (default: all, in that order; gpu only when torch
sees a CUDA device, or with --quick, where it is the CPU smoke test). Each benchmark runs
as its own script (``bench_<name>.py``, ``profile_hot.py``) in a child process; a failing one is
reported and the others still run. ``--checkpoint`` (repeatable) gives protlc classifier checkpoints
trained on all extHomFam families to put next to HMMER. ``--quick`` runs small versions (minutes) to
check that everything works and records nothing. Otherwise the tables of ``benchmarks/README.md`` are
regenerated at the end (``benchmarks/table.py``). On a shared machine, run with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import results

HERE = Path(__file__).resolve().parent

# name: (script, full-run arguments, --quick arguments)
BENCHES = {
    "prepare": ("bench_prepare.py", [], ["--repeats", "1", "--copies", "20"]),
    "train": ("bench_train.py", [], ["--presets", "small", "--steps", "5"]),
    "score": ("bench_score.py", [], ["--sizes", "10000,100000"]),
    "hmmer": ("bench_hmmer.py", [], ["--families", "10,30", "--queries", "60"]),
    "profile": ("profile_hot.py", [], ["--steps", "2", "--variants", "10000"]),
    "gpu": ("bench_gpu.py", [], ["--quick", "--device", "cpu"]),
}


def default_names(quick: bool) -> list[str]:
    """Every benchmark; ``gpu`` only with --quick (its CPU smoke test) or when torch sees a CUDA device."""
    import torch

    return [n for n in BENCHES if n != "gpu" or quick or torch.cuda.is_available()]


def command(name: str, args: argparse.Namespace) -> list[str]:
    script, full, quick = BENCHES[name]
    argv = [sys.executable, str(HERE / script), *((*quick, "--no-record") if args.quick else full)]
    if name in ("train", "profile") and args.dataset:
        argv += ["--dataset", str(args.dataset)]
    if name == "hmmer":
        argv += [a for c in args.checkpoint for a in ("--checkpoint", str(c))]
        argv += ["--clean-dataset", str(args.dataset)] if args.dataset else []
        argv += ["--noisy-dataset", str(args.noisy_dataset)] if args.noisy_dataset else []
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small versions of every benchmark")
    parser.add_argument("--only", action="append", choices=list(BENCHES), help="run only these (repeatable)")
    parser.add_argument("--checkpoint", type=Path, action="append", default=[],
                        help="protlc classifier checkpoint for the HMMER comparison (repeatable)")
    parser.add_argument("--dataset", type=Path, default=None, help="prepared clean extHomFam dataset")
    parser.add_argument("--noisy-dataset", type=Path, default=None, help="the same split with r=0.4 label noise")
    args = parser.parse_args(argv)
    if args.dataset is None or args.noisy_dataset is None:
        clean, noisy = results.ensure_exthomfam_datasets()
        args.dataset, args.noisy_dataset = args.dataset or clean, args.noisy_dataset or noisy
    failed = []
    for name in args.only or default_names(args.quick):
        argv_ = command(name, args)
        print(f"== {name}: {' '.join(argv_[1:])}", flush=True)
        started = time.perf_counter()
        if subprocess.run(argv_).returncode:
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - started:.0f} s{' (FAILED)' if name in failed else ''}", flush=True)
    if not args.quick:
        subprocess.run([sys.executable, str(HERE / "table.py")], check=False)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
