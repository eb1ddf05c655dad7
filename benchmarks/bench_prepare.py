"""Benchmark ``protlc prepare`` against the bare parse of the same input, in the same run.

    python benchmarks/bench_prepare.py [--repeats 3] [--copies 300] [--no-record]

Inputs (real data only; ../shared/data when present, else the embedded data/):

* ``seeds-stockholm``: the real Pfam seed alignments concatenated over and over (each copy's family
  ids and sequence names get a copy suffix, so that every copy is a distinct family), like
  Pfam-A.seed with full ``#=GF/#=GS/#=GR`` annotation. Bare parse: ``Bio.AlignIO.parse``.
* ``exthomfam-stockholm``: the extHomFam sequences written as one Stockholm alignment per family
  (rows padded with ``-``). Bare parse: ``Bio.AlignIO.parse``.
* ``exthomfam-tsv``: ``exthomfam.tsv.gz`` as it comes. Bare parse: ``pandas.read_csv``.

``prepare`` runs with symmetric label noise 0.4 and cropping noise 0.5 and writes the dataset
directory. Each figure is the best of ``--repeats`` runs (bare and prepare interleaved): wall clock,
and CPU time of all the process's threads (steadier on a shared machine; prepare hashes the input and
writes the three Parquet files on extra threads). Results are printed and appended to
``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from Bio import AlignIO

from protlc.data.prepare import PrepareOptions, prepare_dataset
from results import append, stamp  # benchmarks/results.py (the script folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "pfam"
EMBEDDED = REPO / "data"
OPTIONS = PrepareOptions(label_noise=0.4, label_noise_kind="symmetric", crop_noise=0.5)


def seed_files() -> list[Path]:
    if (SHARED / "stockholm_seeds").is_dir():
        files = sorted((SHARED / "stockholm_seeds").glob("*/*"))
        return [p for p in files if p.suffix in (".sto", ".sth") or p.name.endswith(".seed.txt")]
    return sorted((EMBEDDED / "pfam_seeds").glob("*.sto"))


def renamed_copy(text: str, k: int) -> str:
    """One copy of a seed alignment whose family id and sequence names carry the suffix ``_c<k>``."""
    out = []
    for line in text.splitlines():
        if line.startswith("#=GF ID"):
            line = f"{line}_c{k}"
        elif line.startswith(("#=GS ", "#=GR ")):
            tag, name, rest = line.split(None, 2)
            line = f"{tag} c{k}_{name} {rest}"
        elif line and not line.startswith("#") and line != "//":
            line = f"c{k}_{line}"
        out.append(line)
    return "\n".join(out) + "\n"


def build_seed_stockholm(path: Path, copies: int) -> None:
    texts = [p.read_text(encoding="latin-1") for p in seed_files()]
    with open(path, "w", encoding="latin-1") as fh:
        for k in range(copies):
            for text in texts:
                fh.write(renamed_copy(text, k))


def tsv_source() -> Path:
    return SHARED / "exthomfam.tsv.gz" if (SHARED / "exthomfam.tsv.gz").is_file() else EMBEDDED / "exthomfam_tiny32.tsv"


def build_exthomfam_stockholm(path: Path) -> None:
    table = pd.read_csv(tsv_source(), sep="\t")
    with open(path, "w") as fh:
        for family, group in table.groupby("family_id", sort=True):
            width = int(group["sequence"].str.len().max())
            fh.write(f"# STOCKHOLM 1.0\n#=GF ID   {family}\n")
            for name, sequence in zip(group["sequence_name"], group["sequence"]):
                fh.write(f"{name:<40} {sequence.ljust(width, '-')}\n")
            fh.write("//\n")


def bare_stockholm(path: Path) -> int:
    return sum(len(alignment) for alignment in AlignIO.parse(str(path), "stockholm"))


def bare_tsv(path: Path) -> int:
    return len(pd.read_csv(path, sep="\t"))


def _timed(function, *args) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def best_of(repeats: int, bare, path: Path, out: Path) -> dict:
    """Best wall and CPU (all threads) seconds of the bare parse and of prepare, runs interleaved."""
    times = {"bare_wall": [], "bare_cpu": [], "prepare_wall": [], "prepare_cpu": []}
    n = 0
    for _ in range(repeats):
        n, wall, cpu = _timed(bare, path)
        times["bare_wall"].append(wall)
        times["bare_cpu"].append(cpu)
        summary, wall, cpu = _timed(lambda: prepare_dataset([path], out, OPTIONS, overwrite=True, progress=False))
        times["prepare_wall"].append(wall)
        times["prepare_cpu"].append(cpu)
        assert sum(summary.counts.values()) == n, (summary.counts, n)
    return {"sequences": n, **{key: min(values) for key, values in times.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=300, help="copies of the seed set in seeds-stockholm")
    parser.add_argument("--only", choices=("seeds-stockholm", "exthomfam-stockholm", "exthomfam-tsv"), action="append")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results.jsonl")
    args = parser.parse_args(argv)

    records = []
    with tempfile.TemporaryDirectory(prefix="bench_prepare.") as tmp:
        tmp = Path(tmp)
        cases = {
            "seeds-stockholm": (lambda p: build_seed_stockholm(p, args.copies), tmp / "seeds.sto", bare_stockholm,
                                "Bio.AlignIO.parse"),
            "exthomfam-stockholm": (build_exthomfam_stockholm, tmp / "exthomfam.sto", bare_stockholm, "Bio.AlignIO.parse"),
            "exthomfam-tsv": (None, tsv_source(), bare_tsv, "pandas.read_csv"),
        }
        print(f"{'input':<22}{'sequences':>10}{'MB':>7}{'bare parse s':>14}{'prepare s':>11}{'ratio':>7}"
              f"{'CPU ratio':>11}{'prepare seq/s':>15}")
        for name, (build, path, bare, baseline) in cases.items():
            if args.only and name not in args.only:
                continue
            if build is not None:
                build(path)
            t = best_of(args.repeats, bare, path, tmp / "out")
            n, size_mb = t["sequences"], path.stat().st_size / 1e6
            ratio, cpu_ratio = t["prepare_wall"] / t["bare_wall"], t["prepare_cpu"] / t["bare_cpu"]
            records.append({
                **stamp("prepare"), "input": name,
                "source": str(path if build is None else path.name), "sequences": n, "input_mb": round(size_mb, 1),
                "baseline": baseline, "bare_parse_s": round(t["bare_wall"], 3), "prepare_s": round(t["prepare_wall"], 3),
                "ratio": round(ratio, 2), "bare_parse_cpu_s": round(t["bare_cpu"], 3),
                "prepare_cpu_s": round(t["prepare_cpu"], 3), "cpu_ratio": round(cpu_ratio, 2),
                "prepare_seq_per_s": round(n / t["prepare_wall"]), "bare_seq_per_s": round(n / t["bare_wall"]),
                "repeats": args.repeats, "options": "symmetric label noise 0.4, crop noise 0.5",
            })
            print(f"{name:<22}{n:>10}{size_mb:>7.1f}{t['bare_wall']:>14.3f}{t['prepare_wall']:>11.3f}{ratio:>7.2f}"
                  f"{cpu_ratio:>11.2f}{n / t['prepare_wall']:>15,.0f}")
    if not args.no_record:
        append(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
