"""PNG figures of a run: learning curves (metrics.csv) and training dynamics (dynamics.csv)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from protlc.atomic import atomic_path  # noqa: E402
from protlc.metrics import DYNAMICS_CURVES  # noqa: E402

CURVE_TITLES = {
    "correct_fitting": "(a) correct fitting: clean subset, accuracy",
    "wrong_fitting": "(b) wrong fitting: noisy subset vs noisy labels",
    "class_correction": "(c) class correction: noisy subset vs clean labels",
    "entropy_clean": "(d) entropy H(p)/log C, clean subset",
    "entropy_noisy": "(e) entropy H(p)/log C, noisy subset",
    "generalisation": "(f) generalisation: test accuracy",
}


def save_figure(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_dynamics(frames: dict[str, pd.DataFrame], path: Path, bands: dict[str, pd.DataFrame] | None = None,
                  title: str | None = None) -> None:
    """One panel per docs/method.md §4 curve, one line per run/method (``frames``: label -> dynamics.csv frame).

    ``bands`` (label -> frame with the same columns, e.g. the std over seeds) shades ``line ± band``.
    A curve with no values in any frame (no noisy subset without label noise) gets a note instead.
    """
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True)
    for ax, curve in zip(axes.flat, DYNAMICS_CURVES):
        empty = True
        for name, df in frames.items():
            line, = ax.plot(df["step"], 100 * df[curve], label=name)
            empty = empty and bool(df[curve].isna().all())
            band = (bands or {}).get(name)
            if band is not None and not band[curve].isna().all():
                ax.fill_between(df["step"], 100 * (df[curve] - band[curve]), 100 * (df[curve] + band[curve]),
                                color=line.get_color(), alpha=0.15, linewidth=0)
        if empty:
            ax.text(0.5, 0.5, "no noisy subset\n(no label noise)", transform=ax.transAxes, ha="center",
                    va="center", color="0.4")
            ax.set_yticks([])
        ax.set_title(CURVE_TITLES[curve], fontsize=9)
        ax.set_ylabel("entropy (% of log C)" if curve.startswith("entropy") else "accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))  # long runs: step labels must not overlap
    axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)


def write_run_plots(run_dir: str | Path) -> None:
    run_dir = Path(run_dir)
    metrics_csv = run_dir / "metrics.csv"
    if metrics_csv.is_file():
        m = pd.read_csv(metrics_csv)
        panels = [(c, t) for c, t in (("train/loss_step", "training loss"), ("train/epsilon", "mean ε (ProSelfLC)"),
                                        ("dev/accuracy", "dev accuracy"), ("dev/ece", "dev ECE")) if c in m]
        if panels:
            fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
            for ax, (c, title) in zip(axes[0], panels):
                rows = m.dropna(subset=[c])
                ax.plot(rows["step"], rows[c], marker="o" if c.startswith("dev") else None, ms=3)
                ax.set_title(title, fontsize=10)
                ax.set_xlabel("optimizer step")
                ax.grid(alpha=0.3)
            fig.tight_layout()
            save_figure(fig, run_dir / "plots" / "learning_curves.png")
    dynamics_csv = run_dir / "dynamics.csv"
    if dynamics_csv.is_file():
        plot_dynamics({run_dir.name: pd.read_csv(dynamics_csv)}, run_dir / "plots" / "dynamics.png")
