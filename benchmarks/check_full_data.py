"""Checks that need the full real data sets, which the unit tests (on the small subsets in tests/data) cannot make.

    python benchmarks/check_full_data.py [--data ../shared/data] [--only NAME ...] [--no-record]

NAME is one of splits, tables, ridge, prepare (default: all):

* ``splits``: the published nn4dms main splits of avGFP, Bgl3 and Pab1 have their published sizes, are
  disjoint and cover their tables.
* ``tables``: the whole Pab1 table (40,852 variants) loads in its nn4dms layout without a wild type or
  offset (every variant applied to the wild type), and so do avGFP and Bgl3.
* ``ridge``: ridge on the one-hot encoding reproduces the nn4dms reference test Pearson on each main
  split within 0.02 (docs/method.md §6: avGFP 0.824, Bgl3 0.574, Pab1 0.898; Pab1 also Spearman > 0.85).
* ``prepare``: ``protlc prepare`` of the whole extHomFam table (123,465 sequences, 107 families, gzipped
  TSV) with symmetric label noise 0.4 and cropping 0.5, twice: byte-identical outputs, the noise
  guarantees, all rows and families kept.

Data: ``../shared/data`` (the project's real data; see its README), or ``--data``. Without it the script
prints that it skipped and exits 0. Exit status 1 when a check fails. The ridge figures are printed and,
unless ``--no-record``, appended to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from results import append, stamp  # benchmarks/results.py (the script folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
NN4DMS_SIZES = {  # (rows, train, tune, test) of the nn4dms main split
    "avgfp": (54024, 43758, 4863, 5403),
    "bgl3": (26653, 21588, 2399, 2666),
    "pab1": (40852, 33089, 3677, 4086),
}
REFERENCE_PEARSON = {"avgfp": 0.824, "bgl3": 0.574, "pab1": 0.898}  # docs/method.md §6: ridge on one-hot, main split
PAB1_WT = "GNIFIKNLHPDIDNKALYDTFSVFGDILSSKIATDENGKSKGFGFVHFEEEGAAKEAIDALNGMLLNGQEIYVAP"
CHECKS = ("splits", "tables", "ridge", "prepare")


class Checker:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, name: str, ok: bool, detail: str = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
        if not ok:
            self.failed.append(name)


def check_splits(nn4dms: Path, check: Checker) -> None:
    from protlc.dms.splits import published_split

    for name, (rows, *sizes) in NN4DMS_SIZES.items():
        split = published_split(nn4dms / name / "splits_main", n_rows=rows)
        joined = np.concatenate([split.train, split.tune, split.test])
        check(f"splits/{name}", list(split.sizes().values()) == sizes and len(np.unique(joined)) == len(joined) == rows
              and joined.min() == 0 and joined.max() == rows - 1, str(split.sizes()))


def check_tables(nn4dms: Path, check: Checker) -> None:
    import pandas as pd

    from protlc.dms.tables import NUM_MUTATIONS, SCORE, load_dms_table

    for name, (rows, *_) in NN4DMS_SIZES.items():
        frame = load_dms_table(nn4dms / name / f"{name}.tsv")
        raw = pd.read_csv(nn4dms / name / f"{name}.tsv", sep="\t")
        ok = (len(frame) == rows and frame.attrs["notation"] == "nn4dms"
              and (frame[NUM_MUTATIONS].to_numpy() == raw["num_mutations"].to_numpy()).all()
              and (frame[SCORE].to_numpy() == raw["score"].to_numpy()).all())
        if name == "pab1":
            ok = ok and frame.attrs["offset"] == 126 and frame.attrs["wild_type"] == PAB1_WT
        check(f"tables/{name}", ok, f"{len(frame)} rows, offset {frame.attrs['offset']}")


def check_ridge(nn4dms: Path, check: Checker) -> list[dict]:
    from protlc.dms.ridge import ridge_baseline
    from protlc.dms.splits import published_split
    from protlc.dms.tables import MUTATED_SEQUENCE, SCORE, load_dms_table

    records = []
    for name in ("pab1", "bgl3", "avgfp"):
        start = time.perf_counter()
        frame = load_dms_table(nn4dms / name / f"{name}.tsv")
        split = published_split(nn4dms / name / "splits_main", n_rows=len(frame))
        result = ridge_baseline(frame.attrs["wild_type"], frame[MUTATED_SEQUENCE].tolist(), frame[SCORE].to_numpy(),
                                split)
        seconds = time.perf_counter() - start
        ok = abs(result.test_pearson - REFERENCE_PEARSON[name]) < 0.02
        ok = ok and len(result.test_predictions) == NN4DMS_SIZES[name][3]
        if name == "pab1":
            ok = ok and result.test_spearman > 0.85
        check(f"ridge/{name}", ok, f"test Pearson {result.test_pearson:.3f} (reference {REFERENCE_PEARSON[name]}), "
              f"Spearman {result.test_spearman:.3f}, alpha {result.alpha:g}, {seconds:.1f} s")
        records.append({**stamp("full_data_ridge"), "dataset": name, "split": "nn4dms main",
                        "test_pearson": round(result.test_pearson, 4), "test_spearman": round(result.test_spearman, 4),
                        "reference_pearson": REFERENCE_PEARSON[name], "alpha": result.alpha,
                        "seconds": round(seconds, 2)})
    return records


def check_prepare(pfam: Path, check: Checker) -> None:
    from protlc import columns as col
    from protlc.data import store
    from protlc.data.prepare import PrepareOptions, prepare_dataset

    files = ("train.parquet", "dev.parquet", "test.parquet", "labels.json", "manifest.json")
    options = PrepareOptions(label_noise=0.4, label_noise_kind="symmetric", crop_noise=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        digests = []
        for out in ("a", "b"):
            prepare_dataset([pfam / "exthomfam.tsv.gz"], Path(tmp) / out, options, progress=False)
            digests.append({f: hashlib.sha256((Path(tmp) / out / f).read_bytes()).hexdigest() for f in files})
        check("prepare/byte-identical rerun", digests[0] == digests[1])
        out = Path(tmp) / "a"
        train = store.read_split(out, "train")
        noisy = train[col.IS_NOISY]
        ok = abs(noisy.mean() - 0.4) <= 0.01 and (noisy == (train[col.LABEL] != train[col.CLEAN_LABEL])).all()
        for split in ("dev", "test"):
            frame = store.read_split(out, split)
            ok = ok and not frame[col.IS_NOISY].any() and (frame[col.LABEL] == frame[col.CLEAN_LABEL]).all()
            ok = ok and (frame[col.CROP_START] == 0).all() and (frame[col.CROP_END] == frame[col.LENGTH]).all()
        ok = ok and not set(train[col.SEQUENCE_NAME]) & set(store.read_split(out, "test")[col.SEQUENCE_NAME])
        check("prepare/noise guarantees", bool(ok), f"{noisy.mean():.4f} of {len(train)} training labels noisy")
        manifest = store.read_manifest(out)
        total = sum(manifest["counts"].values())
        check("prepare/counts", total == 123465 and manifest["num_classes"] == 107,
              f"{total} sequences, {manifest['num_classes']} families")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared real data (default ../shared/data)")
    parser.add_argument("--only", action="append", choices=CHECKS, help="run only these checks (repeatable)")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results.jsonl")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: {args.data} is not present (the checks need the full real data sets)")
        return 0
    nn4dms, pfam = args.data / "dms" / "nn4dms", args.data / "pfam"
    check, records = Checker(), []
    for name in args.only or CHECKS:
        if name == "splits":
            check_splits(nn4dms, check)
        elif name == "tables":
            check_tables(nn4dms, check)
        elif name == "ridge":
            records += check_ridge(nn4dms, check)
        elif name == "prepare":
            check_prepare(pfam, check)
    if records and not args.no_record:
        append(records)
    if check.failed:
        print(f"{len(check.failed)} check(s) failed: {', '.join(check.failed)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
