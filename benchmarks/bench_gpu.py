"""GPU figures in one run (about 5 minutes on one H100/H200), each next to its reference in the same run.

    python benchmarks/bench_gpu.py [--data PATH] [--no-record] [--skip PART ...]
    python benchmarks/bench_gpu.py --device cpu --quick      # CPU smoke test on tiny inputs (< 1 min)

PART is one of

* ``matmul``: the GPU's own bf16 peak, large square matmuls (the reference the MFU figures are read against);
* ``step``: training steps (forward, CCE, backward, fused Adam; bf16 autocast) of the ``paper`` and ``small``
  presets on real extHomFam token-budget batches (the budget of ``configs/paper_gpu.yaml`` and a large
  one), eager and ``torch.compile`` (:func:`protlc.inference.compile_model`): residues/s and MFU, i.e.
  ``3 x flops_per_residue`` (forward convolution FLOPs per position, see ``protlc.model.flops_per_residue``;
  backward = 2 x forward) per real residue over the matmul peak; ``mfu_padded`` counts the padded
  positions the hardware also computes;
* ``train``: one whole ``protlc train`` epoch (``configs/paper_gpu.yaml``: paper preset, bf16, token
  batches) on the data with 40% label noise (so the training-dynamics curves run too), as a subprocess,
  with the time breakdown of its ``final_metrics.json``;
* ``predict``: ``protlc predict`` end to end (process start, checkpoint, reading, writing) on >= 50,000
  sequences (the data repeated as needed) with the checkpoint of ``train``;
* ``score``: ``protlc score`` on 10^6 random Pab1 multi-mutants (the library and the untrained fitness
  checkpoint of ``bench_score.py``).

Data: ``--data`` (a TSV with ``family_id`` and ``sequence`` columns, or anything ``protlc prepare`` reads),
default ``../shared/data/pfam/exthomfam.tsv.gz`` when present, else ``data/exthomfam_tiny32.tsv``.
Without a CUDA device it stops with one line (exit 2) unless ``--device cpu``. Results are printed, appended
to ``benchmarks/results.jsonl`` (benchmark ``gpu``; CUDA runs without ``--quick`` only) and the tables of
``benchmarks/README.md`` are regenerated (``table.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import results  # noqa: E402
from results import append, stamp  # noqa: E402

PARTS = ("matmul", "step", "train", "predict", "score")
EMBEDDED = REPO / "data" / "exthomfam_tiny32.tsv"
WORK = HERE / "work" / "gpu"
# Dense bf16 tensor-core peaks from the vendors' datasheets (TFLOP/s), for a second MFU reading.
DATASHEET_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.4, "A100": 312.0,
                         "L40S": 362.0}

FULL = {"matmul_sizes": (4096, 8192, 16384), "matmul_repeats": 20, "presets": ("paper", "small"),
        "step_tokens": (8192, 65536), "warmup": 8, "steps": 30, "predict_sequences": 60_000,
        "score_variants": 1_000_000}
QUICK = {"matmul_sizes": (256,), "matmul_repeats": 3, "presets": ("small", "tiny"), "step_tokens": (1024,),
         "warmup": 1, "steps": 2, "predict_sequences": 2_000, "score_variants": 5_000, "train_rows": 600}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return results.machine()


def datasheet_peak(name: str) -> float | None:
    return next((tflops for key, tflops in DATASHEET_BF16_TFLOPS.items() if key in name), None)


def matmul_peak(device: torch.device, sizes, repeats: int) -> list[dict]:
    """bf16 ``n x n @ n x n`` TFLOP/s for each ``n`` (after one warm-up product)."""
    out = []
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
        a @ b
        synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        seconds = time.perf_counter() - started
        out.append({"n": n, "repeats": repeats, "seconds": seconds, "tflops": 2 * n**3 * repeats / seconds / 1e12})
        del a, b
    return out


def load_data(path: Path, rows: int | None = None):
    """``(sequences, family codes, number of families)`` of a family-labelled TSV (gz ok)."""
    import pandas as pd

    df = pd.read_csv(path, sep="\t", usecols=["family_id", "sequence"])
    if rows is not None and rows < len(df):
        df = df.sample(n=rows, random_state=0).sort_index()
    codes, families = pd.factorize(df["family_id"])
    return df["sequence"].tolist(), codes, len(families)


def step_figures(preset: str, data, num_classes: int, device: torch.device, tokens: int, warmup: int, steps: int,
                 compiled_model: torch.nn.Module | None, peak: float | None, datasheet: float | None) -> dict:
    """Timed training steps of ``preset`` on token batches of ``data`` (a fresh eager model, or the given
    compiled one), batches built and pinned beforehand, copied to the device inside the timed loop."""
    from torch._dynamo.utils import counters

    from protlc.data.loading import make_loader
    from protlc.inference import autocast_for
    from protlc.losses import build_loss
    from protlc.model import ProtCNNClassifier, flops_per_residue, get_preset

    cuda = device.type == "cuda"
    config = get_preset(preset)
    model = compiled_model
    if model is None:
        model = ProtCNNClassifier(config, num_classes, generator=torch.Generator().manual_seed(0)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True if cuda else None)
    loss_fn = build_loss("cce", num_classes)
    loader = make_loader(data, 64, shuffle=True, seed=0, tokens_per_batch=tokens, pin_memory=cuda)
    # batches of one sequence (the rare longest ones) would only add a graph for the compiled model
    batches = [b for b in loader if len(b["tokens"]) > 1][: warmup + steps]
    while len(batches) < warmup + steps:
        batches += batches[: warmup + steps - len(batches)]
    timed = batches[warmup:]
    warm = batches[:warmup]
    if compiled_model is not None:  # every timed shape once first, so that no compiling is timed
        warm += timed

    def step(batch: dict) -> None:
        tokens_, mask = (batch[k].to(device, non_blocking=True) for k in ("tokens", "mask"))
        labels = batch["label"].to(device, non_blocking=True)
        with autocast_for(device, "bf16-mixed"):
            logits = model(tokens_, mask)
        loss_fn(logits.float(), labels, step=1, total_steps=1).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    warm_started = time.perf_counter()
    for batch in warm:
        step(batch)
    synchronize(device)
    warmup_seconds = time.perf_counter() - warm_started
    graphs = counters["stats"]["unique_graphs"]
    started = time.perf_counter()
    for batch in timed:
        step(batch)
    synchronize(device)
    seconds = time.perf_counter() - started
    residues = sum(int(b["mask"].sum()) for b in timed)
    positions = sum(b["mask"].numel() for b in timed)
    train_flops = 3 * flops_per_residue(config)
    figures = {
        "preset": preset, "mode": "compiled" if compiled_model is not None else "eager", "tokens_per_batch": tokens,
        "steps": steps, "seconds": seconds, "seconds_per_step": seconds / steps, "warmup_seconds": warmup_seconds,
        "sequences_per_second": sum(len(b["tokens"]) for b in timed) / seconds,
        "residues_per_second": residues / seconds, "padding_fraction": 1 - residues / positions,
        "model_tflops": train_flops * residues / seconds / 1e12,
        "hardware_tflops": train_flops * positions / seconds / 1e12,
        "recompiled_while_timed": counters["stats"]["unique_graphs"] - graphs,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
    }
    for name, reference in (("mfu", peak), ("mfu_datasheet", datasheet)):
        if reference:
            figures[name] = figures["model_tflops"] / reference
            figures[name.replace("mfu", "mfu_padded")] = figures["hardware_tflops"] / reference
    return figures


def step_part(device, options, data_path, peak, datasheet, compile_backend):
    """Yields the figures of every (preset, mode, budget) as soon as they are measured."""
    from protlc.data.loading import EncodedSequences
    from protlc.inference import compile_model
    from protlc.model import ProtCNNClassifier, get_preset

    sequences, codes, num_classes = load_data(data_path, options.get("train_rows"))
    data = EncodedSequences(sequences, codes)
    for preset in options["presets"]:
        for tokens in options["step_tokens"]:
            yield step_figures(preset, data, num_classes, device, tokens, options["warmup"], options["steps"], None,
                               peak, datasheet)
        model = ProtCNNClassifier(get_preset(preset), num_classes, generator=torch.Generator().manual_seed(0))
        model = compile_model(model.to(device).train(), backend=compile_backend)
        for tokens in options["step_tokens"]:  # one compiled model for every budget: its shapes are symbolic
            # warmup_seconds of the first budget include compiling
            yield {**step_figures(preset, data, num_classes, device, tokens, options["warmup"], options["steps"],
                                  model, peak, datasheet), "compile_backend": compile_backend}
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run(command: list[str], what: str) -> float:
    """Wall seconds of a protlc subprocess; its stderr tail on failure."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
    return seconds


def train_part(device, quick: bool, data_path: Path) -> dict:
    """One `protlc train` epoch on a freshly prepared copy of the data (r = 0.4 label noise)."""
    import shutil

    import pandas as pd

    from protlc.data.prepare import PrepareOptions, prepare_dataset

    work = WORK / "train"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source = data_path
    if quick:  # a few hundred rows keep the smoke test short
        source = work / "rows.tsv"
        pd.read_csv(data_path, sep="\t").sample(n=QUICK["train_rows"], random_state=0).to_csv(source, sep="\t",
                                                                                               index=False)
    prepare_dataset([source], work / "ds", PrepareOptions(label_noise=0.4, seed=0), progress=False)
    command = [sys.executable, "-m", "protlc", "train", str(work / "ds"), "--out", str(work / "run"),
               "--max-epochs", "1", "--set", "trainer.progress_bar=false"]
    if device.type == "cuda":
        command += ["--config", str(REPO / "configs" / "paper_gpu.yaml")]
    else:
        command += ["--preset", "tiny", "--accelerator", "cpu", "--precision", "32", "--set", "data.tokens_per_batch=2048",
                    "--set", "eval.tokens_per_batch=8192", "--set", "dynamics.max_examples=200"]
    wall = run(command, "protlc train")
    metrics = json.loads((work / "run" / "final_metrics.json").read_text())
    keep = {k: v for k, v in metrics.items() if k.startswith(("time/", "gpu/")) or k in ("optimizer_steps", "epochs")}
    gpu = device.type == "cuda"
    return {"preset": "paper" if gpu else "tiny", "precision": "bf16-mixed" if gpu else "32",
            "train_sequences": len(pd.read_parquet(work / "ds" / "train.parquet", columns=["sequence"])),
            "wall_seconds": wall, **keep, "checkpoint": str(work / "run" / "checkpoints" / "last.ckpt")}


def predict_part(device, options, data_path: Path, checkpoint: Path) -> dict:
    import pandas as pd

    n = options["predict_sequences"]
    sequences = pd.read_csv(data_path, sep="\t", usecols=["sequence"])["sequence"].tolist()
    sequences = (sequences * -(-n // len(sequences)))[:n]
    inputs = WORK / f"predict_{n}.tsv"
    pd.DataFrame({"sequence_name": [f"q{i}" for i in range(n)], "sequence": sequences}).to_csv(inputs, sep="\t",
                                                                                             index=False)
    out = WORK / "predictions.parquet"
    wall = run([sys.executable, "-m", "protlc", "predict", str(checkpoint), str(inputs), "--out", str(out),
                "--device", device.type], "protlc predict")
    rows = len(pd.read_parquet(out, columns=["sequence_name"]))
    assert rows == n, (rows, n)
    return {"sequences": n, "residues": int(sum(map(len, sequences))), "wall_seconds": wall,
            "sequences_per_second": n / wall}


def score_part(device, options) -> dict:
    import bench_score

    n = options["score_variants"]
    bench_score.WORK.mkdir(parents=True, exist_ok=True)
    checkpoint, library = bench_score.WORK / "pab1_untrained.ckpt", bench_score.WORK / f"pab1_random_{n}.csv"
    sizes = bench_score.untrained_checkpoint(checkpoint)
    if not library.is_file():
        bench_score.write_library(library, n)
    out = WORK / "scores.parquet"
    wall = run([sys.executable, "-m", "protlc", "score", str(checkpoint), str(library), "--out", str(out),
                "--device", device.type, "--no-progress"], "protlc score")
    return {"variants": n, "wall_seconds": wall, "variants_per_second": n / wall,
            "wild_type": "pab1 (75 residues)", **sizes}


def report(figures: dict) -> None:
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="family-labelled TSV [default: extHomFam]")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu for the smoke test")
    parser.add_argument("--quick", action="store_true", help="tiny inputs (the CPU smoke test); records nothing")
    parser.add_argument("--skip", action="append", choices=PARTS, default=[], help="leave a part out (repeatable)")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend [default: inductor; eager (graph capture only) with --quick]")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results.jsonl")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"bench_gpu: no CUDA device visible to torch {torch.__version__} (CUDA build: "
              f"{torch.version.cuda or 'none'}); nothing measured. CPU smoke test: "
              "python benchmarks/bench_gpu.py --device cpu --quick", file=sys.stderr)
        return 2
    options = QUICK if args.quick else FULL
    data_path = args.data or (results.EXTHOMFAM if results.EXTHOMFAM.is_file() else EMBEDDED)
    backend = args.compile_backend or ("eager" if args.quick else "inductor")
    name = device_name(device)
    context = {"device": str(device), "gpu": name if device.type == "cuda" else None, "torch": torch.__version__,
               "cuda": torch.version.cuda, "data": str(data_path), "quick": args.quick}
    print(f"bench_gpu: {name}, torch {torch.__version__}, data {data_path}", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    records, failed, started = [], [], time.perf_counter()

    def record(part: str, figures: dict) -> dict:
        records.append({**stamp("gpu"), **context, "part": part, **figures})
        report(records[-1])
        return records[-1]

    peak, datasheet = None, datasheet_peak(name) if device.type == "cuda" else None
    checkpoint = None
    for part in PARTS:
        if part in args.skip:
            continue
        part_started = time.perf_counter()
        try:
            if part == "matmul":
                sizes = matmul_peak(device, options["matmul_sizes"], options["matmul_repeats"])
                peak = max(s["tflops"] for s in sizes)
                record("matmul", {"dtype": "bf16", "tflops": peak, "sizes": sizes, "datasheet_tflops": datasheet})
            elif part == "step":
                for figures in step_part(device, options, data_path, peak, datasheet, backend):
                    record("step", figures)
            elif part == "train":
                figures = record("train", train_part(device, args.quick, data_path))
                checkpoint = Path(figures.pop("checkpoint"))
            elif part == "predict":
                if checkpoint is None:
                    raise RuntimeError("predict needs the checkpoint of the train part (do not --skip train)")
                record("predict", predict_part(device, options, data_path, checkpoint))
            elif part == "score":
                record("score", score_part(device, options))
        except Exception as exc:  # one failed part must not cost the others (device time is scarce)
            failed.append(part)
            print(f"bench_gpu: {part} failed: {type(exc).__name__}: {str(exc)[:600]}", file=sys.stderr, flush=True)
        print(f"bench_gpu: {part} {time.perf_counter() - part_started:.0f} s", flush=True)
    total = time.perf_counter() - started
    print(f"bench_gpu: {total:.0f} s in all{'; failed: ' + ', '.join(failed) if failed else ''}", flush=True)
    if records and device.type == "cuda" and not args.quick and not args.no_record:
        for r in records:
            r["bench_seconds"] = round(total, 1)
        append(records)
        subprocess.run([sys.executable, str(HERE / "table.py")], check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
