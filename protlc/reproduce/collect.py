"""Collect a grid's finished cells into the noise table, the ECE table, the figures and summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from protlc.atomic import atomic_write_text
from protlc.jsonio import write_json
from protlc.reproduce.claims import claims_markdown
from protlc.reproduce.grid import Grid
from protlc.reproduce.table import METRICS, DATA, noise_table, to_csv, to_markdown
from protlc.training import plots
from protlc.metrics import DYNAMICS_CURVES

ECE_METRIC = {"ECE": "ece"}


def _percent(value: float | None) -> float | None:
    """A fraction as a percentage; None (undefined, written as JSON null) stays None."""
    return None if value is None else 100 * value


def _final_metrics(run_dir: Path) -> dict | None:
    path = run_dir / "final_metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def mean_dynamics(run_dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Mean and std (over runs) of the six curves at each logged step; None without any dynamics.csv."""
    frames = [pd.read_csv(d / "dynamics.csv") for d in run_dirs if (d / "dynamics.csv").is_file()]
    if not frames:
        return None
    grouped = pd.concat(frames).groupby("step")[list(DYNAMICS_CURVES)]
    mean, std = grouped.mean().reset_index(), grouped.std(ddof=1).reset_index()
    return mean, std


def write_figures(grid: Grid, out: Path, cells) -> list[Path]:
    """One six-panel PNG per noise setting, one line per method (mean over seeds, band ± 1 std)."""
    paths = []
    for setting in grid.noise:
        frames, bands, counts = {}, {}, set()
        for method in grid.methods:
            dirs = [c.run_dir for c in cells if c.noise == setting and c.method == method
                    and (c.run_dir / "dynamics.csv").is_file() and (c.run_dir / "final_metrics.json").is_file()]
            counts.add(len(dirs))
            stats = mean_dynamics(dirs)
            if stats is not None:
                frames[method.label], bands[method.label] = stats
        if not frames:
            continue
        path = out / "figures" / f"dynamics_{setting.name}.png"
        seeds = "-".join(str(n) for n in sorted({min(counts), max(counts)}))
        plots.plot_dynamics(frames, path, bands, title=f"{setting.label} noise ({setting.describe()}): "
                                                       f"mean over {seeds} seed(s), band ± 1 std")
        paths.append(path)
    return paths


def _markdown(grid: Grid, rows, ece_rows, methods, figures, out: Path, n_seeds: int) -> str:
    notes = "; ".join(f"{m.label}: {m.note}" for m in grid.methods if m.note)
    settings = "\n".join(f"- **{s.label}**: {s.describe()}" for s in grid.noise)
    figs = "\n".join(f"- {p.relative_to(out)}" for p in figures)
    return f"""# Noise table (protlc reproduce)

Grid `{grid.source}`; data {', '.join(str(p) for p in grid.data)}; {n_seeds} seed(s) {grid.seeds}.
FINAL model, %; train with the observed (noisy) labels, test with clean labels.
{settings}

{notes}

## This run: mean ± std over seeds (best mean of each row in bold)

Best = highest. Under label noise a high *train* accuracy means fitting the wrong labels, so that row's
bold marks the most memorisation, not the best method.

{to_markdown(rows, methods, "ours")}
## Published (docs/method.md §4: DeepLoc, fine-tuned protein language model; best in bold)

{to_markdown(rows, methods, "paper")}
## Difference: this run − published (percentage points, means)

{to_markdown(rows, methods, "diff")}
## The paper's claims on this data (mechanical check of the means above)

{claims_markdown(rows, methods) or "(needs the five paper columns)"}
## Expected calibration error (15 bins, %; lower is better, best in bold)

{to_markdown(ece_rows, methods, "ours")}
## Training dynamics (docs/method.md §4 curves a–f)

{figs}
"""


def collect(grid: Grid, out: Path, cells, records: list[dict], wall_seconds: float, jobs: int) -> dict:
    """Write ``noise_table.{csv,md}``, ``ece_table.csv``, ``figures/*.png`` and ``summary.json``.

    Missing cells (failed or not run) show as ``—``.
    """
    methods = [m.label for m in grid.methods]
    values: dict = {}
    ece: dict = {}
    per_cell = []
    for cell, record in zip(cells, records):
        metrics = _final_metrics(cell.run_dir)
        per_cell.append({**record, "noise_label": cell.noise.label,
                         "metrics": {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float))}})
        if metrics is None:
            continue
        for data in DATA:
            for label, suffix in METRICS.items():
                values.setdefault((cell.noise.label, label, data, cell.method.label), []).append(
                    _percent(metrics[f"{data}/{suffix}"]))
            ece.setdefault((cell.noise.label, "ECE", data, cell.method.label), []).append(
                _percent(metrics[f"{data}/ece"]))
    noises = [s.label for s in grid.noise]
    rows = noise_table(values, noises, methods)
    ece_rows = noise_table(ece, noises, methods, metrics=ECE_METRIC, lower_is_better=True)
    figures = write_figures(grid, out, cells)
    atomic_write_text(out / "noise_table.csv", to_csv(rows, methods))
    atomic_write_text(out / "ece_table.csv", to_csv(ece_rows, methods))
    atomic_write_text(out / "noise_table.md", _markdown(grid, rows, ece_rows, methods, figures, out, len(grid.seeds)))
    summary = {
        "grid": grid.source, "data": [str(p) for p in grid.data], "seeds": grid.seeds, "jobs": jobs,
        "wall_seconds": wall_seconds,
        "cells_trained": sum(r["status"] in ("trained", "resumed") for r in records),
        "cells_skipped": sum(r["status"] == "skipped" for r in records),
        "cells_failed": sum(r["status"] == "failed" for r in records),
        "cells_missing": sum(r["status"] == "missing" for r in records),
        "figures": [str(p) for p in figures], "cells": per_cell,
    }
    write_json(out / "summary.json", summary, indent=1)
    return summary
