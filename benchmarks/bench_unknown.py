"""Benchmark ``protlc predict`` with each unknown score: sequences/s end to end, and the ratio to max p.

    python benchmarks/bench_unknown.py CHECKPOINT INPUT [--scores max_p,nearest,nearest_kmer]
        [--homology-reference DATASET_DIR] [--threads 1] [--no-record]

CHECKPOINT: a classifier of a run on a dataset with novel families (so its calibration.json has a threshold
for the nearest scores); INPUT: sequences to predict (e.g. that dataset's ``test.parquet``). Every score is
timed in this one process, one after the other, through :func:`protlc.predict.predict` (reading, encoding,
the model, and for the nearest scores embedding the reference and searching it), so the ratios compare like
with like on a shared machine. Results are printed and appended to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]
from results import append, stamp  # noqa: E402

from protlc.errors import ProtlcError  # noqa: E402
from protlc.predict import predict  # noqa: E402
from protlc.unknown import ALL_SCORES  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("input", type=Path)
    parser.add_argument("--scores", default="max_p,nearest,nearest_kmer")
    parser.add_argument("--homology-reference", type=Path, default=None,
                        help="the run's dataset, when it is not where the run recorded it")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    scores = args.scores.split(",")
    if any(name not in ALL_SCORES for name in scores) or args.threads < 1:
        raise SystemExit(f"error: --scores from {', '.join(ALL_SCORES)}; --threads >= 1")
    torch.set_num_threads(args.threads)
    records, baseline = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name in scores:
            started = time.perf_counter()
            try:
                summary = predict(args.checkpoint, args.input, Path(tmp) / f"{name}.csv", unknown_score=name,
                                  homology_reference=args.homology_reference)
            except ProtlcError as exc:
                raise SystemExit(f"error: {exc}") from None
            seconds = time.perf_counter() - started
            baseline = baseline or seconds
            records.append({**stamp("unknown_score"), "score": name, "sequences": summary.sequences,
                            "seconds": round(seconds, 3), "sequences_per_second": round(summary.sequences / seconds, 1),
                            "time_vs_first": round(seconds / baseline, 2), "first_score": scores[0],
                            "flagged": summary.unknown, "threads": args.threads,
                            "checkpoint": str(args.checkpoint), "input": str(args.input)})
            print(f"{name}: {summary.sequences} sequences in {seconds:.1f} s ({summary.sequences / seconds:.0f}/s, "
                  f"{seconds / baseline:.2f}x {scores[0]}), {summary.unknown} flagged")
    if not args.no_record:
        append(records)


if __name__ == "__main__":
    main()
