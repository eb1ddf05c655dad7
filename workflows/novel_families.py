"""Unknown-family detection under label noise (issue 20): novel families held out, four noise settings,
CCE vs ProSelfLC-AT, several seeds, one results table.

    python workflows/novel_families.py OUT [--data ../shared/data/pfam/exthomfam.tsv.gz] [--max-per-family N]
        [--novel-families 10] [--preset small|tiny|paper] [--max-epochs 5] [--seeds 0,1,2] [--jobs 1]
        [--settings clean,symmetric40,confusable20,confusable40] [--accelerator cpu|gpu] [--set KEY=VALUE]...
        [--at-config configs/losses/proselflc_at.yaml]

1. Input: ``--data`` (default: the full extHomFam), or with ``--max-per-family N`` at most N domains per
   family, drawn with ``default_rng(0)`` and kept in input order (``OUT/input.tsv``).
2. One dataset per (setting, seed) with ``protlc prepare --novel-families K``: the split seed is fixed
   (0), so every cell holds out the same K families and is tested on the same domains; the noise seed
   is the cell's seed. Settings: ``clean``; ``symmetric40`` (r = 0.4 symmetric); ``confusable20`` and
   ``confusable40`` (r = 0.2 / 0.4, each family's wrong label its most similar family by 3-mer profile).
3. One ``protlc train`` run per (setting, loss, seed) (``configs/small_cpu.yaml`` + the loss preset, ProSelfLC-AT's
   from ``--at-config`` +
   ``--preset``, ``--max-epochs``), which records the unknown-family metrics (``novel/...``, see
   :mod:`protlc.unknown`). The grid machinery of ``protlc reproduce`` runs it: a rerun skips finished
   cells and resumes killed ones; ``OUT/grid.json`` refuses a rerun with other settings.
4. ``OUT/results.csv`` (one row per cell), ``OUT/results_summary.csv`` (mean, std, n per setting and
   loss) and ``OUT/results.md`` (mean ± std).
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

from protlc.atomic import atomic_write_text  # noqa: E402
from protlc.reproduce.grid import Grid, Method, NoiseSetting, parse_seeds  # noqa: E402
from protlc.reproduce.runner import cells_of, check_out_dir, prepare_all, run_cells  # noqa: E402

SETTINGS = {
    "clean": NoiseSetting("clean", "clean"),
    "symmetric40": NoiseSetting("symmetric40", "symmetric r=0.4", label_noise=0.4, label_noise_kind="symmetric"),
    "confusable20": NoiseSetting("confusable20", "confusable r=0.2", label_noise=0.2, label_noise_kind="confusable"),
    "confusable40": NoiseSetting("confusable40", "confusable r=0.4", label_noise=0.4, label_noise_kind="confusable"),
}
def methods(at_config: Path) -> list[Method]:
    """CCE and ProSelfLC-AT (``at_config``: its loss preset, e.g. ``configs/losses/proselflc_at_short.yaml``)."""
    return [Method("CCE", REPO / "configs" / "losses" / "cce.yaml"), Method("ProSelfLC-AT", at_config.resolve())]


METHODS = methods(REPO / "configs" / "losses" / "proselflc_at.yaml")
# the table's columns: final_metrics.json key -> heading
COLUMNS = {
    "test/accuracy": "test accuracy", "test/confidence_entropy": "test 1-H(p)/H(u)", "test/ece": "test ECE",
    "novel/auroc_max_p": "AUROC max p", "novel/auroc_entropy": "AUROC entropy", "novel/auroc_energy": "AUROC energy",
    "novel/auroc_nearest": "AUROC nearest", "novel/auroc_nearest_kmer": "AUROC nearest_kmer",
    "novel/auroc": "AUROC chosen", "novel/flagged_novel_at_known_5pct": "novel flagged at 5% known (chosen)",
    "novel/flagged_novel": "novel flagged", "novel/flagged_known_test": "known test flagged",
    "novel/flagged_novel_max_p": "novel flagged (max p)", "novel/flagged_known_test_max_p": "known flagged (max p)",
}
EXTRA = ("train/accuracy_clean_labels", "novel/chosen_score", "novel/evaluation_families", "epochs", "time/fit_seconds")


def subsample(data: Path, out: Path, per_family: int) -> Path:
    """At most ``per_family`` domains of every family (``default_rng(0)``, input order kept) as ``out``."""
    if out.is_file():
        return out
    frame = pd.read_csv(data, sep="\t", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(0)
    keep = np.zeros(len(frame), dtype=bool)
    for rows in frame.groupby("family_id", sort=True).indices.values():
        keep[rng.permutation(rows)[:per_family]] = True
    atomic_write_text(out, frame[keep].to_csv(sep="\t", index=False))
    return out


def build_grid(args, data: Path) -> Grid:
    overrides = {"model.preset": args.preset, "trainer.max_epochs": args.max_epochs,
                 "trainer.accelerator": args.accelerator, "dynamics.max_examples": 500}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = value
    return Grid(source=__file__, data=[data], prepare={"split_seed": 0, "novel_families": args.novel_families},
                noise=[SETTINGS[name] for name in args.settings.split(",")],
                train_configs=[REPO / "configs" / "small_cpu.yaml"], train_set=overrides,
                methods=methods(args.at_config) if getattr(args, "at_config", None) else METHODS,
                seeds=parse_seeds(args.seeds), description="novel families, CCE vs ProSelfLC-AT")


def collect(cells, out: Path) -> pd.DataFrame:
    """``results.csv``, ``results_summary.csv`` and ``results.md`` from the finished cells."""
    rows = []
    for cell in cells:
        path = cell.run_dir / "final_metrics.json"
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text())
        row = {"setting": cell.noise.name, "noise": cell.noise.label, "loss": cell.method.label, "seed": cell.seed}
        row.update({k: metrics.get(k) for k in (*COLUMNS, *EXTRA)})
        chosen = metrics.get("novel/chosen_score")  # a run of a protlc that kept it per score only:
        row["novel/flagged_novel_at_known_5pct"] = metrics.get("novel/flagged_novel_at_known_5pct",
                                                               metrics.get(f"novel/flagged_novel_at_known_5pct_{chosen}"))
        row["novel/evaluation_families"] = ",".join(row["novel/evaluation_families"] or [])
        rows.append(row)
    table = pd.DataFrame(rows)
    atomic_write_text(out / "results.csv", table.to_csv(index=False))
    if table.empty:
        return table
    groups = table.groupby(["setting", "loss"], sort=False)
    numeric = [*COLUMNS, "train/accuracy_clean_labels"]
    summary = groups[numeric].agg(["mean", "std", "count"])
    summary.columns = [f"{k} {stat}" for k, stat in summary.columns]
    summary["chosen scores"] = [chosen_counts(group) for _, group in groups]
    atomic_write_text(out / "results_summary.csv", summary.reset_index().to_csv(index=False))
    atomic_write_text(out / "results.md", summary_markdown(table, COLUMNS, {"score chosen on dev": chosen_counts}))
    return table


def chosen_counts(group: pd.DataFrame, key: str = "novel/chosen_score") -> str:
    """``"max_p 2, energy 1"``: how often each value of ``key`` occurs in ``group``."""
    return ", ".join(f"{k} {v}" for k, v in group[key].value_counts().items())


def summary_markdown(table: pd.DataFrame, columns: dict, extra: dict | None = None) -> str:
    """A markdown table of mean ± std (sample std; a lone seed: its value) of ``columns`` (key -> heading)
    per (setting, loss) of ``table`` (columns setting, noise, loss), in table order; ``extra``: heading ->
    function of a group's rows giving a text column."""
    extra = extra or {}
    headings = [*columns.values(), *extra]
    lines = [f"| noise | loss | seeds | {' | '.join(headings)} |", "|---|---|---|" + "---|" * len(headings)]
    for _, group in table.groupby(["setting", "loss"], sort=False):
        texts = [f"{group[k].mean():.3f} ± {group[k].std(ddof=1):.3f}" if len(group) > 1 else f"{group[k].mean():.3f}"
                 for k in columns] + [describe(group) for describe in extra.values()]
        lines.append(f"| {group['noise'].iloc[0]} | {group['loss'].iloc[0]} | {len(group)} | {' | '.join(texts)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "pfam" / "exthomfam.tsv.gz")
    parser.add_argument("--max-per-family", type=int, default=None)
    parser.add_argument("--novel-families", type=int, default=10)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per job [default: cores // jobs]")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--at-config", type=Path, default=REPO / "configs" / "losses" / "proselflc_at.yaml",
                        help="ProSelfLC-AT's loss preset [default: configs/losses/proselflc_at.yaml; for short runs with "
                             "many classes: configs/losses/proselflc_at_short.yaml]")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training config override")
    args = parser.parse_args(argv)
    unknown = set(args.settings.split(",")) - set(SETTINGS)
    if unknown:
        parser.error(f"--settings: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SETTINGS)}")
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    data = subsample(args.data, args.out / "input.tsv", args.max_per_family) if args.max_per_family else args.data
    grid = build_grid(args, data.resolve())
    check_out_dir(grid, args.out)
    prepare_all(grid, args.out, print)
    cells = cells_of(grid, args.out)
    records = run_cells(cells, args.jobs, print, args.threads)
    table = collect(cells, args.out)
    failed = [r for r in records if r["status"] == "failed"]
    print((args.out / "results.md").read_text() if not table.empty else "no finished cells")
    print(f"{len(table)} of {len(cells)} cells finished, {time.time() - started:.0f} s wall")
    if failed:
        sys.exit(f"{len(failed)} cells failed, first {failed[0]['run_dir']}: {failed[0]['error']}")


if __name__ == "__main__":
    main()
