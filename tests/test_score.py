"""Streaming fitness scoring with a tiny model trained on real Pab1 variants: round trips, order, dedupe,
generated libraries, rejects, every bad-input case, and the refusal of a classifier checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from protlc.cli import cli
from protlc.data.loading import EncodedSequences
from protlc.dms.mutations import apply_many
from protlc.dms.scoring import FAMILY_PROBABILITY, FITNESS, PREDICTED_FAMILY, rejects_path, score_library
from protlc.errors import CheckpointError, ConfigError, InputError
from protlc.model.checkpoint import load_checkpoint
from protlc.training.fitness_run import train_dms
from protlc.inference import model_outputs

PAB1_WT = "GNIFIKNLHPDIDNKALYDTFSVFGDILSSKIATDENGKSKGFGFVHFEEEGAAKEAIDALNGMLLNGQEIYVAP"  # nn4dms wt_sequences.tsv
PAB1_OFFSET = 126


@pytest.fixture(scope="module")
def pab1_table(nn4dms):
    """1,022 real Pab1 variants (every 40th row of nn4dms' pab1.tsv)."""
    return pd.read_csv(nn4dms / "pab1" / "pab1.tsv", sep="\t")


@pytest.fixture(scope="module")
def pab1_rows(pab1_table):
    """300 real Pab1 variants (nn4dms notation, offset 126), a seeded sample in random order: the table
    lists its 32 single mutants first, and scoring decides the notation on the first chunk."""
    return pab1_table.sample(300, random_state=0)


@pytest.fixture(scope="module")
def checkpoint(pab1_table, pab1_rows, tmp_path_factory, dms_tiny_config):
    """A tiny fitness model trained for one epoch on the 722 other real Pab1 variants."""
    root = tmp_path_factory.mktemp("score")
    pab1_table.drop(index=pab1_rows.index).to_csv(root / "train.tsv", sep="\t", index=False)
    train_dms(root / "train.tsv", root / "run", PAB1_WT, dms_tiny_config("trainer.max_epochs=1"), offset=PAB1_OFFSET)
    return root / "run" / "checkpoints" / "last.ckpt"


def _expected_fitness(checkpoint, mutants, notation="nn4dms", offset=PAB1_OFFSET) -> np.ndarray:
    sequences, errors = apply_many(PAB1_WT, mutants, notation, offset)
    assert not errors
    model = load_checkpoint(checkpoint, task="fitness").model
    return model_outputs(model, EncodedSequences(sequences), 64, "cpu")


def _library(pab1_rows, tmp_path, suffix=".csv", duplicate=True) -> tuple:
    rows = pab1_rows.copy()
    if duplicate:  # the same variants again, interleaved: dedupe must not reorder or drop them
        rows = pd.concat([rows, rows.iloc[::7]]).sample(frac=1.0, random_state=1).reset_index(drop=True)
    path = tmp_path / f"library{suffix}"
    if suffix == ".parquet":
        rows.to_parquet(path, index=False)
    else:
        rows.to_csv(path, sep="," if suffix == ".csv" else "\t", index=False)
    return path, rows


@pytest.mark.parametrize("suffix,out_suffix", [(".csv", ".csv"), (".parquet", ".parquet"), (".tsv", ".parquet")])
def test_round_trip_keeps_rows_order_and_values(checkpoint, pab1_rows, tmp_path, suffix, out_suffix):
    library, rows = _library(pab1_rows, tmp_path, suffix)
    out = tmp_path / f"scores{out_suffix}"
    summary = score_library(checkpoint, library, out, chunk_size=64, batch_size=32)
    scored = pd.read_parquet(out) if out_suffix == ".parquet" else pd.read_csv(out)
    assert list(scored.columns) == ["variant", "num_mutations", "score", FITNESS]  # no index column
    assert scored["variant"].tolist() == rows["variant"].tolist()
    np.testing.assert_allclose(scored["score"].astype(float), rows["score"], rtol=1e-12)
    np.testing.assert_allclose(scored[FITNESS], _expected_fitness(checkpoint, rows["variant"].tolist()),
                               rtol=1e-5, atol=1e-5)
    assert summary.rows == summary.scored == len(rows) and summary.rejected == 0
    assert summary.unique_sequences < len(rows)  # duplicates collapsed within chunks


def test_duplicates_get_the_same_fitness_and_chunking_changes_nothing(checkpoint, pab1_rows, tmp_path):
    library, rows = _library(pab1_rows, tmp_path)
    score_library(checkpoint, library, tmp_path / "a.csv", chunk_size=50)
    score_library(checkpoint, library, tmp_path / "b.csv", chunk_size=100_000)
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    np.testing.assert_allclose(a[FITNESS], b[FITNESS], rtol=1e-6)
    per_variant = a.groupby("variant")[FITNESS].nunique()
    assert (per_variant == 1).all() and (a["variant"].value_counts() > 1).any()


def test_token_batches_change_nothing(checkpoint, pab1_rows, tmp_path):
    """--tokens-per-batch: batches of budget // 75 variants (a positional head's sequences are never padded)."""
    library, _ = _library(pab1_rows, tmp_path)
    score_library(checkpoint, library, tmp_path / "a.csv")
    score_library(checkpoint, library, tmp_path / "b.csv", tokens_per_batch=1000, precision="bf16-mixed")
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert a["variant"].tolist() == b["variant"].tolist()
    np.testing.assert_allclose(a[FITNESS], b[FITNESS], rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="--tokens-per-batch must be >= 0"):
        score_library(checkpoint, library, tmp_path / "c.csv", tokens_per_batch=-5)
    with pytest.raises(ConfigError, match="--precision must be one of auto, 32, bf16-mixed"):
        score_library(checkpoint, library, tmp_path / "c.csv", precision="fp8")
    assert not (tmp_path / "c.csv").exists()


def test_saturation_writes_19_times_75_rows(checkpoint, tmp_path):
    summary = score_library(checkpoint, None, tmp_path / "sat.parquet", saturation=True)
    scored = pd.read_parquet(tmp_path / "sat.parquet")
    assert len(scored) == 19 * 75 == summary.scored
    assert scored["mutant"].is_unique
    assert scored["mutant"].iloc[0] == "G1A"  # ProteinGym numbering (1-based), whatever the training table used
    np.testing.assert_allclose(scored[FITNESS].iloc[:5], _expected_fitness(checkpoint, ["G126A", "G126C", "G126D",
                                                                                       "G126E", "G126F"]), atol=1e-5)


def test_combinatorial_library(checkpoint, tmp_path):
    score_library(checkpoint, None, tmp_path / "combo.csv", combinatorial="127:NAG,130:IKL", wt=PAB1_WT, offset=126)
    scored = pd.read_csv(tmp_path / "combo.csv")
    assert len(scored) == 9 and scored["mutant"].iloc[0] == "WT"


def test_full_sequence_library_and_fasta_wild_type(checkpoint, pab1_rows, tmp_path):
    mutants = pab1_rows["variant"].tolist()[:20]
    sequences, _ = apply_many(PAB1_WT, mutants, "nn4dms", PAB1_OFFSET)
    pd.DataFrame({"name": mutants, "mutated_sequence": sequences}).to_csv(tmp_path / "seqs.csv", index=False)
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(f">pab1\n{PAB1_WT[:40]}\n{PAB1_WT[40:]}\n")
    score_library(checkpoint, tmp_path / "seqs.csv", tmp_path / "out.csv", wt=fasta)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")[FITNESS], _expected_fitness(checkpoint, mutants),
                               atol=1e-5)


def test_skip_invalid_writes_rejects_and_keeps_valid_rows_in_order(checkpoint, pab1_rows, tmp_path):
    rows = pab1_rows.iloc[:40].copy().reset_index(drop=True)
    bad = {3: "A126G", 10: "G999A", 17: "G126B", 25: "G12x6A"}  # mismatch, beyond, unknown letter, malformed
    for row, token in bad.items():
        rows.loc[row, "variant"] = token
    rows.to_csv(tmp_path / "lib.csv", index=False)
    out = tmp_path / "scores.csv"
    summary = score_library(checkpoint, tmp_path / "lib.csv", out, skip_invalid=True, chunk_size=16)
    scored = pd.read_csv(out)
    valid = rows.drop(index=list(bad))
    assert scored["variant"].tolist() == valid["variant"].tolist()
    rejects = pd.read_csv(rejects_path(out))
    assert rejects_path(out).name == "scores.rejects.csv"
    assert rejects["row"].tolist() == sorted(bad) and rejects["token"].tolist() == [bad[r] for r in sorted(bad)]
    assert list(rejects.columns) == ["row", "variant", "token", "reason"]
    assert rejects["variant"].tolist() == rows["variant"].iloc[sorted(bad)].tolist()
    assert rejects["reason"].str.len().min() > 10
    assert (summary.scored, summary.rejected) == (36, 4)


@pytest.mark.parametrize("token,message", [
    ("A126G", "wild-type letter 'A' does not match the wild type, which has 'G' there"),
    ("G999A", "position beyond the 75-residue wild type"),
    ("G126B", "unknown mutant residue letter 'B'"),
    ("G12x6A", "malformed substitution"),
])
def test_bad_rows_fail_with_file_row_and_token(checkpoint, pab1_rows, tmp_path, token, message):
    rows = pab1_rows.iloc[:10].copy().reset_index(drop=True)
    rows.loc[6, "variant"] = token
    rows.to_csv(tmp_path / "lib.csv", index=False)
    with pytest.raises(InputError) as err:
        score_library(checkpoint, tmp_path / "lib.csv", tmp_path / "out.csv")
    text = str(err.value)
    assert "lib.csv, row 6 (line 8)" in text and repr(token) in text and message in text and "\n" not in text
    assert not (tmp_path / "out.csv").exists()  # nothing half-written


@pytest.mark.parametrize("content,message", [
    ("variant,score\n", "has no rows"),
    ("", "file is empty"),
    ("name,score\nx,1\n", "no mutant column"),
    ("mutated_sequence\nGNIF\n", "sequence has 4 residues but the model takes 75"),
])
def test_bad_libraries(checkpoint, tmp_path, content, message):
    (tmp_path / "lib.csv").write_text(content)
    with pytest.raises(InputError, match=message):
        score_library(checkpoint, tmp_path / "lib.csv", tmp_path / "out.csv")


def test_bad_options(checkpoint, pab1_rows, tmp_path):
    library, _ = _library(pab1_rows, tmp_path, duplicate=False)
    with pytest.raises(ConfigError, match="exactly one library"):
        score_library(checkpoint, library, tmp_path / "o.csv", saturation=True)
    with pytest.raises(ConfigError, match="positional head takes 75"):
        score_library(checkpoint, library, tmp_path / "o.csv", wt=PAB1_WT + "A")
    with pytest.raises(ConfigError, match="already has a column 'score'"):
        score_library(checkpoint, library, tmp_path / "o.csv", output_column="score")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match=rf"--device cuda: {gpus + 1} CUDA device\(s\) needed, {gpus} visible"):
        score_library(checkpoint, library, tmp_path / "o.csv", device="cuda", devices=gpus + 1)
    with pytest.raises(ConfigError, match="--output-column must not be empty"):
        score_library(checkpoint, library, tmp_path / "o.csv", output_column=" ")
    with pytest.raises(ConfigError, match="--device 'gpu0': not a device name"):
        score_library(checkpoint, library, tmp_path / "o.csv", device="gpu0")
    assert not (tmp_path / "o.csv").exists()


def test_classifier_checkpoint_is_refused(pab1_rows, tmp_path, classifier_checkpoint):
    classifier_checkpoint(tmp_path / "pfam.ckpt")
    library, _ = _library(pab1_rows, tmp_path, duplicate=False)
    with pytest.raises(CheckpointError, match="needs a fitness model"):
        score_library(tmp_path / "pfam.ckpt", library, tmp_path / "o.csv", wt=PAB1_WT)


def test_transfer_checkpoint_adds_family_columns(pab1_rows, tmp_path, dms_tiny_config, classifier_checkpoint):
    classifier_checkpoint(tmp_path / "pfam.ckpt")
    table = tmp_path / "train.tsv"
    pab1_rows.to_csv(table, sep="\t", index=False)
    train_dms(table, tmp_path / "run", PAB1_WT, dms_tiny_config("trainer.max_epochs=1"), offset=PAB1_OFFSET,
              init=tmp_path / "pfam.ckpt")
    score_library(tmp_path / "run" / "checkpoints" / "last.ckpt", table, tmp_path / "o.csv")
    scored = pd.read_csv(tmp_path / "o.csv")
    assert set(scored[PREDICTED_FAMILY]) <= {"FAM0", "FAM1", "FAM2"}
    assert scored[FAMILY_PROBABILITY].between(1 / 3, 1.0).all()


def test_cli_one_line_errors_and_success(checkpoint, pab1_rows, tmp_path):
    library, rows = _library(pab1_rows, tmp_path, duplicate=False)
    ok = CliRunner().invoke(cli, ["score", str(checkpoint), str(library), "--out", str(tmp_path / "o.csv"),
                                  "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert f"{len(rows)} variants scored" in ok.output
    bad = CliRunner().invoke(cli, ["score", str(checkpoint), str(library), "--out", str(tmp_path / "o.csv"),
                                   "--no-progress", "--offset", "1"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert bad.output.count("\n") == 1 and "--offset 126" in bad.output


def test_worker_processes_give_the_same_output(checkpoint, pab1_rows, tmp_path):
    library, _ = _library(pab1_rows, tmp_path)
    score_library(checkpoint, library, tmp_path / "one.csv", chunk_size=40)
    score_library(checkpoint, library, tmp_path / "two.csv", chunk_size=40, devices=2)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "two.csv"))


# ---------------------------------------------------------------------------------------------- numbering


def _numbered(rows: pd.DataFrame) -> dict[str, list[str]]:
    """The same real Pab1 variants written in the three notations (nn4dms: 0-based + wt_offset 126)."""
    from protlc.dms.mutations import format_mutant, parse_mutant

    subs = [parse_mutant(v, "nn4dms", PAB1_OFFSET) for v in rows["variant"]]
    return {"nn4dms": rows["variant"].tolist(),
            "proteingym": [format_mutant(s, "proteingym", 1) for s in subs],
            "esm": [format_mutant(s, "esm", 1) for s in subs]}


def test_one_variant_in_three_notations_scores_identically(checkpoint, pab1_rows, tmp_path):
    rows = pab1_rows[~pab1_rows["variant"].str.lower().isin(["_wt", "wt"])].head(60)
    scores = {}
    for notation, mutants in _numbered(rows).items():
        library = tmp_path / f"{notation}.csv"
        pd.DataFrame({"mutant": mutants}).to_csv(library, index=False)
        score_library(checkpoint, library, tmp_path / f"{notation}.out.csv", notation=notation)
        scores[notation] = pd.read_csv(tmp_path / f"{notation}.out.csv")[FITNESS].to_numpy()
    np.testing.assert_allclose(scores["proteingym"], scores["nn4dms"], rtol=0, atol=0)
    np.testing.assert_allclose(scores["esm"], scores["nn4dms"], rtol=0, atol=0)
    np.testing.assert_allclose(scores["nn4dms"], _expected_fitness(checkpoint, rows["variant"].tolist()), atol=1e-5)


def test_a_library_numbered_off_by_one_is_refused_with_the_offset_that_fits(checkpoint, pab1_rows, tmp_path):
    rows = pab1_rows[~pab1_rows["variant"].str.lower().isin(["_wt", "wt"])].head(200)
    mutants = _numbered(rows)["proteingym"]
    shifted = [":".join(f"{t[0]}{int(t[1:-1]) - 1}{t[-1]}" for t in m.split(":")) for m in mutants]  # 0-based
    library = tmp_path / "shifted.csv"
    pd.DataFrame({"mutant": shifted}).to_csv(library, index=False)
    for skip in (False, True):
        with pytest.raises(InputError, match=r"match with --offset 0.*Nothing was scored"):
            score_library(checkpoint, library, tmp_path / "o.csv", notation="proteingym", skip_invalid=skip)
        assert not (tmp_path / "o.csv").exists() and not rejects_path(tmp_path / "o.csv").exists()


def test_a_library_of_another_protein_is_refused(checkpoint, tmp_path):
    from protlc.dms.mutations import saturation

    domains = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "exthomfam_16fam.tsv", sep="\t")
    other = next(s for s in domains["sequence"] if len(s) >= 75 and set(s) <= set("ACDEFGHIKLMNPQRSTVWY"))
    library = tmp_path / "other.csv"
    pd.DataFrame({"mutant": saturation(other[:75])[::7]}).to_csv(library, index=False)
    result = CliRunner().invoke(cli, ["score", str(checkpoint), str(library), "--out", str(tmp_path / "o.csv"),
                                      "--skip-invalid"])
    assert result.exit_code != 0 and "another protein" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o.csv").exists()


def test_combinatorial_sites_check_their_wild_type_letters(checkpoint, tmp_path):
    ok = score_library(checkpoint, None, tmp_path / "c.csv", combinatorial=f"{PAB1_WT[1]}2:NAG")
    assert ok.scored == 3
    with pytest.raises(ConfigError, match="names wild-type letter"):
        score_library(checkpoint, None, tmp_path / "d.csv", combinatorial="W2:NAG" if PAB1_WT[1] != "W" else "A2:NAG")


def test_sequence_column_under_another_name(checkpoint, pab1_rows, tmp_path):
    """A FLIP-style library (full sequences in ``sequence``) scores exactly like its mutant strings; a bad
    sequence is a one-line error naming file and row, or a reject with --skip-invalid."""
    mutants = pab1_rows["variant"].tolist()[:30]
    sequences, _ = apply_many(PAB1_WT, mutants, "nn4dms", PAB1_OFFSET)
    table = pd.DataFrame({"sequence": sequences, "target": 0.0})
    table.to_csv(tmp_path / "flip.csv", index=False)
    with pytest.raises(InputError) as err:
        score_library(checkpoint, tmp_path / "flip.csv", tmp_path / "out.csv", sequence_column="seq")
    assert str(err.value) == f"{tmp_path / 'flip.csv'}: no sequence column 'seq' (columns: sequence, target)"
    score_library(checkpoint, tmp_path / "flip.csv", tmp_path / "out.csv", sequence_column="sequence")
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")[FITNESS], _expected_fitness(checkpoint, mutants),
                               rtol=1e-5, atol=1e-5)

    table.loc[4, "sequence"] = PAB1_WT[:-2]
    table.loc[9, "sequence"] = "-" + PAB1_WT[1:]
    table.to_csv(tmp_path / "flip.csv", index=False)
    with pytest.raises(InputError) as err:
        score_library(checkpoint, tmp_path / "flip.csv", tmp_path / "out.csv", sequence_column="sequence")
    assert "flip.csv, row 4 (line 6): sequence" in str(err.value) and "the model takes 75" in str(err.value)
    result = CliRunner().invoke(cli, ["score", str(checkpoint), str(tmp_path / "flip.csv"), "--out",
                                      str(tmp_path / "out.csv"), "--sequence-column", "sequence", "--skip-invalid",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "skipped 2 invalid rows" in result.stderr
    rejects = pd.read_csv(rejects_path(tmp_path / "out.csv"))
    assert rejects["row"].tolist() == [4, 9] and rejects["variant"].tolist() == table["sequence"].iloc[[4, 9]].tolist()
    assert len(pd.read_csv(tmp_path / "out.csv")) == 28


def test_fast_path_matches_the_plain_model_on_multi_mutants(checkpoint, tmp_path):
    """Random 1-6-substitution variants (the benchmark's kind of library), WT rows and repeats: the residue
    matrix, the dedupe and the look-up input convolution give the plain model's outputs."""
    rng = np.random.default_rng(7)
    mutants = []
    for _ in range(400):
        positions = rng.choice(len(PAB1_WT), rng.integers(1, 7), replace=False)
        mutants.append(":".join(f"{PAB1_WT[p]}{p + 1}{rng.choice(list('ACDEFGHIKLMNPQRSTVWY*'))}" for p in positions))
    mutants += ["WT", mutants[0], mutants[5]]
    pd.DataFrame({"mutant": mutants}).to_csv(tmp_path / "lib.csv", index=False)
    summary = score_library(checkpoint, tmp_path / "lib.csv", tmp_path / "out.csv", chunk_size=128, batch_size=50)
    assert summary.scored == len(mutants)
    scored = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(scored[FITNESS], _expected_fitness(checkpoint, mutants, "proteingym", 1),
                               rtol=1e-5, atol=1e-5)
    assert scored[FITNESS].iloc[-2] == scored[FITNESS].iloc[0] and scored[FITNESS].iloc[-1] == scored[FITNESS].iloc[5]


# ---------------------------------------------------------------------------------------------- --ensemble


@pytest.fixture(scope="module")
def other_seed_checkpoint(pab1_table, pab1_rows, tmp_path_factory, dms_tiny_config):
    """The ``checkpoint`` fixture's training with another seed."""
    root = tmp_path_factory.mktemp("score_seed1")
    pab1_table.drop(index=pab1_rows.index).to_csv(root / "train.tsv", sep="\t", index=False)
    train_dms(root / "train.tsv", root / "run", PAB1_WT, dms_tiny_config("trainer.max_epochs=1"), offset=PAB1_OFFSET,
              seed=1)
    return root / "run" / "checkpoints" / "last.ckpt"


def test_ensemble_scores_the_mean_of_the_checkpoints(checkpoint, other_seed_checkpoint, pab1_rows, tmp_path,
                                                     classifier_checkpoint):
    library, rows = _library(pab1_rows, tmp_path)
    single = [_expected_fitness(c, rows["variant"].tolist()) for c in (checkpoint, other_seed_checkpoint)]
    assert not np.allclose(single[0], single[1], atol=1e-3)  # two seeds, two models
    ok = CliRunner().invoke(cli, ["score", str(checkpoint), str(library), "--out", str(tmp_path / "e.csv"),
                                  "--ensemble", str(other_seed_checkpoint), "--no-progress"])
    assert ok.exit_code == 0, ok.output
    np.testing.assert_allclose(pd.read_csv(tmp_path / "e.csv")[FITNESS], np.mean(single, axis=0), rtol=1e-5, atol=1e-5)
    score_library(checkpoint, library, tmp_path / "w.csv", chunk_size=40, devices=2, ensemble=[other_seed_checkpoint])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "e.csv"), pd.read_csv(tmp_path / "w.csv"))
    # another protein's model, or a classifier, is refused before anything is written
    other = torch.load(other_seed_checkpoint, weights_only=True)
    other["hyper_parameters"]["wild_type"] = PAB1_WT[::-1]
    torch.save(other, tmp_path / "reversed.ckpt")
    with pytest.raises(ConfigError, match="another wild type"):
        score_library(checkpoint, library, tmp_path / "x.csv", ensemble=[tmp_path / "reversed.ckpt"])
    classifier_checkpoint(tmp_path / "pfam.ckpt")
    with pytest.raises(CheckpointError, match="family classifier"):
        score_library(checkpoint, library, tmp_path / "x.csv", ensemble=[tmp_path / "pfam.ckpt"])
    assert not (tmp_path / "x.csv").exists()
