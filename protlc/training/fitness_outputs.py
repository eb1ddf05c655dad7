"""What a finished ``train-dms`` run writes: metrics of a trained fitness model on the split's parts,
``final_metrics.json``, ``test_predictions.csv`` and the plots (shared by single and ``head.additive: auto`` runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from protlc.atomic import atomic_path
from protlc.inference import model_outputs
from protlc.jsonio import write_json
from protlc.metrics import correlation
from protlc.training.plots import save_figure


def correlations(predicted: np.ndarray, measured: np.ndarray, part: str) -> dict[str, float | None]:
    """Pearson and Spearman (None where undefined, e.g. a constant prediction) and the MSE of one part."""
    predicted, measured = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    return {f"{part}/pearson": correlation(predicted, measured),
            f"{part}/spearman": correlation(predicted, measured, "spearman"),
            f"{part}/mse": float(np.mean((predicted - measured) ** 2)) if len(measured) else None}


def evaluate(model, data, config: dict, parts, device) -> tuple[dict, dict]:
    """``(predictions, metrics)`` of ``model`` on the named ``parts`` of ``data`` (a ``DmsData``)."""
    predictions = {p: model_outputs(model.to(device), data.encoded[p], config["eval"]["batch_size"], device,
                                    config["trainer"]["precision"]) for p in parts}
    metrics: dict = {}
    for p in parts:
        metrics.update(correlations(predictions[p], data.scores[data.parts[p]], p))
    return predictions, metrics


def write_run_outputs(out: Path, data, metrics: dict, test_predictions: np.ndarray) -> None:
    """``final_metrics.json`` (strict JSON, sorted keys), ``test_predictions.csv`` and the plots, each atomically."""
    write_json(out / "final_metrics.json", metrics, sort_keys=True)
    test_rows = data.parts["test"]
    test = pd.DataFrame({"row": data.frame.index.to_numpy()[test_rows], "measured": data.scores[test_rows],
                         "predicted": test_predictions, "ridge": data.ridge.test_predictions})
    with atomic_path(out / "test_predictions.csv") as tmp:
        test.to_csv(tmp, index=False)
    write_fitness_plots(out, test, metrics)


def best_epoch(out: Path, monitor: str, mode: str) -> int | None:
    """0-based epoch of the best tune metric in ``metrics.csv`` (None when there is none)."""
    path = out / "metrics.csv"
    if not path.is_file():
        return None
    log = pd.read_csv(path)
    if monitor not in log:
        return None
    rows = log.dropna(subset=[monitor])
    if rows.empty:
        return None
    best = rows[monitor].idxmin() if mode == "min" else rows[monitor].idxmax()
    return int(rows.loc[best, "epoch"])


def _figure(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def write_fitness_plots(out: Path, test: pd.DataFrame, metrics: dict) -> None:
    """``plots/test_scatter.png`` (head and ridge vs measured) and ``plots/tune_curve.png``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True)
    head = "fitness head" + (f" ({metrics['choice/chosen']})" if "choice/chosen" in metrics else "")
    for ax, column, name, key in ((axes[0], "predicted", head, "test"),
                                  (axes[1], "ridge", "ridge (one-hot)", "ridge/test")):
        ax.scatter(test["measured"], test[column], s=3, alpha=0.35, linewidths=0)
        low, high = test["measured"].min(), test["measured"].max()
        ax.plot([low, high], [low, high], color="grey", lw=0.8)
        ax.set_title(f"{name}: Pearson {_figure(metrics[key + '/pearson'])}, "
                     f"Spearman {_figure(metrics[key + '/spearman'])}", fontsize=9)
        ax.set_xlabel("measured score (test split)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("predicted score")
    fig.tight_layout()
    save_figure(fig, out / "plots" / "test_scatter.png")

    log_path = out / "metrics.csv"
    if log_path.is_file():
        log = pd.read_csv(log_path)
        if "tune/pearson" in log:
            rows = log.dropna(subset=["tune/pearson"])
            fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
            for ax, column in zip(axes, ("tune/pearson", "tune/mse")):
                ax.plot(rows["epoch"], rows[column], marker="o", ms=3)
                ax.set_title(column, fontsize=10)
                ax.set_xlabel("epoch")
                ax.grid(alpha=0.3)
            fig.tight_layout()
            save_figure(fig, out / "plots" / "tune_curve.png")
