"""HMMER's own answer next to the network's unknown score (issue 20): for an OUT dir of
workflows/novel_families.py, every finished cell's network, phmmer and fused unknown-family metrics.

    python workflows/novel_families_hmmer.py OUT [--per-family 100] [--threads 1] [--batch-size 256]

1. phmmer (:mod:`protlc.homology`, pyhmmer) of the known dev, known test and novel domains against the
   training split (at most ``--per-family`` domains per family, ``reference_rows(seed 0)`` over the
   *clean* labels, so that every setting and seed searches the same reference: E-values do not depend on
   labels). The best hit's E-value of each domain is cached in ``OUT/hmmer/<split>-<digest>.npz``
   (digest of the reference and query sequences): the search runs once per distinct split, and the
   datasets of a workflow share their splits (fixed split seed).
2. Per finished cell, the logits and nearest scores of its final model (``checkpoints/last.ckpt``, the
   model that ``final_metrics.json`` scored; cached in ``OUT/hmmer/logits/<setting>/<loss>/seed<k>.npz``),
   the network's metrics recomputed with the five scores (:func:`protlc.unknown.novel_metrics`; checked
   against ``final_metrics.json``, for a run of an older protlc on the three logit scores it had) and
   :func:`protlc.unknown.homology_metrics`: HMMER's AUROC and flag rates at its dev-calibrated 1st
   percentile, under "no hit at E <= 1e-3 = unknown" and at the network's known-test flag rate, and the
   fused score (weight chosen on the selection half).
3. ``OUT/hmmer_results.csv`` (one row per cell) and ``OUT/hmmer_results.md`` (mean ± std per setting
   and loss). Delete ``OUT/hmmer`` to recompute the caches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from novel_families import METHODS, SETTINGS, chosen_counts, summary_markdown  # noqa: E402

from protlc import columns as col  # noqa: E402
from protlc.atomic import atomic_path, atomic_write_text  # noqa: E402
from protlc.data.loading import EncodedSequences  # noqa: E402
from protlc.data.store import read_split  # noqa: E402
from protlc.errors import InputError, ProtlcError  # noqa: E402
from protlc.homology import DEFAULT_PER_FAMILY, Reference, reference_rows  # noqa: E402
from protlc.inference import model_outputs  # noqa: E402
from protlc.model import PooledLayers  # noqa: E402
from protlc.model.checkpoint import load_checkpoint  # noqa: E402
from protlc.unknown import (  # noqa: E402
    KMER,
    LEGACY_KMER,
    REFERENCE_SCORES,
    SCORES,
    TIE_BREAK,
    homology_metrics,
    nearest_scores,
    novel_metrics,
    score,
)

SPLITS = ("dev", "test", "novel")  # known dev, known test, novel: the order of homology_metrics' tuples
CONSISTENCY_TOLERANCE = 1e-3
COLUMNS = {
    "novel/auroc": "network AUROC", "novel/flagged_novel": "network novel flagged",
    "novel/flagged_known_test": "network known flagged",
    "novel/auroc_max_p": "max p AUROC", "novel/auroc_nearest": "nearest AUROC",
    "novel/auroc_nearest_kmer": "nearest_kmer AUROC",
    "novel/flagged_novel_at_known_5pct": "network novel flagged at 5% known",
    "novel/flagged_novel_nearest_kmer": "nearest_kmer novel flagged (dev 1%)",
    "novel/flagged_known_test_nearest_kmer": "nearest_kmer known flagged (dev 1%)",
    "hmmer/auroc": "HMMER AUROC", "hmmer/flagged_novel": "HMMER novel flagged (dev 1%)",
    "hmmer/flagged_known_test": "HMMER known flagged (dev 1%)",
    "hmmer/flagged_novel_evalue": "HMMER novel flagged (E>1e-3)",
    "hmmer/flagged_known_test_evalue": "HMMER known flagged (E>1e-3)",
    "hmmer/flagged_novel_at_network_rate": "HMMER novel flagged at network's known rate",
    "fused/auroc": "fused AUROC", "fused/flagged_novel": "fused novel flagged (dev 1%)",
    "fused/flagged_known_test": "fused known flagged (dev 1%)",
    "fused/flagged_novel_at_evalue_rate": "fused novel flagged at E-rule's known rate",
    "network/flagged_novel_at_evalue_rate": "network novel flagged at E-rule's known rate",
}


def cached(path: Path, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays saved at ``path`` (.npz), else ``compute()``'s, saved there atomically."""
    if path.is_file():
        with np.load(path) as saved:
            return dict(saved)
    arrays = compute()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return arrays


def _digest(*groups: list[str]) -> str:
    h = hashlib.sha256()
    for sequences in groups:
        h.update("\n".join(sequences).encode() + b"\0")
    return h.hexdigest()[:16]


def evalues(dataset: Path, cache: Path, per_family: int, threads: int = 1) -> tuple[np.ndarray, ...]:
    """Best-hit E-values ``(N,)`` of the dataset's known dev, known test and novel domains (inf: no hit)
    against its training split (module docstring, step 1).

    Raises:
        InputError: not a prepared dataset with a novel split. ConfigError: pyhmmer is missing.
    """
    train = read_split(dataset, "train")
    rows = reference_rows(train[col.CLEAN_LABEL].to_numpy(), per_family, seed=0)
    reference = train[col.SEQUENCE].to_numpy()[rows].tolist()
    labels = train[col.CLEAN_LABEL].to_numpy()[rows]
    found = []
    for split in SPLITS:
        queries = read_split(dataset, split)[col.SEQUENCE].tolist()
        path = cache / f"{split}-{_digest(reference, queries)}.npz"
        found.append(cached(path, lambda q=queries: {"evalue": Reference(reference, labels).search(q, threads).evalue})
                      ["evalue"])
    return tuple(found)


def cell_outputs(run_dir: Path, dataset: Path, cache: Path, batch_size: int) -> tuple[tuple, dict]:
    """Logits ``(N, C)`` and the nearest scores ``{name: (N,)}`` (:func:`protlc.unknown.nearest_scores`, against
    the training reference that ``protlc train`` uses) of the run's final model for the known dev, known test
    and novel domains. A cache without every nearest score of this protlc (an older one) is recomputed."""
    def compute():
        model = load_checkpoint(run_dir / "checkpoints" / "last.ckpt", task="classify").model
        layers = PooledLayers(model.encoder)

        def pooled_of(sequences):
            return model_outputs(layers, EncodedSequences(list(sequences)), batch_size, "cpu")
        train = read_split(dataset, "train")
        queries = [read_split(dataset, split)[col.SEQUENCE].tolist() for split in SPLITS]
        pooled = [pooled_of(sequences) for sequences in queries]  # one encoder pass per split for both uses
        with torch.no_grad():
            found = {split: model.head(torch.from_numpy(features[:, -1])).numpy()
                     for split, features in zip(SPLITS, pooled)}
        nearest = nearest_scores(pooled_of, train[col.SEQUENCE].tolist(), train[col.LABEL].to_numpy(), queries,
                                 pooled)
        found.update({f"{name}_{split}": values[i] for name, values in nearest.items()
                      for i, split in enumerate(SPLITS)})
        found["kmer"] = np.array(KMER)
        return found
    found = cached(cache, compute)
    if (any(f"{name}_{SPLITS[0]}" not in found for name in REFERENCE_SCORES)
            or int(found.get("kmer", LEGACY_KMER)) != KMER):
        cache.unlink()
        found = cached(cache, compute)
    return (tuple(found[split] for split in SPLITS),
            {name: tuple(found[f"{name}_{split}"] for split in SPLITS) for name in REFERENCE_SCORES})


def finished_cells(out: Path) -> list[dict]:
    """``{setting, noise, loss, seed, run_dir, dataset}`` of every cell with a final_metrics.json."""
    cells = []
    for setting in SETTINGS.values():
        for method in METHODS:
            for run_dir in sorted((out / "runs" / setting.name / method.slug).glob("seed*")):
                if (run_dir / "final_metrics.json").is_file() and run_dir.name[4:].isdigit():
                    seed = int(run_dir.name[4:])
                    cells.append({"setting": setting.name, "noise": setting.label, "loss": method.label, "seed": seed,
                                  "run_dir": run_dir, "dataset": out / "data" / setting.name / f"seed{seed}"})
    return cells


def cell_row(cell: dict, out: Path, per_family: int, threads: int, batch_size: int) -> dict:
    """One results row: the network's metrics (recomputed), HMMER's and the fused score's, and how far the
    recomputed ``novel/...`` numbers are from ``final_metrics.json``'s."""
    cache = out / "hmmer"
    logits, nearest = cell_outputs(
        cell["run_dir"], cell["dataset"],
        cache / "logits" / cell["setting"] / cell["run_dir"].parent.name / f"{cell['run_dir'].name}.npz", batch_size)
    families = read_split(cell["dataset"], "novel")[col.FAMILY_ID].to_numpy()
    network = novel_metrics(*logits, families, cell["seed"], reference_scores=nearest)
    chosen = network["novel/chosen_score"]
    values = nearest[chosen] if chosen in nearest else tuple(score(z, chosen) for z in logits)
    metrics = homology_metrics(values, evalues(cell["dataset"], cache, per_family, threads), families, cell["seed"])
    final = json.loads((cell["run_dir"] / "final_metrics.json").read_text())
    # a run of an older protlc had fewer scores (the logit scores, or those and nearest scores of another
    # definition, e.g. 3-mer profiles): check its logit scores, and the choice only where it had every score
    # of this version
    full = (all(f"novel/auroc_{name}" in final for name in REFERENCE_SCORES)
            and final.get("novel/kmer", LEGACY_KMER) == KMER)
    same_scores = network if full else novel_metrics(*logits, families, cell["seed"])
    numeric = [k for k, v in same_scores.items() if isinstance(v, float) and isinstance(final.get(k), float)
               and (full or k.endswith(tuple(f"_{name}" for name in SCORES)))]
    gap = max((abs(same_scores[k] - final[k]) for k in numeric), default=float("nan"))
    same_choice = not full or final.get("novel/chosen_score") == same_scores["novel/chosen_score"]
    row = {k: v for k, v in cell.items() if k not in ("run_dir", "dataset")}
    row.update({"novel/chosen_score": chosen, "final/auroc": final.get("novel/auroc"),
                "consistency/max_abs_diff": gap,
                "consistency/ok": bool(gap <= CONSISTENCY_TOLERANCE and same_choice)})
    row.update({k: network[k] for k in COLUMNS if k in network})
    row.update(metrics)
    row["fused/rule"] = {1.0: "homology", TIE_BREAK: "homology, network tie-break"}.get(
        metrics["fused/weight"], f"w={metrics['fused/weight']:g}")
    return row


def collect(out: Path, per_family: int = DEFAULT_PER_FAMILY, threads: int = 1, batch_size: int = 256,
            log: Callable[[str], None] = print) -> pd.DataFrame:
    """``OUT/hmmer_results.csv`` and ``OUT/hmmer_results.md`` (module docstring).

    Raises:
        InputError: ``out`` has no finished cell.
    """
    cells = finished_cells(out)
    if not cells:
        raise InputError(f"{out}: no finished cell (runs/<setting>/<loss>/seed<k>/final_metrics.json); "
                         "run workflows/novel_families.py first")
    rows = []
    for cell in cells:
        rows.append(cell_row(cell, out, per_family, threads, batch_size))
        log(f"{cell['noise']} / {cell['loss']} / seed {cell['seed']}: network AUROC {rows[-1]['novel/auroc']:.3f}, "
            f"HMMER {rows[-1]['hmmer/auroc']:.3f}, fused {rows[-1]['fused/auroc']:.3f} (w {rows[-1]['fused/weight']:g})")
    table = pd.DataFrame(rows)
    atomic_write_text(out / "hmmer_results.csv", table.to_csv(index=False))
    extra = {"score chosen on dev": chosen_counts,
             "fused rule chosen on dev": lambda g: chosen_counts(g, "fused/rule"),
             "matches final_metrics": lambda g: f"{int(g['consistency/ok'].sum())}/{len(g)}"}
    atomic_write_text(out / "hmmer_results.md", summary_markdown(table, COLUMNS, extra))
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-family", type=int, default=DEFAULT_PER_FAMILY,
                        help=f"reference domains per family [default: {DEFAULT_PER_FAMILY}]")
    parser.add_argument("--threads", type=int, default=1, help="phmmer threads [default: 1]")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.batch_size < 1:
        raise SystemExit("error: --threads and --batch-size must be >= 1")
    import torch

    torch.set_num_threads(args.threads)  # inference as single-threaded as the search by default
    try:
        collect(args.out, args.per_family, args.threads, args.batch_size)
    except ProtlcError as exc:  # bad input, missing pyhmmer, a broken checkpoint: one line
        raise SystemExit(f"error: {exc}") from None
    print((args.out / "hmmer_results.md").read_text())


if __name__ == "__main__":
    main()
