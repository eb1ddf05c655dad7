"""Profile the hottest paths once: one training step (torch.profiler) and fitness scoring (cProfile).

    python benchmarks/profile_hot.py [--preset small] [--variants 100000] [--top 12] [--no-record]

* training: ``--steps`` optimizer steps (after one warm-up) of ``--preset`` on length-bucketed
  batches of the real extHomFam training split (``bench_train.training_step``), operators ranked by
  self CPU time;
* scoring: ``score_library`` on ``--variants`` random Pab1 mutants (``bench_score``'s library and
  untrained checkpoint), Python functions ranked by own time (``tottime``).

Then the fix this showed (protcnn skips masking a batch without padding) is timed against the old
behaviour on the same scoring run (``masking_ab``). Full tables are written to ``benchmarks/work/profile_{train,score}.txt``; the top entries are printed
and appended to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_score  # noqa: E402
import bench_train  # noqa: E402
from results import append, stamp  # noqa: E402

WORK = bench_score.WORK


def profile_training(preset: str, steps: int, batch_size: int, dataset: Path, top: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    from protlc.data.loading import make_loader

    data, num_classes = bench_train.load_train(dataset)
    step = bench_train.training_step(preset, num_classes)
    batches = iter(make_loader(data, batch_size, shuffle=True, seed=0))
    step(next(batches))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(next(batches))
    averages = prof.key_averages()
    (WORK / "profile_train.txt").write_text(averages.table(sort_by="self_cpu_time_total", row_limit=40))
    total = sum(e.self_cpu_time_total for e in averages)
    ranked = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{"name": e.key, "self_ms_per_step": round(e.self_cpu_time_total / 1e3 / steps, 2),
             "share": round(e.self_cpu_time_total / total, 4), "calls_per_step": e.count // steps} for e in ranked]


def profile_scoring(variants: int, top: int) -> list[dict]:
    from protlc.dms.scoring import score_library

    WORK.mkdir(parents=True, exist_ok=True)
    checkpoint, library = WORK / "pab1_untrained.ckpt", WORK / f"pab1_random_{variants}.csv"
    if not checkpoint.is_file():
        bench_score.untrained_checkpoint(checkpoint)
    if not library.is_file():
        bench_score.write_library(library, variants)
    profiler = cProfile.Profile()
    profiler.enable()
    score_library(checkpoint, library, WORK / "profile_scores.csv")
    profiler.disable()
    (WORK / "profile_scores.csv").unlink(missing_ok=True)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
    stats.print_stats(40)
    (WORK / "profile_score.txt").write_text(text.getvalue())
    total = sum(row[2] for row in stats.stats.values())
    ranked = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [{"name": f"{Path(file).name}:{line}({name})", "tottime_s": round(row[2], 3),
             "cumtime_s": round(row[3], 3), "share": round(row[2] / total, 4), "calls": row[1]}
            for (file, line, name), row in ranked]


def masking_ab(variants: int, repeats: int = 2) -> dict:
    """Scoring seconds (best of ``repeats``) with protcnn's no-padding fast path and with it disabled
    (every batch multiplied by its all-ones mask, as before the fix), interleaved in this process."""
    from protlc.dms.scoring import score_library
    from protlc.model import protcnn

    checkpoint, library, out = WORK / "pab1_untrained.ckpt", WORK / f"pab1_random_{variants}.csv", WORK / "ab.csv"
    fast_path, always_mask = protcnn._padding_mask, lambda mask: mask.unsqueeze(1).to(torch.float32)
    best = {"masked_every_batch": float("inf"), "skip_masking_without_padding": float("inf")}
    for _ in range(repeats):
        for name, function in (("masked_every_batch", always_mask), ("skip_masking_without_padding", fast_path)):
            protcnn._padding_mask = function
            try:
                best[name] = min(best[name], score_library(checkpoint, library, out).seconds)
            finally:
                protcnn._padding_mask = fast_path
    out.unlink(missing_ok=True)
    return {**{k: round(v, 3) for k, v in best.items()},
            "speedup": round(best["masked_every_batch"] / best["skip_masking_without_padding"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dataset", type=Path, default=bench_train.DEFAULT_DATASET)
    parser.add_argument("--variants", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results.jsonl")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    train = profile_training(args.preset, args.steps, args.batch_size, args.dataset, args.top)
    score = profile_scoring(args.variants, args.top)
    ab = masking_ab(args.variants)
    print(f"scoring {args.variants:,} variants: {ab}")
    for title, rows in (("training step (self CPU time)", train), ("scoring (own time)", score)):
        print(title)
        for row in rows:
            print(f"  {row['share']:6.1%}  {row['name']}")
    records = [{**stamp("profile"), "path": "train", "preset": args.preset, "batch_size": args.batch_size,
                "torch_threads": torch.get_num_threads(), "top": train},
               {**stamp("profile"), "path": "score", "variants": args.variants, "top": score},
               {**stamp("profile"), "path": "score-masking-ab", "variants": args.variants, **ab}]
    if not args.no_record:
        append(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
