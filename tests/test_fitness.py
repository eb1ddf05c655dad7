"""The DMS fitness head: a tiny model trained on 1,022 real Pab1 variants, its run directory and checkpoint,
transfer from a Pfam classifier checkpoint, and the train-dms command's errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from click.testing import CliRunner

from protlc.cli import cli
from protlc.errors import CheckpointError, ConfigError, InputError
from protlc.model import get_preset
from protlc.model.checkpoint import load_checkpoint
from protlc.model.fitness import FitnessModel, build_fitness_model
from protlc.training.fitness_run import DMS_DEFAULTS, train_dms

PAB1_WT = "GNIFIKNLHPDIDNKALYDTFSVFGDILSSKIATDENGKSKGFGFVHFEEEGAAKEAIDALNGMLLNGQEIYVAP"
PAB1_OFFSET = 126
@pytest.fixture(scope="module")
def pab1_subset(nn4dms):
    """1,022 real Pab1 variants (every 40th row of nn4dms' pab1.tsv) in nn4dms notation."""
    return nn4dms / "pab1" / "pab1.tsv"


@pytest.fixture(scope="module")
def run_dir(pab1_subset, tmp_path_factory, dms_tiny_config):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train_dms(pab1_subset, out, PAB1_WT, dms_tiny_config(), offset=PAB1_OFFSET, seed=3)
    return out


def test_run_directory_and_metrics(run_dir):
    metrics = json.loads((run_dir / "final_metrics.json").read_text())
    for key in ("test/pearson", "test/spearman", "tune/pearson", "tune/mse", "ridge/test/pearson",
                "ridge/test/spearman", "epochs", "time/fit_seconds"):
        assert key in metrics, key
    assert math.isfinite(metrics["test/pearson"]) and -1.0 <= metrics["test/pearson"] <= 1.0
    assert metrics["ridge/test/pearson"] > 0.5  # ridge on ~830 real Pab1 variants is informative (measured 0.81)
    assert metrics["epochs"] == 2
    assert metrics["split/train"] + metrics["split/tune"] + metrics["split/test"] == 1022
    for name in ("config.yaml", "metrics.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt",
                 "plots/test_scatter.png", "plots/tune_curve.png", "test_predictions.csv"):
        assert (run_dir / name).is_file(), name
    log = pd.read_csv(run_dir / "metrics.csv")
    assert log["tune/pearson"].notna().sum() == 2


def test_checkpoint_loads_safely_and_reproduces_test_predictions(run_dir, pab1_subset):
    raw = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    hp = raw["hyper_parameters"]
    assert hp["wild_type"] == PAB1_WT and hp["notation"] == "nn4dms" and hp["offset"] == PAB1_OFFSET
    assert raw["protlc"]["task"] == "fitness"
    loaded = load_checkpoint(run_dir / "checkpoints" / "best.ckpt", task="fitness")
    assert isinstance(loaded.model, FitnessModel) and loaded.model.family is None
    test = pd.read_csv(run_dir / "test_predictions.csv")
    table = pd.read_csv(pab1_subset, sep="\t")
    from protlc.dms.mutations import apply_many
    from protlc.data.loading import EncodedSequences
    from protlc.inference import model_outputs

    sequences, errors = apply_many(PAB1_WT, table["variant"].iloc[test["row"]].tolist(), "nn4dms", PAB1_OFFSET)
    assert not errors
    again = model_outputs(loaded.model, EncodedSequences(sequences), 128, "cpu")
    np.testing.assert_allclose(again, test["predicted"].to_numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(test["measured"], table["score"].iloc[test["row"]].to_numpy())


def test_same_seed_gives_identical_predictions(run_dir, pab1_subset, tmp_path, dms_tiny_config):
    train_dms(pab1_subset, tmp_path / "again", PAB1_WT, dms_tiny_config(), offset=PAB1_OFFSET, seed=3)
    first = pd.read_csv(run_dir / "test_predictions.csv")
    second = pd.read_csv(tmp_path / "again" / "test_predictions.csv")
    np.testing.assert_array_equal(first["predicted"].to_numpy(), second["predicted"].to_numpy())


def test_transfer_keeps_the_frozen_family_classifier(pab1_subset, tmp_path, dms_tiny_config, classifier_checkpoint):
    pfam = classifier_checkpoint(tmp_path / "pfam.ckpt")
    out = tmp_path / "transfer"
    metrics = train_dms(pab1_subset, out, PAB1_WT, dms_tiny_config("trainer.max_epochs=1"), offset=PAB1_OFFSET,
                        init=tmp_path / "pfam.ckpt")
    assert metrics["transfer"] is True
    loaded = load_checkpoint(out / "checkpoints" / "last.ckpt", task="fitness")
    assert [lab["family_id"] for lab in loaded.labels] == ["FAM0", "FAM1", "FAM2"]
    assert loaded.hparams["model_config"] == pfam["hyper_parameters"]["model_config"]
    family_state = loaded.model.family.state_dict()
    for key, value in pfam["state_dict"].items():  # frozen: identical to the Pfam checkpoint after training
        torch.testing.assert_close(family_state[key[len("model."):]], value)
    encoder_changed = any(not torch.equal(v, pfam["state_dict"][f"model.encoder.{k}"])
                          for k, v in loaded.model.encoder.state_dict().items() if k.endswith("weight"))
    assert encoder_changed  # the encoder itself was fine-tuned


def test_init_refuses_a_fitness_checkpoint(run_dir, pab1_subset, tmp_path, dms_tiny_config):
    with pytest.raises(CheckpointError, match="family classifier"):
        train_dms(pab1_subset, tmp_path / "x", PAB1_WT, dms_tiny_config(), offset=PAB1_OFFSET,
                  init=run_dir / "checkpoints" / "best.ckpt")


def test_build_fitness_model_refuses_classifier_hparams(tmp_path, classifier_checkpoint):
    ckpt = classifier_checkpoint(tmp_path / "pfam.ckpt")
    with pytest.raises(CheckpointError, match="no fitness regression head"):
        build_fitness_model(ckpt["hyper_parameters"], ckpt["state_dict"])


def test_positional_head_refuses_other_lengths_and_pooled_head_takes_any():
    config = get_preset("tiny").to_dict()
    tokens = torch.randint(1, 21, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.bool)
    with pytest.raises(ValueError, match="takes sequences of 10 residues"):
        FitnessModel(config, {"kind": "positional"}, length=10)(tokens, mask)
    pooled = FitnessModel(config, {"kind": "pooled"}, length=10).eval()
    assert pooled(tokens, mask).shape == (2,)
    with pytest.raises(ConfigError, match="head.kind"):
        FitnessModel(config, {"kind": "attention"}, length=10)


@pytest.mark.parametrize("split,extra", [("mutational", "split.mutational_k=1"), ("positional", None),
                                         ("positional", "split.tune_mode=extrapolate")])
def test_other_splits_run(pab1_subset, tmp_path, split, extra, dms_tiny_config):
    """(The default random split is the one of ``run_dir``.)"""
    config = dms_tiny_config("trainer.max_epochs=1", *([extra] if extra else []))
    metrics = train_dms(pab1_subset, tmp_path / split, PAB1_WT, config, offset=PAB1_OFFSET, split=split)
    assert metrics["split/test"] > 0 and math.isfinite(metrics["ridge/test/pearson"])
    assert metrics["split/tune_mode"] == ("extrapolate" if extra == "split.tune_mode=extrapolate" else "random")


def test_config_file_matches_the_defaults(embedded_dir):
    import yaml

    path = embedded_dir.parent / "configs" / "dms.yaml"
    assert yaml.safe_load(path.read_text()) == DMS_DEFAULTS


def _invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


@pytest.mark.parametrize(("override", "message"), [
    ("head.dropout=1.5", "config: head.dropout must be a number in [0, 1), got 1.5"),
    ("optim.plateau_factor=2", "config: optim.plateau_factor must be a number in (0, 1], got 2"),
    ("early_stopping.patience=x", "config: early_stopping.patience must be an integer >= 0, got 'x'"),
    ("trainer.devices=abc", "trainer settings (accelerator 'cpu', devices 'abc'"),
    ("split.tune_mode=outward", "config: split.tune_mode must be one of random, extrapolate, got 'outward'"),
    ("split.tune_mode=extrapolate", ("split.tune_mode=extrapolate applies to the mutational and positional "
                                     "splits only, not split kind 'random'")),
])
def test_cli_bad_config_values_fail_in_one_line(pab1_subset, tmp_path, override, message):
    run = tmp_path / "run"
    result = _invoke("train-dms", pab1_subset, "--wt", PAB1_WT, "--offset", PAB1_OFFSET, "--out", run,
                     "--set", override)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("protlc: error: ") and message in lines[0], result.output
    assert not run.exists()


def test_cli_trains_and_reports(pab1_subset, tmp_path, dms_tiny_config):
    result = _invoke("train-dms", pab1_subset, "--wt", PAB1_WT, "--offset", PAB1_OFFSET, "--out", tmp_path / "cli",
                     "--max-epochs", 1, *sum((["--set", o] for o in dms_tiny_config.overrides if "max_epochs" not in o), []))
    assert result.exit_code == 0, result.output
    assert '"test/pearson"' in result.output and '"ridge/test/pearson"' in result.output


@pytest.mark.parametrize("case", ["non_empty_out", "missing_table", "bad_offset", "no_score_column",
                                  "both_splits", "bad_split_dir", "bad_monitor"])
def test_cli_errors_are_one_line(pab1_subset, tmp_path, case):
    out = tmp_path / "out"
    args = [pab1_subset, "--wt", PAB1_WT, "--offset", PAB1_OFFSET, "--out", out]
    expected = {"non_empty_out": "not empty", "missing_table": "no such file", "bad_offset": "--offset 126",
                "no_score_column": "no score column 'fitness_x'", "both_splits": "not both",
                "bad_split_dir": "missing split file", "bad_monitor": "early_stopping.monitor"}[case]
    if case == "non_empty_out":
        out.mkdir()
        (out / "something").write_text("x")
    elif case == "missing_table":
        args[0] = tmp_path / "absent.tsv"
    elif case == "bad_offset":
        args[4] = 0
    elif case == "no_score_column":
        args += ["--score-column", "fitness_x"]
    elif case == "both_splits":
        args += ["--splits", tmp_path, "--split", "random"]
    elif case == "bad_split_dir":
        args += ["--splits", tmp_path]
    elif case == "bad_monitor":
        args += ["--set", "early_stopping.monitor=tune/r2"]
    result = _invoke("train-dms", *args)
    assert result.exit_code != 0
    assert expected in result.output, result.output
    assert "Traceback" not in result.output
    if case not in ("non_empty_out",):
        assert not (out / "final_metrics.json").exists()


def test_errors_have_the_right_types(pab1_subset, tmp_path, dms_tiny_config):
    with pytest.raises(InputError):
        train_dms(pab1_subset, tmp_path / "a", PAB1_WT, dms_tiny_config(), offset=0)
    with pytest.raises(ConfigError, match="split.kind"):
        train_dms(pab1_subset, tmp_path / "b", PAB1_WT, dms_tiny_config(), offset=PAB1_OFFSET, split="sideways")
    with pytest.raises(ConfigError, match="mutational and positional splits only, not split kind 'published'"):
        train_dms(pab1_subset, tmp_path / "c", PAB1_WT, dms_tiny_config("split.tune_mode=extrapolate"),
                  offset=PAB1_OFFSET, splits_dir=tmp_path)
    assert not (tmp_path / "c").exists()


def test_additive_run_starts_from_ridge_with_types_and_reports_both(pab1_subset, tmp_path, dms_tiny_config):
    """train-dms with head.additive=ridge: the baseline stays the plain ridge, the start (reported as
    additive_start/...) is ridge with substitution types, both on the run's own split."""
    from protlc.dms.ridge import ridge_baseline
    from protlc.dms.splits import random_split
    from protlc.dms.tables import load_dms_table

    config = dms_tiny_config("head.additive=ridge", "trainer.max_epochs=1")
    metrics = train_dms(pab1_subset, tmp_path / "run", PAB1_WT, config, offset=PAB1_OFFSET, seed=3)
    frame = load_dms_table(pab1_subset, PAB1_WT, offset=PAB1_OFFSET)
    split = random_split(len(frame), seed=0)  # the config's split seed, independent of the training seed
    sequences, scores = frame["mutated_sequence"].to_numpy(), frame["score"].to_numpy()
    plain = ridge_baseline(PAB1_WT, sequences, scores, split)
    typed = ridge_baseline(PAB1_WT, sequences, scores, split, substitution_types=True)
    assert metrics["ridge/test/pearson"] == pytest.approx(plain.test_pearson)
    assert metrics["additive_start/test/pearson"] == pytest.approx(typed.test_pearson)
    assert metrics["additive_start/num_features"] > metrics["ridge/num_features"]
    assert metrics["time/additive_start_seconds"] > 0


@pytest.mark.parametrize("substitution_types", [False, True])
def test_additive_start_reproduces_the_ridge_fit_exactly(pab1_subset, substitution_types, dms_tiny_config):
    """The additive term of head.additive=ridge starts at exactly the ridge predictions (real Pab1 variants),
    also with the substitution-type columns it uses in train-dms."""
    from protlc.data.loading import EncodedSequences
    from protlc.dms.ridge import ridge_baseline
    from protlc.dms.splits import random_split
    from protlc.dms.tables import load_dms_table
    from protlc.training.fitness_run import _build_module, ridge_effects

    frame = load_dms_table(pab1_subset, PAB1_WT, offset=PAB1_OFFSET)
    split = random_split(len(frame), seed=1)
    sequences, scores = frame["mutated_sequence"].to_numpy(), frame["score"].to_numpy()
    ridge = ridge_baseline(PAB1_WT, sequences, scores, split, substitution_types=substitution_types)
    config = dms_tiny_config("head.additive=ridge")
    config["dms"].update(notation="nn4dms", offset=PAB1_OFFSET)
    module = _build_module(config, PAB1_WT, scores[split.train])
    module.start_from_additive(*ridge_effects(ridge.model, ridge.alpha))
    additive = module.model.additive.eval()
    test = EncodedSequences(sequences[split.test].tolist())[np.arange(len(split.test))]
    with torch.no_grad():
        predicted = module.model.score_mean + module.model.score_std * additive(test["tokens"], test["mask"])
    np.testing.assert_allclose(predicted.numpy(), ridge.test_predictions, atol=1e-4)
    with pytest.raises(ConfigError, match="head.additive"):
        FitnessModel(get_preset("tiny").to_dict(), {"kind": "pooled", "additive": "ridge"}, length=75)


def test_resume_reaches_the_uninterrupted_result(pab1_subset, tmp_path, dms_tiny_config, crash_at_epoch):
    # dropout draws from the global RNG, which Lightning's checkpoint does not carry: without dropout a
    # resumed run must land exactly where the uninterrupted one does.
    config = dms_tiny_config("trainer.max_epochs=3", "head.dropout=0.0", "early_stopping.patience=10")
    first = train_dms(pab1_subset, tmp_path / "a", PAB1_WT, config, offset=PAB1_OFFSET, seed=3)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_dms(pab1_subset, tmp_path / "b", PAB1_WT, config, offset=PAB1_OFFSET, seed=3,
                  extra_callbacks=[crash_at_epoch(2)])
    assert (tmp_path / "b" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "b" / "final_metrics.json").exists()
    resumed = train_dms(pab1_subset, tmp_path / "b", PAB1_WT, config, offset=PAB1_OFFSET, seed=3, resume=True)
    for key in ("test/pearson", "test/spearman", "tune/mse", "epochs"):
        assert resumed[key] == first[key], key
    logs = [pd.read_csv(tmp_path / d / "metrics.csv") for d in "ab"]  # earlier epochs kept on resume
    assert logs[1]["epoch"].dropna().tolist() == logs[0]["epoch"].dropna().tolist()
    assert logs[1]["step"].tolist() == logs[0]["step"].tolist()
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "a" / "test_predictions.csv")["predicted"],
                                  pd.read_csv(tmp_path / "b" / "test_predictions.csv")["predicted"])


def _flip_table(pab1_subset, tmp_path):
    """The Pab1 subset as FLIP lays it out (full sequences in ``sequence``, fitness in ``target``), with five
    bad rows: a sequence too long, a letter outside the alphabet, a missing and an infinite fitness."""
    from protlc.dms.tables import MUTATED_SEQUENCE, load_dms_table

    frame = load_dms_table(pab1_subset, PAB1_WT, offset=PAB1_OFFSET)
    table = pd.DataFrame({"sequence": frame[MUTATED_SEQUENCE], "target": frame["score"].astype(object)})
    bad = {3: "sequence has length 76", 40: "invalid residue '1'", 100: "not a finite number",
           500: "not a finite number", 700: "sequence has length 74"}
    table.loc[3, "sequence"] = PAB1_WT + "A"
    table.loc[40, "sequence"] = "1" + PAB1_WT[1:]
    table.loc[100, "target"] = None
    table.loc[500, "target"] = "inf"
    table.loc[700, "sequence"] = PAB1_WT[1:]
    table.to_csv(tmp_path / "flip.csv", index=False)
    return tmp_path / "flip.csv", bad


def test_cli_sequence_column_and_skip_invalid(pab1_subset, nn4dms, tmp_path, dms_tiny_config):
    table, bad = _flip_table(pab1_subset, tmp_path)
    common = ["--wt", PAB1_WT, "--sequence-column", "sequence", "--score-column", "target",
              "--splits", nn4dms / "pab1" / "splits_main", "--max-epochs", 1,
              *sum((["--set", o] for o in dms_tiny_config.overrides if "max_epochs" not in o), [])]
    failed = _invoke("train-dms", table, "--out", tmp_path / "strict", *common)
    assert failed.exit_code == 2 and "Traceback" not in failed.output
    assert failed.output.strip().count("\n") == 0
    assert "flip.csv, row 3 (line 5): sequence has length 76" in failed.output and "--skip-invalid" in failed.output

    result = _invoke("train-dms", table, "--out", tmp_path / "run", "--skip-invalid", *common)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("skipped 5 invalid rows") == 1
    rejects = pd.read_csv(tmp_path / "run" / "rejects.csv")
    assert list(rejects.columns) == ["row", "variant", "token", "reason"]
    assert rejects["row"].tolist() == sorted(bad)
    for row, reason in zip(rejects["row"], rejects["reason"]):
        assert bad[row] in reason
    metrics = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
    assert metrics["rejected_rows"] == 5
    published = sum(len((nn4dms / "pab1" / "splits_main" / f).read_text().split()) for f in
                    ("train.txt", "tune.txt", "stest.txt"))
    assert metrics["split/train"] + metrics["split/tune"] + metrics["split/test"] == published - 5
    test_rows = pd.read_csv(tmp_path / "run" / "test_predictions.csv")["row"]
    stest = set(np.loadtxt(nn4dms / "pab1" / "splits_main" / "stest.txt", dtype=int).tolist())
    assert set(test_rows) == stest - set(bad)  # input row numbers, rejected rows left out
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "sequence_column: sequence" in config and "skip_invalid: true" in config


# ------------------------------------------------------------------------------------ head.additive: auto

AUTO = ("head.additive=auto", "head.dropout=0.0", "early_stopping.patience=10")


@pytest.fixture(scope="module")
def auto_run(pab1_subset, tmp_path_factory, dms_tiny_config):
    """The default head.additive=auto: the three candidate heads trained (2 epochs each) on 1,022 real Pab1 variants."""
    out = tmp_path_factory.mktemp("auto") / "run"
    metrics = train_dms(pab1_subset, out, PAB1_WT, dms_tiny_config(*AUTO), offset=PAB1_OFFSET, seed=3)
    return out, metrics


def test_auto_is_the_default():
    assert DMS_DEFAULTS["head"]["additive"] == "auto"


def test_auto_trains_every_candidate_and_keeps_the_best_on_tune(auto_run):
    out, metrics = auto_run
    assert metrics == json.loads((out / "final_metrics.json").read_text())
    assert metrics["choice/candidates"] == ["none", "ridge", "epistasis", "ensemble"]
    assert metrics["choice/monitor"] == "tune/mse"
    records = {}
    for name in ("none", "ridge", "epistasis"):
        records[name] = json.loads((out / "candidates" / name / "candidate_metrics.json").read_text())
        assert not [k for k in records[name] if k.startswith("test/")]  # candidates are never evaluated on test
        assert (out / "candidates" / name / "checkpoints" / "best.ckpt").is_file()
        assert records[name]["epochs"] == 2
        for key in ("tune/mse", "tune/pearson", "tune/spearman", "train/pearson"):
            assert metrics[f"choice/{name}/{key}"] == records[name][key]
    assert not [k for k in metrics if k.startswith("choice/") and "/test/" in k]
    records["ensemble"] = {key[len("choice/ensemble/"):]: value for key, value in metrics.items()
                           if key.startswith("choice/ensemble/")}
    members = records["ensemble"]["members"]
    assert len(members) >= 2 and set(members) <= {"none", "ridge", "epistasis"} and "epochs" not in records["ensemble"]
    chosen = metrics["choice/chosen"]
    assert records[chosen]["tune/mse"] == min(r["tune/mse"] for r in records.values())
    # the run's model is the chosen candidate: its checkpoint, and its tune metrics re-measured by the final step
    if chosen != "ensemble":
        for name in ("best.ckpt", "last.ckpt"):
            assert (out / "checkpoints" / name).read_bytes() == (out / "candidates" / chosen / "checkpoints" / name).read_bytes()
    for key in ("tune/mse", "tune/pearson") + (("train/mse",) if chosen != "ensemble" else ()):
        # an ensemble's record is its blend in float64, the model's the weighted sum in float32
        assert metrics[key] == pytest.approx(records[chosen][key], abs=1e-9 if chosen != "ensemble" else 1e-6), key
    assert ("additive_start/test/pearson" in metrics) == (chosen not in ("none", "ensemble"))
    assert metrics["time/fit_seconds"] == pytest.approx(sum(r["time/fit_seconds"] for r in records.values()))
    assert metrics["ridge/test/pearson"] > 0.5 and metrics["epochs"] == (None if chosen == "ensemble" else 2)
    assert "additive: auto" in (out / "config.yaml").read_text()  # --resume reads it back
    assert "additive: ridge" in (out / "candidates" / "ridge" / "config.yaml").read_text()
    assert "additive: epistasis" in (out / "candidates" / "epistasis" / "config.yaml").read_text()


def test_auto_test_metrics_are_the_chosen_models_and_score_reproduces_them(auto_run, pab1_subset, tmp_path):
    from protlc.dms.scoring import score_library

    out, metrics = auto_run
    test = pd.read_csv(out / "test_predictions.csv")
    from protlc.metrics import correlation

    assert metrics["test/pearson"] == pytest.approx(correlation(test["predicted"], test["measured"]))
    library = tmp_path / "library.csv"
    table = pd.read_csv(pab1_subset, sep="\t")
    table.iloc[test["row"]][["variant"]].to_csv(library, index=False)
    score_library(out / "checkpoints" / "best.ckpt", library, tmp_path / "scored.csv", notation="nn4dms",
                  offset=PAB1_OFFSET, mutant_column="variant")
    scored = pd.read_csv(tmp_path / "scored.csv")
    np.testing.assert_allclose(scored["fitness"], test["predicted"], rtol=1e-5, atol=1e-5)
    chosen = load_checkpoint(out / "checkpoints" / "best.ckpt", task="fitness")
    if metrics["choice/chosen"] == "ensemble":
        assert [h["additive"] for h in chosen.hparams["ensemble_heads"]] == metrics["choice/ensemble/members"]
        assert chosen.hparams["ensemble_weights"] == metrics["choice/ensemble/weights"]
    else:
        assert chosen.hparams["head"]["additive"] == metrics["choice/chosen"]


def test_ensemble_checkpoint_scores_the_blend_of_its_members_and_its_tune_record_is_that_blend(
        auto_run, pab1_subset, tmp_path, classifier_checkpoint):
    """The ensemble candidate: its checkpoint (tensors and plain values only) scores every variant at the mean,
    or with weights the weighted sum, of what its member checkpoints score, and the weights and tune MSE that
    auto recorded are the non-negative least-squares blend of the members' tune predictions."""
    from scipy.optimize import nnls

    from protlc.dms.scoring import score_library
    from protlc.model.fitness import FitnessEnsemble
    from protlc.training.fitness_choice import write_ensemble_checkpoint

    out, metrics = auto_run
    members = [out / "candidates" / name / "checkpoints" / "best.ckpt" for name in ("none", "ridge", "epistasis")]
    write_ensemble_checkpoint(members, tmp_path / "ensemble.ckpt")
    write_ensemble_checkpoint(members, tmp_path / "weighted.ckpt", [0.5, 0.2, 0.3])
    torch.load(tmp_path / "weighted.ckpt", weights_only=True)
    loaded = load_checkpoint(tmp_path / "weighted.ckpt", task="fitness")
    assert isinstance(loaded.model, FitnessEnsemble) and len(loaded.model.members) == 3
    assert loaded.model.weights == [0.5, 0.2, 0.3] and load_checkpoint(tmp_path / "ensemble.ckpt").model.weights is None
    import yaml

    from protlc.training.fitness_data import prepare_data

    table = pd.read_csv(pab1_subset, sep="\t")
    tune_rows = prepare_data(yaml.safe_load((out / "config.yaml").read_text()), pab1_subset, PAB1_WT).parts["tune"]
    table.iloc[tune_rows][["variant"]].to_csv(tmp_path / "tune.csv", index=False)
    scored = []
    for i, checkpoint in enumerate([*members, tmp_path / "ensemble.ckpt", tmp_path / "weighted.ckpt"]):
        score_library(checkpoint, tmp_path / "tune.csv", tmp_path / f"s{i}.csv", notation="nn4dms",
                      offset=PAB1_OFFSET, mutant_column="variant")
        scored.append(pd.read_csv(tmp_path / f"s{i}.csv")["fitness"].to_numpy())
    np.testing.assert_allclose(scored[3], np.mean(scored[:3], axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scored[4], 0.5 * scored[0] + 0.2 * scored[1] + 0.3 * scored[2], rtol=1e-5, atol=1e-5)
    assert not np.allclose(scored[0], scored[1], atol=1e-3)  # the members differ: the blend is not one of them
    measured = table.iloc[tune_rows]["score"].to_numpy()
    weights, _ = nnls(np.stack(scored[:3], axis=1).astype(np.float64), measured.astype(np.float64))
    kept = [i for i in range(3) if weights[i] > 0]
    assert metrics["choice/ensemble/members"] == [("none", "ridge", "epistasis")[i] for i in kept]
    np.testing.assert_allclose(metrics["choice/ensemble/weights"], weights[kept], rtol=1e-3, atol=1e-4)
    blend_mse = np.mean((np.stack(scored[:3], axis=1)[:, kept] @ weights[kept] - measured) ** 2)
    assert metrics["choice/ensemble/tune/mse"] == pytest.approx(blend_mse, rel=1e-4)
    assert blend_mse <= min(np.mean((np.mean([scored[i] for i in names], axis=0) - measured) ** 2)
                            for names in ((0, 1), (0, 2), (1, 2), (0, 1, 2)))  # no plain mean does better on tune
    with pytest.raises(CheckpointError, match="fitness checkpoint"):
        classifier_checkpoint(tmp_path / "pfam.ckpt")
        write_ensemble_checkpoint([members[0], tmp_path / "pfam.ckpt"], tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()


def test_explicit_none_trains_one_head_the_same_as_the_none_candidate(auto_run, pab1_subset, tmp_path, dms_tiny_config):
    out, auto = auto_run
    config = dms_tiny_config(*AUTO, "head.additive=none")
    metrics = train_dms(pab1_subset, tmp_path / "none", PAB1_WT, config, offset=PAB1_OFFSET, seed=3)
    assert not (tmp_path / "none" / "candidates").exists()
    assert not [k for k in metrics if k.startswith("choice/")] and "additive_start/test/pearson" not in metrics
    for key in ("tune/mse", "tune/pearson", "train/mse"):  # same seed, same start: the same training
        assert metrics[key] == pytest.approx(auto[f"choice/none/{key}"], abs=1e-12), key


def test_auto_without_the_ensemble_chooses_among_the_trained_heads(auto_run, pab1_subset, tmp_path, dms_tiny_config):
    """head.ensemble=false: the same three trainings, the choice among them only (the seed run picks the ensemble)."""
    out, with_ensemble = auto_run
    assert with_ensemble["choice/chosen"] == "ensemble"
    metrics = train_dms(pab1_subset, tmp_path / "run", PAB1_WT, dms_tiny_config(*AUTO, "head.ensemble=false"),
                        offset=PAB1_OFFSET, seed=3)
    assert metrics["choice/candidates"] == ["none", "ridge", "epistasis"]
    assert not [k for k in metrics if k.startswith("choice/ensemble")]
    best = min(("none", "ridge", "epistasis"), key=lambda name: metrics[f"choice/{name}/tune/mse"])
    assert metrics["choice/chosen"] == best
    for name in ("none", "ridge", "epistasis"):  # the same trainings as with the ensemble
        assert metrics[f"choice/{name}/tune/mse"] == pytest.approx(with_ensemble[f"choice/{name}/tune/mse"], abs=1e-12)
    with pytest.raises(ConfigError, match="head.ensemble"):
        train_dms(pab1_subset, tmp_path / "bad", PAB1_WT, dms_tiny_config(*AUTO, "head.ensemble=3"), offset=PAB1_OFFSET)
    assert not (tmp_path / "bad").exists()


def test_choose_uses_the_monitor_and_keeps_the_first_of_a_tie():
    from protlc.training.fitness_choice import candidate_names, choose

    assert candidate_names({"head": {"kind": "positional"}}) == ("none", "ridge", "epistasis")
    assert candidate_names({"head": {"kind": "pooled"}}) == ("none",)  # the pooled head cannot hold the table
    records = {"none": {"tune/mse": 1.0, "tune/pearson": 0.5}, "ridge": {"tune/mse": 0.9, "tune/pearson": 0.4}}
    assert choose(records, "tune/mse", "min") == "ridge"
    assert choose(records, "tune/pearson", "max") == "none"
    assert choose({"none": {"tune/mse": 1.0}, "ridge": {"tune/mse": 1.0}}, "tune/mse", "min") == "none"
    assert choose({"none": {"tune/pearson": None}, "ridge": {"tune/pearson": 0.1}}, "tune/pearson", "max") == "ridge"


class _CrashInRidgeCandidate(pl.Callback):
    """A kill at the start of epoch 1 of the candidate with the ridge-started additive term."""

    def on_train_epoch_start(self, trainer, pl_module):
        model = pl_module.model
        if model.additive is not None and model.output is None and trainer.current_epoch == 1:
            raise RuntimeError("simulated kill")


@pytest.mark.slow
def test_auto_resume_keeps_finished_candidates_and_reaches_the_uninterrupted_result(auto_run, pab1_subset, tmp_path,
                                                                                   dms_tiny_config):
    out, first = auto_run
    run = tmp_path / "run"
    config = dms_tiny_config(*AUTO)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_dms(pab1_subset, run, PAB1_WT, config, offset=PAB1_OFFSET, seed=3, extra_callbacks=[_CrashInRidgeCandidate()])
    assert (run / "candidates" / "none" / "candidate_metrics.json").is_file()
    assert not (run / "candidates" / "ridge" / "candidate_metrics.json").exists()
    assert not (run / "final_metrics.json").exists()
    with pytest.raises(ConfigError, match="not empty; use --resume"):
        train_dms(pab1_subset, run, PAB1_WT, config, offset=PAB1_OFFSET, seed=3)
    none_before = (run / "candidates" / "none" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    resumed = train_dms(pab1_subset, run, PAB1_WT, config, offset=PAB1_OFFSET, seed=3, resume=True)
    assert (run / "candidates" / "none" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == none_before  # kept
    for key in ("test/pearson", "tune/mse", "choice/chosen", "choice/ridge/tune/mse", "choice/none/tune/mse"):
        assert resumed[key] == first[key], key
    with pytest.raises(ConfigError, match="finished run"):
        train_dms(pab1_subset, run, PAB1_WT, config, offset=PAB1_OFFSET, seed=3, resume=True)


def test_resume_may_switch_the_ensemble_off_and_keeps_the_trained_candidates(auto_run, pab1_subset, tmp_path,
                                                                             dms_tiny_config):
    import shutil

    out, first = auto_run
    run = tmp_path / "auto"
    shutil.copytree(out, run)
    (run / "final_metrics.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in (run / "candidates").rglob("*.ckpt")}
    resumed = train_dms(pab1_subset, run, PAB1_WT, dms_tiny_config(*AUTO, "head.ensemble=false"), offset=PAB1_OFFSET,
                        seed=3, resume=True)
    assert kept and all(p.stat().st_mtime_ns == t for p, t in kept.items())  # nothing retrained
    assert not any(k.startswith("choice/ensemble/") for k in resumed) and resumed["choice/chosen"] != "ensemble"
    for name in ("none", "ridge", "epistasis"):
        assert resumed[f"choice/{name}/tune/mse"] == first[f"choice/{name}/tune/mse"]
    assert "ensemble: false" in (run / "config.yaml").read_text()


def test_resume_refuses_to_switch_between_one_head_and_auto(run_dir, auto_run, pab1_subset, tmp_path, dms_tiny_config):
    import shutil

    one = tmp_path / "one"
    shutil.copytree(run_dir, one)
    (one / "final_metrics.json").unlink()
    with pytest.raises(ConfigError, match="holds a run of one head"):
        train_dms(pab1_subset, one, PAB1_WT, dms_tiny_config(*AUTO), offset=PAB1_OFFSET, seed=3, resume=True)
    auto = tmp_path / "auto"
    shutil.copytree(auto_run[0], auto)
    (auto / "final_metrics.json").unlink()
    with pytest.raises(ConfigError, match="started with head.additive=auto"):
        train_dms(pab1_subset, auto, PAB1_WT, dms_tiny_config(*AUTO, "head.additive=ridge"), offset=PAB1_OFFSET,
                  seed=3, resume=True)
    with pytest.raises(ConfigError, match="head.additive must be one of auto, none, ridge, epistasis"):
        train_dms(pab1_subset, tmp_path / "bad", PAB1_WT, dms_tiny_config("head.additive=maybe"), offset=PAB1_OFFSET)
