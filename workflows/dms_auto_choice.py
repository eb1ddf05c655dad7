"""Issue 18: does ``head.additive: auto`` (train the heads without and with the additive ridge term, keep the
one better on tune) pick the better head? Test Pearson/Spearman of auto's choice, of each candidate, and of
the ridge baseline of the same split.

    python workflows/dms_auto_choice.py OUT [--data ../shared/data/dms/nn4dms]
        [--sets pab1:3000,bgl3:3000,avgfp:3000] [--seeds 0,1,2] [--max-epochs 30] [--split random]

Each ``NAME:ROWS`` is a random subset of ROWS variants of the nn4dms table (drawn once with seed 0, written
to ``OUT/data/``), trained with ``protlc train-dms`` defaults (``head.additive=auto``) under each training
seed on the split ``--split`` (split seed 0). Both candidates stay in ``RUN_DIR/candidates/``; this script
(not train-dms) evaluates the candidate that was *not* chosen on the test split as well, to show what the
choice gained or lost; the choice itself only saw the tune split. Runs already finished in OUT are reused.
Results: ``OUT/results.json`` (every run) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protlc.data.loading import EncodedSequences  # noqa: E402
from protlc.dms.tables import MUTATED_SEQUENCE, load_dms_table  # noqa: E402
from protlc.inference import model_outputs  # noqa: E402
from protlc.metrics import correlation  # noqa: E402
from protlc.model.checkpoint import load_checkpoint  # noqa: E402
from protlc.training.fitness_choice import choose  # noqa: E402
from protlc.training.fitness_run import load_dms_config, train_dms  # noqa: E402


def subset(data: Path, name: str, rows: int, out: Path) -> Path:
    path = out / "data" / f"{name}_{rows}.tsv"
    if not path.is_file():
        table = pd.read_csv(data / name / f"{name}.tsv", sep="\t")
        table = table[table["variant"] != "_wt"]
        keep = np.sort(np.random.default_rng(0).choice(len(table), size=min(rows, len(table)), replace=False))
        path.parent.mkdir(parents=True, exist_ok=True)
        table.iloc[keep].to_csv(path, sep="\t", index=False)
    return path


def test_correlations(checkpoint: Path, frame: pd.DataFrame, test: pd.DataFrame) -> tuple[float, float]:
    model = load_checkpoint(checkpoint, task="fitness").model
    sequences = frame.loc[test["row"].to_numpy(), MUTATED_SEQUENCE].tolist()
    predicted = model_outputs(model, EncodedSequences(sequences), 512, "cpu")
    measured = test["measured"].to_numpy()
    return correlation(predicted, measured), correlation(predicted, measured, "spearman")


def run_one(table: Path, wt: str, offset: int, run: Path, seed: int, args, overrides=()) -> dict:
    """Train ``run`` with head.additive=auto (unless finished) and evaluate both candidates on its test split;
    ``overrides`` are further ``section.key=value`` settings."""
    started = time.time()
    if not (run / "final_metrics.json").is_file():
        config = load_dms_config(overrides=[f"trainer.max_epochs={args.max_epochs}", "trainer.progress_bar=false",
                                            *overrides])
        train_dms(table, run, wt, config, offset=offset, seed=seed, split=args.split)
    metrics = json.loads((run / "final_metrics.json").read_text())
    frame = load_dms_table(table, wt, "nn4dms", offset)
    test = pd.read_csv(run / "test_predictions.csv")
    row = {"seed": seed, "chosen": metrics["choice/chosen"], "by_tune_pearson": None,
           "auto": (metrics["test/pearson"], metrics["test/spearman"]),
           "ridge_baseline": (metrics["ridge/test/pearson"], metrics["ridge/test/spearman"]),
           "fit_seconds": metrics["time/fit_seconds"], "wall_seconds": time.time() - started}
    records = {}
    for name in metrics["choice/candidates"]:
        row[name] = test_correlations(run / "candidates" / name / "checkpoints" / "best.ckpt", frame, test)
        records[name] = {k.split("/", 2)[2]: v for k, v in metrics.items() if k.startswith(f"choice/{name}/")}
        row[f"{name}_tune"] = {k: records[name].get(k) for k in ("tune/mse", "tune/pearson", "epochs", "best_epoch",
                                                                  "time/fit_seconds")}
    row["by_tune_pearson"] = choose(records, "tune/pearson", "max")
    assert abs(row[row["chosen"]][0] - row["auto"][0]) < 1e-6, (row, "chosen candidate re-evaluated differently")
    return row


def markdown(results: dict) -> str:
    lines = ["| set (train/tune/test) | seed | auto picks | auto test P / S | none | ridge-additive | ridge baseline "
             "| tune MSE none / ridge-add | tune/pearson would pick | fit s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda pair: f"{pair[0]:.3f} / {pair[1]:.3f}"  # noqa: E731
    for key, entry in results.items():
        for r in entry["runs"]:
            lines.append(f"| {key} ({entry['split']}) | {r['seed']} | {r['chosen']} | **{fmt(r['auto'])}** | "
                         f"{fmt(r['none'])} | {fmt(r['ridge'])} | {fmt(r['ridge_baseline'])} | "
                         f"{r['none_tune']['tune/mse']:.3f} / {r['ridge_tune']['tune/mse']:.3f} | "
                         f"{r['by_tune_pearson']} | {r['fit_seconds']:.0f} |")
        if len(entry["runs"]) > 1:
            mean = {k: np.mean([r[k] for r in entry["runs"]], axis=0) for k in ("auto", "none", "ridge", "ridge_baseline")}
            lines.append(f"| {key} mean | | | **{fmt(mean['auto'])}** | {fmt(mean['none'])} | {fmt(mean['ridge'])} "
                         f"| {fmt(mean['ridge_baseline'])} | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "dms" / "nn4dms")
    parser.add_argument("--sets", default="pab1:3000,bgl3:3000,avgfp:3000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--split", default="random")
    args = parser.parse_args()
    wild_types = pd.read_csv(args.data / "wt_sequences.tsv", sep="\t").set_index("dataset")
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for item in args.sets.split(","):
        name, rows = item.split(":")
        table = subset(args.data, name, int(rows), args.out)
        wt, offset = wild_types.loc[name, "wt_aa"], int(wild_types.loc[name, "wt_offset"])
        key = f"{name}_{rows}_{args.split}"
        entry = results.setdefault(key, {"split": args.split, "max_epochs": args.max_epochs, "runs": []})
        done = {r["seed"] for r in entry["runs"]}
        for seed in (int(s) for s in args.seeds.split(",")):
            if seed in done:
                continue
            entry["runs"].append(run_one(table, wt, offset, args.out / key / f"seed{seed}", seed, args))
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=1) + "\n")
            print(markdown({key: entry}), flush=True)
    print(markdown(results))


if __name__ == "__main__":
    main()
