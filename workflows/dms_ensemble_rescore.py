"""What ``head.additive: auto``'s ``ensemble`` candidate would have chosen on finished ``train-dms`` runs,
without retraining: for each group of the three heads (an auto run's ``candidates/``, or three single-head
runs of one split and seed), the tune and test metrics of every head and of the ensemble (the heads blended
with non-negative least-squares weights fitted on tune, :func:`protlc.training.fitness_choice.best_blend`;
none when fewer than two heads get a weight), and the choice
by tune MSE among the four (the test split plays no part in either).

    python workflows/dms_ensemble_rescore.py OUT.json [--auto RUN_DIR]... [--group 'runs/pab1_{head}_s0']...

``--group`` names the three run directories with ``{head}`` standing for none, ridge and epistasis. Each
head is its run's ``checkpoints/best.ckpt`` scored on the split its ``config.yaml`` records (the same code
path as ``train-dms``), so the numbers are what an auto run of this protlc reports for these candidates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protlc.atomic import atomic_write_text  # noqa: E402
from protlc.model.checkpoint import load_checkpoint  # noqa: E402
from protlc.training.fitness_choice import ENSEMBLE, best_blend, choose  # noqa: E402
from protlc.training.fitness_data import prepare_data  # noqa: E402
from protlc.training.fitness_outputs import correlations, evaluate  # noqa: E402

HEADS = ("none", "ridge", "epistasis")


def rescore(runs: dict[str, Path]) -> dict:
    """``{head: {tune/..., test/...}}`` for the heads and their blend, plus ``chosen`` (by tune MSE)."""
    config = yaml.safe_load((runs[HEADS[0]] / "config.yaml").read_text())
    data = prepare_data(config, config["dms"]["table"], None)
    predictions, records = {}, {}
    for head, run in runs.items():
        model = load_checkpoint(run / "checkpoints" / "best.ckpt", task="fitness").model
        predictions[head], records[head] = evaluate(model, data, config, ("tune", "test"), torch.device("cpu"))
    blend = best_blend({h: p["tune"] for h, p in predictions.items()}, data.scores[data.parts["tune"]])
    if blend is not None:
        members, weights, records[ENSEMBLE] = blend
        records[ENSEMBLE].update(correlations(sum(w * predictions[h]["test"] for h, w in zip(members, weights)),
                                              data.scores[data.parts["test"]], "test"))
        records[ENSEMBLE].update({"members": members, "weights": weights})
    chosen = choose(records, "tune/mse", "min")
    without = choose({h: r for h, r in records.items() if h != ENSEMBLE}, "tune/mse", "min")
    return {"table": config["dms"]["table"], "split": config["split"], "seed": config["seed"], "heads": records,
            "chosen": chosen, "chosen_without_ensemble": without}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--auto", type=Path, action="append", default=[])
    parser.add_argument("--group", action="append", default=[])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    groups = {str(run): {h: run / "candidates" / h for h in HEADS} for run in args.auto}
    groups.update({pattern: {h: Path(pattern.format(head=h)) for h in HEADS} for pattern in args.group})
    results = {}
    for name, runs in groups.items():
        missing = [str(run) for run in runs.values() if not (run / "checkpoints" / "best.ckpt").is_file()]
        if missing:
            raise SystemExit(f"error: {name}: no checkpoints/best.ckpt in {', '.join(missing)}")
        results[name] = found = rescore(runs)
        picked = found["heads"][found["chosen"]]
        print(f"{name}: {found['chosen']} (was {found['chosen_without_ensemble']}), test Pearson "
              f"{picked['test/pearson']:.4f} / Spearman {picked['test/spearman']:.4f}", flush=True)
    atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
