"""Rebuild the tiny fixtures in this folder from real data (run from the repository root).

    python tests/data/make_fixtures.py

Every fixture is cut from real sequences: the embedded Pfam seeds (data/pfam_seeds) and extHomFam
sample (data/exthomfam_tiny32.tsv). The bad-input fixtures each carry exactly one defect. The one
nucleotide sequence is the start of the avGFP coding sequence (Prasher et al. 1992), which translates
to residues 1-54 of the avGFP wild type in tests/data/nn4dms/wt_sequences.tsv.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from Bio import AlignIO

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SEEDS = REPO / "data" / "pfam_seeds"
TINY = REPO / "data" / "exthomfam_tiny32.tsv"
GFP_DNA = (
    "ATGAGTAAAGGAGAAGAACTTTTCACTGGAGTTGTCCCAATTCTTGTTGAATTAGATGGTGATGTTAATGGGCACAAATTTTCTGTCAGTGGAGAG"
    "GGTGAAGGTGATGCAACATACGGAAAACTTACCCTTAAATTTATTTGCACTACTGGAAAACTACCTGTTCC"
)


def seed_rows(name: str) -> list[tuple[str, str, str, str]]:
    """(row name, family id, accession, aligned row) of one seed alignment."""
    text = (SEEDS / f"{name}.sto").read_text(encoding="latin-1")
    family = next(line.split()[2] for line in text.splitlines() if line.startswith("#=GF ID"))
    accession = next(line.split()[2] for line in text.splitlines() if line.startswith("#=GF AC"))
    alignment = AlignIO.read(io.StringIO(text), "stockholm")
    return [(r.id, family, accession, str(r.seq)) for r in alignment]


def tiny_rows(families: list[str], per_family: int) -> list[dict]:
    with open(TINY, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = []
    for family in families:
        out.extend([r for r in rows if r["family_id"] == family][:per_family])
    return out


def write_tsv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = "\t") -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def stockholm_fixtures() -> None:
    text = (SEEDS / "Caudal_act.sto").read_text(encoding="latin-1")
    lines = text.splitlines(keepends=True)
    # a download cut off before the closing '//'
    (HERE / "truncated.sto").write_text("".join(lines[:-1]), encoding="latin-1")
    # a download cut off in the middle of the last sequence row
    last_row = max(i for i, line in enumerate(lines) if line[:1] not in "#/\n")
    (HERE / "truncated_midrow.sto").write_text("".join(lines[:last_row]) + lines[last_row][:60], encoding="latin-1")
    # one alignment row lost its last column
    xyppx = (SEEDS / "XYPPX.sto").read_text(encoding="latin-1")
    (HERE / "unequal_rows.sto").write_text(xyppx.replace("GYPPA\n", "GYPP\n"), encoding="latin-1")
    # two real seeds where the first one lost its '//'
    two = xyppx.replace("\n//\n", "\n") + (SEEDS / "Caudal_act.sto").read_text(encoding="latin-1")
    (HERE / "missing_terminator.sto").write_text(two, encoding="latin-1")


def fasta_fixtures() -> None:
    with open(HERE / "pfam_style.fasta", "w") as fh:  # Pfam-A.fasta headers
        for name in ("Pkinase", "fn3", "RRM_1"):
            for row, family, accession, aligned in seed_rows(name)[:12]:
                sequence = aligned.replace("-", "").replace(".", "").upper()
                fh.write(f">{row} {row.split('/')[0]}.1 {accession};{family};\n")
                for i in range(0, len(sequence), 60):
                    fh.write(sequence[i : i + 60] + "\n")
    real = seed_rows("Pkinase")[0]
    sequence = real[3].replace("-", "").replace(".", "").upper()
    with open(HERE / "stop_inside.fasta", "w") as fh:  # '*' in the middle of a real kinase domain
        fh.write(f">{real[0]} {real[1]}\n{sequence[:40]}*{sequence[40:]}\n")
    with open(HERE / "dna_lowercase.fasta", "w") as fh:
        fh.write(f">avGFP_cds_1-165 GFP\n{GFP_DNA.lower()}\n")


def table_fixtures() -> None:
    rows = tiny_rows(["ADF", "cks"], 3)
    # digits inside a real sequence (a spreadsheet ate a column)
    bad = [[r["family_id"], r["sequence_name"], r["sequence"]] for r in rows]
    bad[4][2] = bad[4][2][:25] + "42" + bad[4][2][25:]
    write_tsv(HERE / "digits.tsv", ["family_id", "sequence_name", "sequence"], bad)
    write_tsv(HERE / "missing_columns.csv", ["family", "sequence_name", "sequence"],
              [[r["family_id"], r["sequence_name"], r["sequence"]] for r in rows], delimiter=",")
    dup = [[r["family_id"], r["sequence_name"], r["sequence"]] for r in rows]
    dup.append(["cks", dup[1][1], dup[1][2]])  # ADF's second row again, labelled cks
    write_tsv(HERE / "duplicate_names.tsv", ["family_id", "sequence_name", "sequence"], dup)
    # 3 members per family: too few for a non-empty 0.8,0.1,0.1 dev/test split
    write_tsv(HERE / "tiny_families.tsv", ["family_id", "sequence_name", "sequence"],
              [[r["family_id"], r["sequence_name"], r["sequence"]] for r in rows])
    (HERE / "empty.tsv").write_text("")
    (HERE / "header_only.tsv").write_text("family_id\tsequence_name\tsequence\n")


def protcnn_fixture() -> None:
    """ProtCNN random-split layout from three real seed alignments (aligned_sequence as in the seed)."""
    root = HERE / "protcnn_mini"
    header = ["family_id", "sequence_name", "family_accession", "aligned_sequence", "sequence"]
    shards = {"train": [[], []], "dev": [[]], "test": [[]]}
    for name in ("Caudal_act", "LuxC", "XYPPX"):
        for i, (row, family, accession, aligned) in enumerate(seed_rows(name)):
            record = [family, row, accession, aligned.replace("-", "."), aligned.replace("-", "").replace(".", "").upper()]
            split = "test" if i == 0 else "dev" if i == 1 else "train"
            shards[split][i % len(shards[split])].append(record)
    for split, parts in shards.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for k, records in enumerate(parts):
            write_tsv(root / split / f"data-{k:05d}-of-{len(parts):05d}", header, records, delimiter=",")


if __name__ == "__main__":
    stockholm_fixtures()
    fasta_fixtures()
    table_fixtures()
    protcnn_fixture()
