"""``protlc prepare`` end to end: real inputs, noise guarantees, reruns, and every bad input."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from protlc import columns as col
from protlc.cli import cli
from protlc.data import store
from protlc.data.prepare import PrepareOptions, prepare_dataset

FIXTURES = Path(__file__).parent / "data"
FILES = ("train.parquet", "dev.parquet", "test.parquet", "labels.json", "manifest.json")


def run(*args):
    return CliRunner().invoke(cli, ["prepare", *map(str, args)])


def digests(directory: Path) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in FILES}


def check_noise_guarantees(out: Path, rate: float) -> dict:
    train, test = store.read_split(out, "train"), store.read_split(out, "test")
    assert abs(train[col.IS_NOISY].mean() - rate) <= 0.01
    assert (train[col.IS_NOISY] == (train[col.LABEL] != train[col.CLEAN_LABEL])).all()
    for split in ("dev", "test"):
        frame = store.read_split(out, split)
        assert not frame[col.IS_NOISY].any() and (frame[col.LABEL] == frame[col.CLEAN_LABEL]).all()
        assert (frame[col.CROP_START] == 0).all() and (frame[col.CROP_END] == frame[col.LENGTH]).all()
    assert not set(train[col.SEQUENCE_NAME]) & set(test[col.SEQUENCE_NAME])
    return store.read_manifest(out)


def test_tsv_with_noise_twice_is_byte_identical(embedded_dir, tmp_path):
    args = [embedded_dir / "exthomfam_tiny32.tsv", "--label-noise", "0.4", "--crop-noise", "0.5", "--seed", "3"]
    first = run(*args, "--out", tmp_path / "a")
    assert first.exit_code == 0, first.output
    assert "label noise        symmetric r=0.4: 1113 of 2782 training rows (40.01%)" in first.output
    assert run(*args, "--out", tmp_path / "b").exit_code == 0
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    manifest = check_noise_guarantees(tmp_path / "a", 0.4)
    assert manifest["counts"] == {"train": 2782, "dev": 321, "test": 321}
    assert manifest["noise"]["crop"]["cropped"] == round(0.5 * 2782)
    other = run(*args[:-1], "4", "--out", tmp_path / "c")
    assert other.exit_code == 0 and digests(tmp_path / "c")["train.parquet"] != digests(tmp_path / "a")["train.parquet"]


def test_stockholm_seeds_pair_noise(embedded_dir, tmp_path):
    seeds = sorted((embedded_dir / "pfam_seeds").glob("*.sto"))
    result = run(*seeds, "--out", tmp_path / "seeds", "--label-noise", "0.2", "--label-noise-kind", "pair",
                 "--split", "0.6,0.2,0.2")
    assert result.exit_code == 0, result.output
    manifest = check_noise_guarantees(tmp_path / "seeds", 0.2)
    labels = store.read_labels(tmp_path / "seeds")
    assert [e["family_id"] for e in labels] == ["Caudal_act", "LuxC", "Patched", "Pkinase", "RRM_1", "SMC_N", "XYPPX", "fn3"]
    assert labels[3]["family_accession"] == "PF00069.24"
    train = store.read_split(tmp_path / "seeds", "train")
    pair = manifest["noise"]["label"]["pair_map"]
    noisy = train[train[col.IS_NOISY]]
    assert len(noisy) == round(0.2 * len(train))
    assert all(pair[c] == o for c, o in zip(noisy[col.CLEAN_LABEL], noisy[col.LABEL]))
    assert (noisy[col.FAMILY_ACCESSION] == [labels[o]["family_accession"] for o in noisy[col.LABEL]]).all()


def test_protcnn_shards_keep_their_split(tmp_path):
    result = run(FIXTURES / "protcnn_mini", "--out", tmp_path / "pc")
    assert result.exit_code == 0, result.output
    assert store.read_manifest(tmp_path / "pc")["split"]["policy"] == "given"
    assert len(store.read_split(tmp_path / "pc", "test")) == 3
    result = run(FIXTURES / "protcnn_mini", "--out", tmp_path / "pc2", "--split", "0.8,0.1,0.1")
    assert result.exit_code != 0 and "already fixes train/dev/test; drop --split" in result.output


def test_filters(embedded_dir, tmp_path):
    source = embedded_dir / "exthomfam_16fam.tsv"
    lines = source.read_text().splitlines()
    doubled = tmp_path / "doubled.tsv"
    doubled.write_text("\n".join(lines + lines[1:21]) + "\n")  # 20 identical duplicates
    options = PrepareOptions(max_length=120, min_family_size=20)
    summary = prepare_dataset([doubled], tmp_path / "f", options)
    assert summary.duplicates_dropped == 20
    lengths = [len(line.split("\t")[2]) for line in lines[1:]]
    assert summary.too_long == sum(n > 120 for n in lengths)
    assert summary.families_dropped > 0
    for split in col.SPLITS:
        assert store.read_split(tmp_path / "f", split)[col.LENGTH].max() <= 120
    assert store.read_manifest(tmp_path / "f")["filters"]["too_long"]["dropped"] is None  # before the split
    truncated = prepare_dataset([source], tmp_path / "t", PrepareOptions(max_length=120, too_long="truncate"))
    assert sum(truncated.counts.values()) == 512 and truncated.too_long == summary.too_long
    assert sum(truncated.too_long_splits["truncated"].values()) + sum(truncated.too_long_splits["kept_whole"].values()) \
        == summary.too_long


def test_truncate_cuts_the_training_split_only(embedded_dir, tmp_path):
    """The reference study cut only the training proteins; dev/test keep theirs whole, and the split is the
    one without --max-length (truncation happens after it)."""
    source, limit = embedded_dir / "exthomfam_tiny32.tsv", 200
    assert run(source, "--out", tmp_path / "whole").exit_code == 0
    result = run(source, "--out", tmp_path / "cut", "--max-length", limit, "--too-long", "truncate", "--crop-noise", "0.5")
    assert result.exit_code == 0, result.output
    long_counts = {}
    for split in col.SPLITS:
        whole, cut = store.read_split(tmp_path / "whole", split), store.read_split(tmp_path / "cut", split)
        assert cut[col.SEQUENCE_NAME].tolist() == whole[col.SEQUENCE_NAME].tolist()  # same split, same order
        long_counts[split] = int((whole[col.LENGTH] > limit).sum())
        if split == "train":
            assert cut[col.LENGTH].max() <= limit and cut[col.CROP_END].max() <= limit
            uncropped = (cut[col.CROP_START] == 0) & (cut[col.CROP_END] == whole[col.LENGTH].clip(upper=limit))
            assert (cut[col.SEQUENCE][uncropped] == [s[:limit] for s in whole[col.SEQUENCE][uncropped]]).all()
        else:
            assert cut[col.SEQUENCE].tolist() == whole[col.SEQUENCE].tolist()  # kept whole
    assert long_counts["train"] > 0 and long_counts["dev"] > 0 and long_counts["test"] > 0
    manifest = store.read_manifest(tmp_path / "cut")
    check_noise_guarantees(tmp_path / "cut", 0.0)
    assert manifest["filters"]["too_long"] == {
        "policy": "truncate", "max_length": limit, "truncated": {"train": long_counts["train"], "dev": 0, "test": 0},
        "kept_whole": {"train": 0, "dev": long_counts["dev"], "test": long_counts["test"]},
        "dropped": {"train": 0, "dev": 0, "test": 0}}
    assert manifest["filters"]["too_long_sequences"] == sum(long_counts.values())
    assert (f"{long_counts['train']} train sequences truncated, {long_counts['dev']} dev and "
            f"{long_counts['test']} test kept whole") in result.output


def test_drop_too_long_records_dropped_per_given_split(tmp_path):
    result = run(FIXTURES / "protcnn_mini", "--out", tmp_path / "pc", "--max-length", 300)
    assert result.exit_code == 0, result.output
    too_long = store.read_manifest(tmp_path / "pc")["filters"]["too_long"]
    assert too_long["dropped"] == {"train": 11, "dev": 1, "test": 1}  # the shards' rows over 300 residues
    assert too_long["truncated"] == too_long["kept_whole"] == {"train": 0, "dev": 0, "test": 0}
    for split in col.SPLITS:
        assert store.read_split(tmp_path / "pc", split)[col.LENGTH].max() <= 300


def test_summary_table_lists_everything(embedded_dir, tmp_path):
    result = run(embedded_dir / "exthomfam_16fam.tsv", "--out", tmp_path / "s", "--label-noise", "0.25")
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line.strip()}
    assert rows["families"] == ["16"]
    assert rows["split"] == ["sequences", "noisy", "len", "min", "p5", "p50", "p95", "max"]
    assert rows["train"][:2] == ["416", str(round(0.25 * 416))] and rows["dev"][:2] == ["48", "0"] and rows["test"][:2] == ["48", "0"]
    assert "crop" in rows and "duplicates" in rows


@pytest.mark.parametrize("name, extra, expected", [
    ("empty.tsv", [], "empty.tsv: the file is empty"),
    ("truncated.sto", [], "truncated.sto, record 'Caudal_act', line 1: the alignment has no closing '//'"),
    ("unequal_rows.sto", [], "unequal_rows.sto, record 'XYPPX', line 1: alignment rows have unequal lengths"),
    ("digits.tsv", [], "digits.tsv, line 6 (sequence 'A2EHI5_TRIVA/6-73'): invalid residue '4' at position 26"),
    ("stop_inside.fasta", [], "stop_inside.fasta, record 'CDC15_YEAST/25-272', line 1: invalid residue '*'"),
    ("dna_lowercase.fasta", [], "dna_lowercase.fasta, record 'avGFP_cds_1-165', line 1: invalid residue 'a'"),
    ("missing_columns.csv", [], "missing_columns.csv, line 1: missing required column(s) family_id"),
    ("duplicate_names.tsv", [], "duplicate_names.tsv, line 8 (sequence 'I1JSE6_SOYBN/1-87'): duplicate sequence name "
                                "'I1JSE6_SOYBN/1-87' with different families ('ADF' vs 'cks'); first seen at "),
    ("tiny_families.tsv", [], "tiny_families.tsv: the dev split would be empty: each family goes to train only unless "
                              "it has at least 5 members, and the largest has 3"),
    ("pfam_style.fasta", ["--label-noise", "1"], "--label-noise 1.0: the rate must be in [0, 1)"),
    ("pfam_style.fasta", ["--label-noise", "-0.2"], "--label-noise -0.2: the rate must be in [0, 1)"),
    ("pfam_style.fasta", ["--split", "0.8,0.2"], "--split '0.8,0.2': expected three fractions"),
    ("pfam_style.fasta", ["--crop-fraction", "0.9,0.2"], "--crop-fraction 0.9,0.2: need 0 < MIN <= MAX <= 1"),
    ("pfam_style.fasta", ["--format", "stockholm"], "pfam_style.fasta, line 1: expected '# STOCKHOLM 1.0'"),
])
def test_bad_input_one_line_no_output(name, extra, expected, tmp_path):
    out = tmp_path / "out"
    result = run(FIXTURES / name, "--out", out, *extra)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("protlc: error: "), result.output
    assert expected in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(embedded_dir, tmp_path):
    source = embedded_dir / "exthomfam_16fam.tsv"
    assert run(source, "--out", tmp_path / "o").exit_code == 0
    before = digests(tmp_path / "o")
    result = run(source, "--out", tmp_path / "o", "--label-noise", "0.1")
    assert result.exit_code != 0 and "already exists; pass --overwrite" in result.output
    assert digests(tmp_path / "o") == before
    assert run(source, "--out", tmp_path / "o", "--label-noise", "0.1", "--overwrite").exit_code == 0
    assert digests(tmp_path / "o") != before
    # a failing rerun with --overwrite keeps the old dataset
    after = digests(tmp_path / "o")
    assert run(FIXTURES / "digits.tsv", "--out", tmp_path / "o", "--overwrite").exit_code != 0
    assert digests(tmp_path / "o") == after


def test_mixing_fixed_and_free_splits(embedded_dir, tmp_path):
    result = run(FIXTURES / "protcnn_mini", embedded_dir / "pfam_seeds" / "fn3.sto", "--out", tmp_path / "m")
    assert result.exit_code != 0 and "cannot mix inputs with fixed splits" in result.output


def test_concatenated_seeds(pfam_seed_files, tmp_path):
    """18 real Pfam seeds (Biopython's and HMMER's test files) concatenated into one Stockholm file."""
    joined = tmp_path / "seeds.sto"
    joined.write_bytes(b"".join(p.read_bytes() for p in pfam_seed_files))
    for out in ("a", "b"):
        result = run(joined, "--out", tmp_path / out, "--label-noise", "0.4", "--crop-noise", "0.5")
        assert result.exit_code == 0, result.output
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    manifest = check_noise_guarantees(tmp_path / "a", 0.4)
    assert manifest["num_classes"] == 18 and sum(manifest["counts"].values()) == 426


def test_gzipped_tsv_gives_the_dataset_of_the_plain_one(embedded_dir, tmp_path):
    """The embedded extHomFam sample (3,424 sequences, 107 families) gzipped, as the full extHomFam
    table comes: symmetric noise 0.4 + cropping, twice; the same rows, labels and noise as from the plain
    file. (The full 123,465-sequence table: benchmarks/check_full_data.py.)"""
    plain = embedded_dir / "exthomfam_tiny32.tsv"
    source = tmp_path / "exthomfam_tiny32.tsv.gz"
    source.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    noise = ["--label-noise", "0.4", "--crop-noise", "0.5"]
    for out, path in (("a", source), ("b", source), ("plain", plain)):
        result = run(path, "--out", tmp_path / out, *noise)
        assert result.exit_code == 0, result.output
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    manifest = check_noise_guarantees(tmp_path / "a", 0.4)
    assert sum(manifest["counts"].values()) == 3424 and manifest["num_classes"] == 107
    assert manifest["sources"][0]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    same = {name: digest for name, digest in digests(tmp_path / "a").items() if name != "manifest.json"}
    assert same == {name: digest for name, digest in digests(tmp_path / "plain").items() if name != "manifest.json"}
