"""Readers: format detection, Stockholm (via Biopython), TSV/CSV, ProtCNN shards, FASTA, validation."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from Bio import AlignIO
from hypothesis import given, settings
from hypothesis import strategies as st

from protlc.alphabet import ALPHABET
from protlc.data import stockholm
from protlc.data.records import RecordBlock, clean_sequences, lines_at, suspect_rows
from protlc.data.readers import detect_format, iter_records, read_blocks
from protlc.errors import ConfigError, InputError

FIXTURES = Path(__file__).parent / "data"


def all_records(path, fmt="auto", **kwargs):
    return list(iter_records(path, fmt, **kwargs))


# --------------------------------------------------------------------------- detection


def test_detect_format_by_content(embedded_dir, tmp_path):
    assert detect_format(embedded_dir / "pfam_seeds" / "fn3.sto") == "stockholm"
    assert detect_format(embedded_dir / "exthomfam_16fam.tsv") == "tsv"
    assert detect_format(FIXTURES / "missing_columns.csv") == "tsv"
    assert detect_format(FIXTURES / "pfam_style.fasta") == "fasta"
    assert detect_format(FIXTURES / "protcnn_mini") == "protcnn-csv"
    # by content, not by name: a gzipped Stockholm file called .txt.gz
    gz = tmp_path / "seed.txt.gz"
    gz.write_bytes(gzip.compress((embedded_dir / "pfam_seeds" / "XYPPX.sto").read_bytes()))
    assert detect_format(gz) == "stockholm"


@pytest.mark.parametrize("name, message", [("empty.tsv", "the file is empty"), ("nonexistent.sto", "no such file")])
def test_detect_format_errors(name, message):
    with pytest.raises(InputError, match=message):
        detect_format(FIXTURES / name)


def test_directory_without_splits_is_an_error(tmp_path):
    with pytest.raises(InputError, match="train/, dev/ and test/"):
        detect_format(tmp_path)


def test_unknown_format_option():
    with pytest.raises(ConfigError, match="unknown format"):
        list(read_blocks(FIXTURES / "digits.tsv", "xml"))


# --------------------------------------------------------------------------- Stockholm


@pytest.mark.parametrize("name", ["Pkinase", "SMC_N", "XYPPX", "fn3"])
def test_stockholm_matches_biopython(embedded_dir, name):
    path = embedded_dir / "pfam_seeds" / f"{name}.sto"
    records = all_records(path)
    alignment = AlignIO.read(path, "stockholm")
    assert [r.name for r in records] == [row.id for row in alignment]
    expected = [str(row.seq).replace("-", "").replace(".", "").upper() for row in alignment]
    assert [r.sequence for r in records] == expected
    assert {r.family_id for r in records} == {name}
    assert all(r.family_accession.startswith("PF") for r in records)
    assert all(r.split is None for r in records)


def test_stockholm_lowercase_inserts_are_upper_cased(embedded_dir):
    # SMC_N's seed marks insert columns in lower case
    text = (embedded_dir / "pfam_seeds" / "SMC_N.sto").read_text()
    assert any(c.islower() for line in text.splitlines() if not line.startswith("#") for c in line.split()[-1])
    assert all(r.sequence.isupper() for r in all_records(embedded_dir / "pfam_seeds" / "SMC_N.sto"))


def test_stockholm_concatenated_gzipped_latin1(embedded_dir, tmp_path):
    names = ["XYPPX", "Caudal_act", "LuxC"]
    text = "".join((embedded_dir / "pfam_seeds" / f"{n}.sto").read_text() for n in names)
    text = text.replace("#=GF AU   Mian N, Bateman A", "#=GF AU   Björklund ÅK, Mian N")  # Pfam-A.seed is latin-1
    path = tmp_path / "Pfam-A.seed.gz"
    path.write_bytes(gzip.compress(text.encode("latin-1")))
    records = all_records(path)
    assert [r.family_id for r in records] == ["XYPPX"] * 7 + ["Caudal_act"] * 9 + ["LuxC"] * 13
    assert records[7].family_accession == "PF04731.3"
    assert "line 49" in records[7].location  # Caudal_act starts right after XYPPX's 48 lines


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000])
def test_alignment_texts_do_not_depend_on_chunk_boundaries(embedded_dir, chunk):
    text = "\n\n".join((embedded_dir / "pfam_seeds" / f"{n}.sto").read_text() for n in ["XYPPX", "Caudal_act", "RRM_1"])
    whole = list(stockholm.alignment_texts(io.StringIO(text), chunk_chars=1 << 20))
    assert [t for _, t, _ in whole] == [t for _, t, _ in stockholm.alignment_texts(io.StringIO(text), chunk_chars=chunk)]
    assert len(whole) == 3 and all(done for _, _, done in whole)
    assert [text[offset:offset + 15] for offset, _, _ in whole] == ["# STOCKHOLM 1.0"] * 3


@pytest.mark.parametrize("name, expected", [
    ("truncated.sto", "truncated.sto, record 'Caudal_act', line 1: the alignment has no closing '//' before the end of the file"),
    ("truncated_midrow.sto", "truncated_midrow.sto, record 'Caudal_act', line 1: the alignment has no closing '//'"),
    ("missing_terminator.sto", "missing_terminator.sto, record 'XYPPX', line 48: a new '# STOCKHOLM 1.0' header before the closing '//'"),
    ("unequal_rows.sto", "unequal_rows.sto, record 'XYPPX', line 1: alignment rows have unequal lengths: "
                         "'OPSD_SEPOF/451-455' has 5 columns, 'OPSD_SEPOF/424-428' has 4"),
])
def test_stockholm_bad_records(name, expected):
    with pytest.raises(InputError) as info:
        all_records(FIXTURES / name)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_stockholm_alignment_without_rows_is_not_silently_skipped(embedded_dir, tmp_path):
    # Biopython alone stops at such a record and drops every family after it
    xyppx = (embedded_dir / "pfam_seeds" / "XYPPX.sto").read_text()
    header_only = "".join(line for line in xyppx.splitlines(keepends=True) if line.startswith("#") or line.startswith("//"))
    header_only = "\n".join(line for line in header_only.splitlines() if not line.startswith("#=GC")) + "\n"
    path = tmp_path / "gap.sto"
    path.write_text(header_only + (embedded_dir / "pfam_seeds" / "Caudal_act.sto").read_text())
    with pytest.raises(InputError, match=r"gap.sto, record 'XYPPX', line 1: the alignment has no sequence rows"):
        all_records(path)


def test_stockholm_non_ascii_residue_is_reported_on_its_row(embedded_dir, tmp_path):
    text = (embedded_dir / "pfam_seeds" / "XYPPX.sto").read_text()
    path = tmp_path / "accent.sto"
    path.write_bytes(text.replace("GYPPA\n", "GYPPÄ\n").encode("latin-1"))
    with pytest.raises(InputError, match=r"accent.sto, record 'XYPPX', line 42: sequence 'OPSD_SEPOF/424-428': invalid residue 'Ä'"):
        all_records(path)


def test_stockholm_without_family_id(embedded_dir, tmp_path):
    text = (embedded_dir / "pfam_seeds" / "XYPPX.sto").read_text()
    path = tmp_path / "anon.sto"
    path.write_text("".join(line for line in text.splitlines(keepends=True) if not line.startswith(("#=GF ID", "#=GF AC"))))
    with pytest.raises(InputError, match="neither '#=GF ID' nor '#=GF AC'"):
        all_records(path)
    path.write_text("".join(line for line in text.splitlines(keepends=True) if not line.startswith("#=GF ID")))
    assert {r.family_id for r in all_records(path)} == {"PF02162.8"}  # the accession names the family


def test_stockholm_parse_error_names_the_line(embedded_dir, tmp_path):
    text = (embedded_dir / "pfam_seeds" / "XYPPX.sto").read_text()
    path = tmp_path / "bad.sto"
    path.write_text(text.replace("#=GF SQ   7\n", "#=GF SQ\n"))  # a #=GF line without text
    with pytest.raises(InputError, match=r"bad.sto, record 'XYPPX', line 32: cannot parse '#=GF SQ' "):
        all_records(path)


def test_real_stockholm_seeds_each_parse(pfam_seed_files):
    assert len(pfam_seed_files) == 18
    for path in pfam_seed_files:
        records = all_records(path)
        assert len(records) == len(AlignIO.read(path, "stockholm")), path


# --------------------------------------------------------------------------- TSV / CSV / ProtCNN


def test_tsv_embedded_sample(embedded_dir):
    records = all_records(embedded_dir / "exthomfam_tiny32.tsv")
    assert len(records) == 3424
    assert len({r.family_id for r in records}) == 107
    assert records[0].name == "E9EI75_METAQ/1-127" and records[0].family_accession is None
    assert records[0].location.endswith("line 2 (sequence 'E9EI75_METAQ/1-127')")


def test_tsv_without_names_gets_row_names(embedded_dir, tmp_path):
    lines = (embedded_dir / "exthomfam_16fam.tsv").read_text().splitlines()[:4]
    path = tmp_path / "two_columns.csv"
    path.write_text("\n".join(",".join(line.split("\t")[::2]) for line in lines) + "\n")
    assert [r.name for r in all_records(path)] == ["two_columns.csv#1", "two_columns.csv#2", "two_columns.csv#3"]


def test_tsv_cleaning_strips_spaces_and_final_stop(embedded_dir, tmp_path):
    first = (embedded_dir / "exthomfam_16fam.tsv").read_text().splitlines()[:2]
    family, name, sequence = first[1].split("\t")
    path = tmp_path / "stop.tsv"
    path.write_text(f"{first[0]}\n{family}\t{name}\t {sequence}* \n")
    assert all_records(path)[0].sequence == sequence


@pytest.mark.parametrize("name, expected", [
    ("digits.tsv", "digits.tsv, line 6 (sequence 'A2EHI5_TRIVA/6-73'): invalid residue '4' at position 26"),
    ("missing_columns.csv", "missing_columns.csv, line 1: missing required column(s) family_id (found: family, sequence_name, sequence"),
    ("header_only.tsv", "header_only.tsv: the file holds no records"),
])
def test_tsv_bad_inputs(name, expected):
    with pytest.raises(InputError) as info:
        all_records(FIXTURES / name)
    assert expected in str(info.value)


def test_tsv_ragged_row_names_its_line(embedded_dir, tmp_path):
    lines = (embedded_dir / "exthomfam_16fam.tsv").read_text().splitlines()[:5]
    lines[3] = lines[3].split("\t")[0]
    path = tmp_path / "ragged.tsv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"ragged.tsv, line 4: expected 3 fields, found 1"):
        all_records(path)


def test_protcnn_shards_keep_their_split_and_skip_aligned_sequence():
    records = all_records(FIXTURES / "protcnn_mini")
    assert {r.split for r in records} == {"train", "dev", "test"}
    assert sum(r.split == "test" for r in records) == 3 and len(records) == 29
    assert all("." not in r.sequence and r.sequence.isupper() for r in records)
    assert records[0].family_accession == "PF04731.3"


def test_protcnn_missing_shards(tmp_path):
    shutil.copytree(FIXTURES / "protcnn_mini", tmp_path / "split")
    for shard in (tmp_path / "split" / "dev").iterdir():
        shard.unlink()
    with pytest.raises(InputError, match=r"split/dev: no CSV shards"):
        all_records(tmp_path / "split")


# --------------------------------------------------------------------------- FASTA


def test_fasta_pfam_headers():
    records = all_records(FIXTURES / "pfam_style.fasta")
    assert len(records) == 36
    assert records[0].name == "CDC15_YEAST/25-272"
    assert (records[0].family_id, records[0].family_accession) == ("Pkinase", "PF00069.24")
    assert {r.family_id for r in records} == {"Pkinase", "fn3", "RRM_1"}


@pytest.mark.parametrize("header, expected", [
    ("CDC15_YEAST/25-272 family=Pkinase accession=PF00069.24", ("CDC15_YEAST/25-272", "Pkinase", "PF00069.24")),
    ("CDC15_YEAST/25-272 some text family_id=Pkinase", ("CDC15_YEAST/25-272", "Pkinase", None)),
    ("CDC15_YEAST/25-272 Pkinase", ("CDC15_YEAST/25-272", "Pkinase", None)),
])
def test_fasta_default_header_patterns(header, expected, tmp_path):
    sequence = all_records(FIXTURES / "pfam_style.fasta")[0].sequence
    path = tmp_path / "h.fasta"
    path.write_text(f">{header}\n{sequence}\n")
    record = all_records(path)[0]
    assert (record.name, record.family_id, record.family_accession) == expected
    assert record.sequence == sequence


def test_fasta_custom_regex_and_missing_family(tmp_path):
    sequence = all_records(FIXTURES / "pfam_style.fasta")[0].sequence
    path = tmp_path / "pipe.fasta"
    path.write_text(f">sp|P27636|CDC15_YEAST\n{sequence}\n")
    with pytest.raises(InputError, match=r"pipe.fasta, line 1: cannot find the family in header 'sp\|P27636\|CDC15_YEAST'"):
        all_records(path)
    record = all_records(path, fasta_patterns=(r"^sp\|(?P<name>[^|]+)\|(?P<family>\S+)",))[0]
    assert (record.name, record.family_id) == ("P27636", "CDC15_YEAST")
    with pytest.raises(ConfigError, match=r"needs a named group \(\?P<family>"):
        all_records(path, fasta_patterns=(r"^(\S+)",))


@pytest.mark.parametrize("name, expected", [
    ("stop_inside.fasta", "stop_inside.fasta, record 'CDC15_YEAST/25-272', line 1: invalid residue '*' at position 41"),
    ("dna_lowercase.fasta", "dna_lowercase.fasta, record 'avGFP_cds_1-165', line 1: invalid residue 'a' at position 1"),
])
def test_fasta_bad_sequences(name, expected):
    with pytest.raises(InputError) as info:
        all_records(FIXTURES / name)
    assert expected in str(info.value)


def test_uppercase_dna_is_recognised(tmp_path):
    dna = (FIXTURES / "dna_lowercase.fasta").read_text().upper()
    path = tmp_path / "dna.fasta"
    path.write_text(dna.replace("GFP\n", "GFP\n", 1))
    with pytest.raises(InputError, match="looks like a nucleotide sequence"):
        all_records(path)


# --------------------------------------------------------------------------- vectorised cleaning / screening

_texts = st.text(alphabet="ACDEFGHIKLMNPQRSTVWYXBZ*acgtu-. 1\tN", max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(_texts, min_size=1, max_size=20))
def test_vectorised_clean_and_screen_agree_with_alphabet(texts):
    cleaned = clean_sequences(pa.array(texts, pa.string())).to_pylist()
    assert cleaned == [ALPHABET.clean(t) for t in texts]
    flagged = set(suspect_rows(pa.array(cleaned, pa.string())).tolist())
    assert {i for i, s in enumerate(cleaned) if ALPHABET.problem(s) is not None} <= flagged


def test_screen_flags_long_nucleotide_rows():
    rows = ["ACGT" * 10, "ACGT" * 7, "MKV" + "ACGT" * 10]
    assert suspect_rows(pa.array(rows)).tolist() == [0]
    assert ALPHABET.problem(rows[0]) is not None and ALPHABET.problem(rows[1]) is None


def test_lines_at_offsets_in_one_pass(embedded_dir):
    path = embedded_dir / "pfam_seeds" / "RRM_1.sto"
    text = path.read_text()
    offsets = np.array([0, 5, 900, 17, len(text) - 1, 900, 4000])
    expected = [text.count("\n", 0, o) + 1 for o in offsets]
    for chunk in (3, 64, 1 << 20):
        assert lines_at(path, offsets, chunk_chars=chunk).tolist() == expected


def test_record_block_locations_resolve_lines_lazily(embedded_dir):
    block = next(read_blocks(embedded_dir / "pfam_seeds" / "RRM_1.sto"))
    assert isinstance(block, RecordBlock) and len(block) == 79
    assert block.location(3).startswith(f"{embedded_dir / 'pfam_seeds' / 'RRM_1.sto'}, record 'RRM_1', line 1")


def test_bulk_degap_matches_per_row(embedded_dir):
    alignment = AlignIO.read(embedded_dir / "pfam_seeds" / "SMC_N.sto", "stockholm")
    rows = [str(r.seq) for r in alignment] + ["----", "a-B", "Q"]
    expected = [row.replace("-", "").upper() for row in rows]
    assert stockholm._degap_upper(rows).to_pylist() == expected
    assert stockholm._degap_upper(["PÄ-K"]).to_pylist() == ["PÄK"]  # non-ASCII takes the per-row path
