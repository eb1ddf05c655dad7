"""Training throughput on the CPU: length-bucketed batches against a naive baseline, in the same script.

    python benchmarks/bench_train.py [--presets small,paper] [--steps small=20,paper=2]
                                     [--batch-size small=64,paper=16] [--dataset DIR] [--no-record]

For each preset, a fixed number of optimizer steps (Adam, CCE, fp32, after one untimed warm-up step)
on the real extHomFam training sequences of a prepared dataset (default ``runs/bench/ext_clean``, made by ``benchmarks/run.py``), with

* ``bucketed``: protlc's loader (:func:`protlc.data.loading.make_loader`: length-bucketed batches,
  each padded to its own longest sequence), data loading inside the timed loop;
* ``naive``: random batches padded to the longest sequence of the WHOLE training set, no bucketing
  (data loading inside the timed loop too);
* ``cached`` (data-loading starvation check): the very batches of the ``bucketed`` run, built
  beforehand and replayed, so the difference to ``bucketed`` is the cost of loading.

Each preset runs in a fresh child process that interleaves the modes step by step (each mode with its
own identically initialised model), so that on a shared machine all modes see the same load. It
reports per mode residues/s (real residues only), sequences/s, seconds per step, time spent waiting
for the loader and the padding fraction of the positions it processed, and the process's peak
resident memory (``VmHWM``, shared by the modes: the largest, the naive batches', dominates). The padding fraction of a
whole epoch of each batching is reported too. Results are printed and appended to
``benchmarks/results.jsonl``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402
from results import append, peak_rss_mb, stamp  # noqa: E402

DEFAULT_DATASET = results.CLEAN_DATASET
MODES = ("bucketed", "naive", "cached")


def load_train(dataset: Path):
    """The training split encoded once, and the number of classes."""
    from protlc import columns as col
    from protlc.data import store
    from protlc.data.loading import EncodedSequences

    df = store.read_split(dataset, "train")
    return EncodedSequences(df[col.SEQUENCE].tolist(), df[col.LABEL].to_numpy()), len(store.read_labels(dataset))


def naive_batches(lengths: np.ndarray, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """Random batches of rows (no bucketing); each is later padded to the longest sequence of the set."""
    perm = np.random.default_rng(seed).permutation(len(lengths))
    return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]


def pad_to(batch: dict, width: int) -> dict:
    """Pad a batch's ``tokens``/``mask`` ``(B, L)`` on the right to ``(B, width)``."""
    extra = width - batch["tokens"].shape[1]
    pad = torch.nn.functional.pad
    return {**batch, "tokens": pad(batch["tokens"], (0, extra)), "mask": pad(batch["mask"], (0, extra))}


def epoch_padding(lengths: np.ndarray, batch_size: int) -> dict:
    """Padding fraction of a whole epoch for the bucketed sampler and for the naive batching."""
    from protlc.data.loading import LengthBucketSampler, padding_fraction

    bucketed = LengthBucketSampler(lengths, batch_size, shuffle=True, seed=0)._batches()
    naive = 1.0 - float(lengths.sum()) / (len(lengths) * int(lengths.max()))
    return {"epoch_padding_bucketed": padding_fraction(lengths, bucketed), "epoch_padding_naive": naive}


def training_step(preset: str, num_classes: int):
    """``step(batch)``: one optimizer step (forward, CCE from protlc.losses, backward, Adam) of a fresh
    ``preset`` classifier in training mode, as ``protlc train`` takes it without Lightning's loop."""
    from protlc.losses import build_loss
    from protlc.model import ProtCNNClassifier, get_preset

    model = ProtCNNClassifier(get_preset(preset), num_classes, generator=torch.Generator().manual_seed(0)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = build_loss("cce", num_classes)

    def step(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(batch["tokens"], batch["mask"])
        loss_fn(logits, batch["label"], step=1, total_steps=1).loss.backward()
        optimizer.step()

    return step


def child(preset: str, modes: list[str], steps: int, batch_size: int, dataset: Path, threads: int) -> list[dict]:
    """``steps`` timed optimizer steps of ``preset`` in each of ``modes``, interleaved (one step of each
    mode in turn, each mode with its own identically initialised model), so that all modes see the same
    machine load; returns each mode's figures (the peak RSS is the process's, shared by the modes)."""
    from protlc.data.loading import make_loader
    from protlc.model import flops_per_residue, get_preset

    torch.set_num_threads(threads)
    data, num_classes = load_train(dataset)
    width = int(data.lengths.max())
    batches, step, totals = {}, {}, {}
    for mode in modes:
        if mode == "naive":
            batches[mode] = (pad_to(data[rows], width) for rows in naive_batches(data.lengths, batch_size))
        else:
            batches[mode] = iter(make_loader(data, batch_size, shuffle=True, seed=0))
        if mode == "cached":  # the same batches as `bucketed`, built before the clock starts
            batches[mode] = iter([next(batches[mode]) for _ in range(steps + 1)])
        step[mode] = training_step(preset, num_classes)
        step[mode](next(batches[mode]))  # warm-up: allocator, oneDNN primitives
        totals[mode] = dict.fromkeys(("seconds", "load_seconds", "residues", "positions", "sequences"), 0)
    for _ in range(steps):
        for mode in modes:
            t = totals[mode]
            started = time.perf_counter()
            batch = next(batches[mode])
            t["load_seconds"] += time.perf_counter() - started
            step[mode](batch)
            t["seconds"] += time.perf_counter() - started
            t["residues"] += int(batch["mask"].sum())
            t["positions"] += batch["mask"].numel()
            t["sequences"] += len(batch["tokens"])
    flops = 3 * flops_per_residue(get_preset(preset))
    return [{
        "preset": preset, "mode": mode, "steps": steps, "batch_size": batch_size, "seconds": t["seconds"],
        "seconds_per_step": t["seconds"] / steps, "load_seconds_per_step": t["load_seconds"] / steps,
        "residues_per_second": t["residues"] / t["seconds"], "sequences_per_second": t["sequences"] / t["seconds"],
        "padding_fraction": 1.0 - t["residues"] / t["positions"], "mean_padded_length": t["positions"] / t["sequences"],
        "train_gflops_per_second": flops * t["positions"] / t["seconds"] / 1e9,
        "peak_rss_mb": peak_rss_mb(), "torch_threads": torch.get_num_threads(), "interleaved": True,
    } for mode, t in totals.items()]


def _per_preset(text: str, presets: list[str]) -> dict[str, int]:
    """``small=20,paper=3`` (or one number for all) -> ``{preset: int}``."""
    if "=" not in text:
        return {p: int(text) for p in presets}
    pairs = dict(item.split("=", 1) for item in text.split(","))
    return {p: int(pairs[p]) for p in presets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="small,paper")
    parser.add_argument("--steps", default="small=20,paper=2", help="timed optimizer steps per preset")
    parser.add_argument("--batch-size", default="small=64,paper=16", help="sequences per batch per preset")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="a prepared dataset directory")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results.jsonl")
    parser.add_argument("--child", metavar="PRESET", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    presets = args.presets.split(",")
    steps, batch_sizes = _per_preset(args.steps, presets), _per_preset(args.batch_size, presets)
    if args.child:
        preset = args.child
        print(json.dumps(child(preset, args.modes.split(","), steps[preset], batch_sizes[preset], args.dataset,
                               args.threads)))
        return 0
    if not (args.dataset / "train.parquet").is_file():
        print(f"bench_train: no prepared dataset at {args.dataset} (run protlc prepare first)", file=sys.stderr)
        return 2
    lengths = load_train(args.dataset)[0].lengths
    records = []
    for preset in presets:
        padding = epoch_padding(lengths, batch_sizes[preset])
        command = [sys.executable, __file__, "--child", preset, "--modes", args.modes, "--presets", preset,
                   "--steps", str(steps[preset]), "--batch-size", str(batch_sizes[preset]),
                   "--dataset", str(args.dataset), "--threads", str(args.threads)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            sys.stderr.write(result.stderr)
            return result.returncode
        figures = {f["mode"]: f for f in json.loads(result.stdout.strip().splitlines()[-1])}
        for mode, f in figures.items():
            base = figures.get("naive")
            record = {**stamp("train"), **{k: round(v, 4) if isinstance(v, float) else v for k, v in f.items()},
                      "dataset": str(args.dataset), "train_sequences": len(lengths), "precision": "fp32",
                      "baseline": "naive (padded to the longest sequence of the set, no bucketing)",
                      **{k: round(v, 4) for k, v in padding.items()}}
            if base is not None:
                record["speedup_vs_naive"] = round(f["residues_per_second"] / base["residues_per_second"], 2)
            if mode == "cached" and "bucketed" in figures:
                record["loading_overhead"] = round(figures["bucketed"]["seconds_per_step"] / f["seconds_per_step"] - 1, 4)
            records.append(record)
            print(f"{preset:<6}{mode:<9}{f['residues_per_second']:>12,.0f} res/s{f['sequences_per_second']:>9.1f} seq/s"
                  f"{f['seconds_per_step']:>8.3f} s/step  load {f['load_seconds_per_step'] * 1e3:6.1f} ms/step"
                  f"  padding {f['padding_fraction']:.1%}  peak RSS {f['peak_rss_mb']:,.0f} MB"
                  + (f"  x{record['speedup_vs_naive']} vs naive" if "speedup_vs_naive" in record else ""))
    if not args.no_record:
        append(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
