"""Rebuild the real-data subsets in this folder from the project's shared data (run from the repository root).

    python tests/data/make_dms_fixtures.py [--source ../shared/data]

Nothing is generated: every row, index and alignment is copied byte for byte from the source files
(see tests/data/README.md for sources and licences). The rules:

* ``nn4dms/<name>/<name>.tsv``: the header and every ``STEP[name]``-th data row of the nn4dms table
  (data rows 0, STEP, 2*STEP, ...; file order kept). ``wt_sequences.tsv``, ``LICENSE`` and
  ``source_data_README.md`` are copied whole.
* ``nn4dms/<name>/splits_main/{train,tune,stest}.txt``: the published main split restricted to those
  rows, each kept index renumbered to its row in the subset (0-based, header excluded, the nn4dms
  layout), in the published order.
* ``proteingym_ref/DMS_substitutions.csv``: the header and the rows of ``PROTEINGYM_IDS``; its LICENSE.
* ``stockholm_seeds/biopython-1.88/``: the Biopython Pfam seed files and their LICENSE.rst, unchanged.
  (The HMMER seeds of ``stockholm_seeds/hmmer-3.3.2`` are already in the repository's data/pfam_seeds.)
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STEP = {"pab1": 40, "avgfp": 100, "bgl3": 100}
SPLIT_FILES = ("train.txt", "tune.txt", "stest.txt")
PROTEINGYM_IDS = ("BLAT_ECOLX_Stiffler_2015", "PABP_YEAST_Melamed_2013")


def copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def nn4dms(source: Path, target: Path) -> None:
    for name in ("LICENSE", "source_data_README.md", "wt_sequences.tsv"):
        copy(source / name, target / name)
    for name, step in STEP.items():
        lines = (source / name / f"{name}.tsv").read_bytes().splitlines(keepends=True)
        header, rows = lines[0], lines[1:]
        kept = range(0, len(rows), step)
        (target / name).mkdir(parents=True, exist_ok=True)
        (target / name / f"{name}.tsv").write_bytes(header + b"".join(rows[i] for i in kept))
        renumber = {old: new for new, old in enumerate(kept)}
        (target / name / "splits_main").mkdir(exist_ok=True)
        for split in SPLIT_FILES:
            published = (source / name / "splits_main" / split).read_text().split()
            subset = [renumber[int(i)] for i in published if int(i) in renumber]
            (target / name / "splits_main" / split).write_text("".join(f"{i}\n" for i in subset))


def proteingym(source: Path, target: Path) -> None:
    lines = (source / "DMS_substitutions.csv").read_bytes().splitlines(keepends=True)
    records = list(csv.reader(line.decode() for line in lines))
    assert len(records) == len(lines), "a record spans several lines"
    column = records[0].index("DMS_id")
    kept = [line for line, record in zip(lines[1:], records[1:]) if record[column] in PROTEINGYM_IDS]
    assert len(kept) == len(PROTEINGYM_IDS)
    target.mkdir(parents=True, exist_ok=True)
    (target / "DMS_substitutions.csv").write_bytes(lines[0] + b"".join(kept))
    copy(source / "LICENSE", target / "LICENSE")


def stockholm_seeds(source: Path, target: Path) -> None:
    for path in sorted(source.iterdir()):
        copy(path, target / path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    nn4dms(args.source / "dms" / "nn4dms", HERE / "nn4dms")
    proteingym(args.source / "dms" / "proteingym_ref", HERE / "proteingym_ref")
    stockholm_seeds(args.source / "pfam" / "stockholm_seeds" / "biopython-1.88",
                    HERE / "stockholm_seeds" / "biopython-1.88")


if __name__ == "__main__":
    main()
