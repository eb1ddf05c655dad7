"""Loading DMS tables into the canonical frame: real nn4dms tables, ProteinGym-style files, bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from protlc.dms.tables import (
    CANONICAL_COLUMNS,
    MUTANT,
    MUTATED_SEQUENCE,
    NUM_MUTATIONS,
    POSITIONS,
    SCORE,
    load_dms_table,
    read_nn4dms_wild_type,
    read_wild_type,
)
from protlc.errors import InputError

PAB1_WT = "GNIFIKNLHPDIDNKALYDTFSVFGDILSSKIATDENGKSKGFGFVHFEEEGAAKEAIDALNGMLLNGQEIYVAP"


@pytest.fixture(scope="module")
def pab1_rows(nn4dms):
    return pd.read_csv(nn4dms / "pab1" / "pab1.tsv", sep="\t").iloc[::10].reset_index(drop=True)


def _write(tmp_path, name, frame: pd.DataFrame):
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if name.endswith(".tsv") else ",", index=False)
    return path


def test_real_nn4dms_table_in_its_layout_needs_no_wt_or_offset(nn4dms):
    frame = load_dms_table(nn4dms / "pab1" / "pab1.tsv")
    raw = pd.read_csv(nn4dms / "pab1" / "pab1.tsv", sep="\t")
    assert list(frame.columns) == list(CANONICAL_COLUMNS)
    assert len(frame) == 1022  # the repository's subset: every 40th row of nn4dms' pab1.tsv
    assert frame.attrs["notation"] == "nn4dms" and frame.attrs["offset"] == 126
    assert frame.attrs["wild_type"] == PAB1_WT
    assert (frame[NUM_MUTATIONS].to_numpy() == raw["num_mutations"].to_numpy()).all()
    assert (frame[SCORE].to_numpy() == raw["score"].to_numpy()).all()
    assert frame[MUTANT].iloc[0] == "G126A" and frame[POSITIONS].iloc[0] == (0,)
    assert frame[POSITIONS].iloc[-1] == (33, 38) and type(frame[POSITIONS].iloc[-1][0]) is int
    assert frame[MUTATED_SEQUENCE].iloc[0] == "A" + PAB1_WT[1:]


def test_nn4dms_wild_type_table(nn4dms):
    assert read_nn4dms_wild_type(nn4dms / "wt_sequences.tsv", "pab1") == (PAB1_WT, 126)
    wt, offset = read_nn4dms_wild_type(nn4dms / "wt_sequences.tsv", "avgfp")
    assert offset == 0 and len(wt) == 237 and wt.startswith("SKGEELFTG")
    with pytest.raises(InputError, match="no data set 'gfp'"):
        read_nn4dms_wild_type(nn4dms / "wt_sequences.tsv", "gfp")


def test_copied_nn4dms_table_with_literal_wt_hints_at_the_offset(tmp_path, pab1_rows):
    path = _write(tmp_path, "pab1_sample.tsv", pab1_rows)
    with pytest.raises(InputError, match=r"pab1_sample.tsv, row 0 \(line 2\): mutant 'G126A'.*--offset 126"):
        load_dms_table(path, wt=PAB1_WT)
    frame = load_dms_table(path, wt=PAB1_WT, offset=126)
    assert len(frame) == len(pab1_rows) and frame.attrs["notation"] == "nn4dms"


def test_proteingym_style_csv_and_parquet(tmp_path, pab1_rows):
    reference = load_dms_table(_write(tmp_path, "a.tsv", pab1_rows), wt=PAB1_WT, offset=126)
    mutants = [":".join(f"{t[0]}{int(t[1:-1]) - 125}{t[-1]}" for t in v.split(",")) for v in pab1_rows["variant"]]
    gym = pd.DataFrame({"mutant": mutants, "mutated_sequence": reference[MUTATED_SEQUENCE],
                        "DMS_score": pab1_rows["score"]})
    for name in ("gym.csv", "gym.parquet"):
        frame = load_dms_table(_write(tmp_path, name, gym), wt=PAB1_WT)
        assert frame.attrs["notation"] == "proteingym" and frame.attrs["offset"] == 1
        assert frame[MUTATED_SEQUENCE].tolist() == reference[MUTATED_SEQUENCE].tolist()
        assert frame[POSITIONS].tolist() == reference[POSITIONS].tolist()
        assert frame[SCORE].tolist() == pab1_rows["score"].tolist()
    gym.loc[3, "mutated_sequence"] = PAB1_WT
    with pytest.raises(InputError, match=r"gym.csv, row 3 \(line 5\): mutated_sequence disagrees"):
        load_dms_table(_write(tmp_path, "gym.csv", gym), wt=PAB1_WT)


def test_sequence_only_table_derives_mutants(tmp_path, pab1_rows):
    reference = load_dms_table(_write(tmp_path, "a.tsv", pab1_rows), wt=PAB1_WT, offset=126)
    seqs = pd.DataFrame({"mutated_sequence": reference[MUTATED_SEQUENCE], "score": pab1_rows["score"]})
    frame = load_dms_table(_write(tmp_path, "seqs.csv", seqs), wt=PAB1_WT)
    expected = [v.replace(",", ":") for v in pab1_rows["variant"]]
    assert frame[MUTANT].tolist() == [":".join(f"{t[0]}{int(t[1:-1]) - 125}{t[-1]}" for t in v.split(":"))
                                      for v in expected]
    assert frame[NUM_MUTATIONS].tolist() == pab1_rows["num_mutations"].tolist()
    seqs.loc[2, "mutated_sequence"] = PAB1_WT[:-1]
    with pytest.raises(InputError, match=r"row 2 \(line 4\): mutated_sequence has length 74"):
        load_dms_table(_write(tmp_path, "seqs.csv", seqs), wt=PAB1_WT)
    seqs.loc[2, "mutated_sequence"] = "GN-" + PAB1_WT[3:]
    with pytest.raises(InputError, match=r"row 2 \(line 4\): mutated_sequence has an invalid residue '-' at position 3"):
        load_dms_table(_write(tmp_path, "seqs.csv", seqs), wt=PAB1_WT)


def test_wild_type_from_fasta_or_literal(tmp_path):
    fasta = tmp_path / "pab1.fasta"
    fasta.write_text(f">PABP_YEAST/126-200\n{PAB1_WT[:40]}\n{PAB1_WT[40:]}\n")
    assert read_wild_type(fasta) == PAB1_WT == read_wild_type(PAB1_WT)
    fasta.write_text(f">a\n{PAB1_WT}\n>b\n{PAB1_WT}\n")
    with pytest.raises(InputError, match="exactly one record, found 2"):
        read_wild_type(fasta)
    with pytest.raises(InputError, match="neither an existing FASTA file nor a protein sequence"):
        read_wild_type(str(tmp_path / "missing.fasta"))
    plain = tmp_path / "wt.txt"  # a text file holding just the sequence, wrapped
    plain.write_text(f"{PAB1_WT[:30]}\n{PAB1_WT[30:]}\n")
    assert read_wild_type(plain) == PAB1_WT
    plain.write_text(f"{PAB1_WT[:30]}\n>oops\n")
    with pytest.raises(InputError, match="wt.txt: wild type: "):
        read_wild_type(plain)


@pytest.mark.parametrize("bad, message", [
    ("A1P", "mutant 'A1P': wild-type letter 'A' does not match the wild type, which has 'G' there"),
    ("G1A:P76A", "mutant 'P76A': position beyond the 75-residue wild type"),
    ("G1A:N2U", "mutant 'N2U': unknown mutant residue letter 'U'"),
    ("G1A:N2", "mutant 'N2': malformed"),
    ("G1A:G1C", "mutant 'G1A:G1C': the same position is substituted twice"),
])
def test_bad_rows_name_file_row_and_token(tmp_path, bad, message):
    table = pd.DataFrame({"mutant": ["G1A", "N2D:I3P", bad, "F4L"], "score": [0.1, 0.2, 0.3, 0.4]})
    path = _write(tmp_path, "lib.csv", table)
    with pytest.raises(InputError, match=rf"lib.csv, row 2 \(line 4\): {message}"):
        load_dms_table(path, wt=PAB1_WT)


def test_empty_table_missing_columns_and_bad_scores(tmp_path):
    with pytest.raises(InputError, match="has no rows"):
        load_dms_table(_write(tmp_path, "empty.csv", pd.DataFrame({"mutant": [], "score": []})), wt=PAB1_WT)
    table = pd.DataFrame({"mutant": ["G1A", "N2D"], "fitness_value": [0.1, 0.2]})
    path = _write(tmp_path, "t.csv", table)
    with pytest.raises(InputError, match="no score column .*--score-column"):
        load_dms_table(path, wt=PAB1_WT)
    with pytest.raises(InputError, match="no score column 'DMS_score'"):
        load_dms_table(path, wt=PAB1_WT, score_column="DMS_score")
    assert load_dms_table(path, wt=PAB1_WT, score_column="fitness_value")[SCORE].tolist() == [0.1, 0.2]
    library = load_dms_table(path, wt=PAB1_WT, require_score=False)
    assert SCORE not in library.columns and len(library) == 2
    path = _write(tmp_path, "t.csv", pd.DataFrame({"mutant": ["G1A", "N2D"], "score": ["0.1", "high"]}))
    with pytest.raises(InputError, match=r"row 1 \(line 3\): score column 'score' holds 'high'"):
        load_dms_table(path, wt=PAB1_WT)
    path = _write(tmp_path, "t.csv", pd.DataFrame({"name": ["a"], "score": [1.0]}))
    with pytest.raises(InputError, match="no mutant column"):
        load_dms_table(path, wt=PAB1_WT)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_dms_table(tmp_path / "absent.csv", wt=PAB1_WT)
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(InputError, match="unknown table format"):
        load_dms_table(tmp_path / "t.xlsx", wt=PAB1_WT)
    with pytest.raises(InputError, match="give the wild-type sequence"):
        load_dms_table(tmp_path / "t.xlsx")


@pytest.mark.parametrize("layout,sequence_column,score_column", [("mavenn", "x", "y"), ("flip", "sequence", "target")])
def test_sequence_column_under_another_name(tmp_path, pab1_rows, layout, sequence_column, score_column):
    """MAVE-NN tables carry full sequences in ``x`` (scores in ``y``), FLIP in ``sequence`` (``target``)."""
    reference = load_dms_table(_write(tmp_path, "a.tsv", pab1_rows), wt=PAB1_WT, offset=126)
    table = pd.DataFrame({sequence_column: reference[MUTATED_SEQUENCE], score_column: pab1_rows["score"],
                          "set": "train"})
    path = _write(tmp_path, f"{layout}.csv", table)
    frame = load_dms_table(path, wt=PAB1_WT, sequence_column=sequence_column, score_column=score_column)
    assert frame[MUTATED_SEQUENCE].tolist() == reference[MUTATED_SEQUENCE].tolist()
    assert frame[POSITIONS].tolist() == reference[POSITIONS].tolist()
    assert frame[SCORE].tolist() == pab1_rows["score"].tolist()
    with pytest.raises(InputError) as err:  # not found by default: the column has to be named
        load_dms_table(path, wt=PAB1_WT, score_column=score_column)
    assert "--sequence-column" in str(err.value)
    with pytest.raises(InputError) as err:
        load_dms_table(path, wt=PAB1_WT, sequence_column="seq", score_column=score_column)
    message = str(err.value)
    assert message == f"{path}: no sequence column 'seq' (columns: {sequence_column}, {score_column}, set)"

    table.loc[3, sequence_column] = PAB1_WT + "A"
    with pytest.raises(InputError) as err:
        load_dms_table(_write(tmp_path, "bad.csv", table), wt=PAB1_WT, sequence_column=sequence_column,
                       score_column=score_column)
    assert f"bad.csv, row 3 (line 5): {sequence_column} has length 76 but the wild type has 75" in str(err.value)
    assert "\n" not in str(err.value)
    table.loc[3, sequence_column] = "8" + PAB1_WT[1:]
    with pytest.raises(InputError, match=rf"row 3 \(line 5\): {sequence_column} has an invalid residue '8' at "
                                         "position 1"):
        load_dms_table(_write(tmp_path, "bad.csv", table), wt=PAB1_WT, sequence_column=sequence_column,
                       score_column=score_column)


def test_skip_invalid_drops_bad_rows_keeping_row_numbers(tmp_path, pab1_rows):
    rows = pab1_rows.iloc[:30].copy()
    bad = {2: ("variant", "A126G", "wild-type letter 'A' does not match"), 5: ("variant", "G12x6A", "malformed"),
           9: ("score", float("nan"), "not a finite number"), 11: ("score", float("inf"), "not a finite number"),
           20: ("variant", "G126B", "unknown mutant residue letter 'B'")}
    for row, (column, value, _) in bad.items():
        rows[column] = rows[column].astype(object)
        rows.loc[row, column] = value
    path = _write(tmp_path, "t.tsv", rows)
    with pytest.raises(InputError, match=r"t.tsv, row 2 \(line 4\): mutant 'A126G'.*--skip-invalid"):
        load_dms_table(path, wt=PAB1_WT, offset=126)
    frame = load_dms_table(path, wt=PAB1_WT, offset=126, skip_invalid=True)
    kept = [r for r in range(30) if r not in bad]
    assert frame.index.tolist() == kept and frame.attrs["rows"] == 30
    assert frame[MUTANT].tolist() == rows["variant"].iloc[kept].tolist()
    rejects = frame.attrs["rejects"]
    assert [r.row for r in rejects] == sorted(bad)
    for reject in rejects:
        column, value, reason = bad[reject.row]
        assert reason in reject.reason
        assert reject.variant == str(rows["variant"].iloc[reject.row])
    only_bad = rows.iloc[[2, 5]]
    with pytest.raises(InputError, match="none of its 2 rows is valid"):
        load_dms_table(_write(tmp_path, "b.tsv", only_bad), wt=PAB1_WT, offset=126, skip_invalid=True)
