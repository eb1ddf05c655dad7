"""``protlc predict`` and ``protlc audit`` through the CLI, on a tiny run trained on real families."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from protlc import columns as col
from protlc.cli import cli
from protlc.data.store import read_split
from protlc.predict import predict
from protlc.training.run import train



@pytest.fixture(scope="module")
def run_dir(noisy_dataset, tmp_path_factory, tiny_config) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    train(noisy_dataset, out, tiny_config(**{"loss.name": "proselflc_at", "trainer.max_epochs": 3}))
    return out


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_predict_fasta_to_csv_and_parquet_keeps_order(run_dir, noisy_dataset, tmp_path):
    test = pd.read_parquet(noisy_dataset / "test.parquet").head(7)
    fasta = tmp_path / "q.fasta"
    fasta.write_text("".join(f">{n} some description\n{s[:40]}\n{s[40:]}\n" for n, s in zip(test.sequence_name, test.sequence)))
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    for suffix in ("csv", "parquet"):
        out = tmp_path / f"pred.{suffix}"
        result = invoke("predict", ckpt, fasta, "--out", out, "--top-k", 2)
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
        assert frame["sequence_name"].tolist() == test["sequence_name"].tolist()
        assert {"predicted_family", "probability", "confidence", "is_unknown", "top2_family", "top2_probability"} <= set(frame.columns)
        assert (frame["top1_probability"] >= frame["top2_probability"]).all()
        assert (frame["predicted_family"] == frame["top1_family"]).all()
        threshold = json.loads((run_dir / "calibration.json").read_text())["unknown_threshold"]
        assert (frame["is_unknown"] == (frame["probability"] < threshold)).all()
    # an explicit threshold of 1 flags everything
    result = invoke("predict", ckpt, fasta, "--out", tmp_path / "all.csv", "--unknown-threshold", 1.0)
    assert pd.read_csv(tmp_path / "all.csv")["is_unknown"].all()


@pytest.mark.parametrize("content, message", [
    (">a\nMKV1LA\n", "record 'a': invalid residue '1' at position 4"),
    (">a\nMKV*LA\n", "record 'a': invalid residue '*' at position 4"),
    (">a\nacgtacgtac\n", "record 'a': invalid residue 'a' at position 1"),
    ("", "file is empty"),
])
def test_predict_bad_input_is_one_line_and_writes_nothing(run_dir, tmp_path, content, message):
    bad = tmp_path / "bad.fasta"
    bad.write_text(content)
    out = tmp_path / "out.csv"
    result = invoke("predict", run_dir / "checkpoints" / "last.ckpt", bad, "--out", out)
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".out.csv*"))


@pytest.mark.parametrize("command", ["predict", "audit"])
@pytest.mark.parametrize("option, message", [
    (("--device", "banana"), "--device 'banana': not a device name"),
    (("--device", "cuda:7"), "--device cuda:7: 8 CUDA device(s) needed"),
    (("--device", "meta"), "--device meta: protlc runs on cpu, cuda or mps"),
    (("--batch-size", "0"), "--batch-size must be >= 1, got 0"),
    (("--tokens-per-batch", "-1"), "--tokens-per-batch must be >= 0"),
])
def test_bad_device_or_batch_size_is_one_line(run_dir, noisy_dataset, tmp_path, command, option, message):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    inputs = [noisy_dataset / "test.parquet"] if command == "predict" else []
    out = tmp_path / "out.csv"
    result = invoke(command, ckpt, *inputs, "--out", out, *option)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("protlc: error: ") and message in result.output and result.output.count("\n") == 1
    assert not out.exists()


def test_predict_refuses_missing_or_foreign_checkpoints(tmp_path):
    q = tmp_path / "q.fasta"
    q.write_text(">a\nMKVLA\n")
    result = invoke("predict", tmp_path / "none.ckpt", q, "--out", tmp_path / "o.csv")
    assert result.exit_code == 3 and "does not exist" in result.output
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    result = invoke("predict", junk, q, "--out", tmp_path / "o.csv")
    assert result.exit_code == 3 and "not a readable checkpoint" in result.output


def test_audit_lists_disputed_labels_with_precision_and_recall(run_dir, noisy_dataset, tmp_path):
    out = tmp_path / "audit.csv"
    result = invoke("audit", run_dir / "checkpoints" / "last.ckpt", "--out", out)
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and "recall" in result.output
    table = pd.read_csv(out)
    assert list(table.columns[:5]) == ["sequence_name", "observed_family", "suggested_family", "confidence", "epsilon"]
    assert (table["observed_family"] != table["suggested_family"]).all()
    assert table["confidence"].is_monotonic_decreasing
    train_df = pd.read_parquet(noisy_dataset / "train.parquet")
    flagged_noisy = train_df.iloc[table["row"]]["is_noisy"].to_numpy()
    assert (flagged_noisy == table["is_noisy"].to_numpy()).all()
    # the audit finds noise: a flagged label is wrong more often than a label picked at random (0.37 vs
    # 0.30 for this 3-epoch tiny model on 156 domains)
    noise_rate, precision = train_df["is_noisy"].mean(), flagged_noisy.mean()
    assert len(table) > 0 and precision > noise_rate, (precision, noise_rate)


def test_token_batches_and_precision_give_the_same_predictions_and_audit(run_dir, noisy_dataset, tmp_path):  # noqa: F811
    """--tokens-per-batch (width-class batches) and --precision 32 / bf16-mixed (float32 on the CPU) change
    nothing; the output keeps the input order."""
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    test = noisy_dataset / "test.parquet"
    frames = []
    for options in ((), ("--tokens-per-batch", 1024, "--precision", "bf16-mixed"), ("--tokens-per-batch", 0)):
        out = tmp_path / f"p{len(frames)}.csv"
        assert invoke("predict", ckpt, test, "--out", out, *options).exit_code == 0
        frames.append(pd.read_csv(out))
    for frame in frames[1:]:
        assert frame["sequence_name"].tolist() == frames[0]["sequence_name"].tolist()
        assert frame["predicted_family"].tolist() == frames[0]["predicted_family"].tolist()
        assert frame["probability"].to_numpy() == pytest.approx(frames[0]["probability"].to_numpy(), abs=1e-5)
    audits = []
    for options in ((), ("--tokens-per-batch", 2048)):
        out = tmp_path / f"a{len(audits)}.csv"
        assert invoke("audit", ckpt, "--out", out, *options).exit_code == 0
        audits.append(pd.read_csv(out))
    assert audits[0]["row"].tolist() == audits[1]["row"].tolist()


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    import pathlib

    import torch

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "protlc": {"task": "classify"}, "x": pathlib.PurePosixPath("x")}, evil)
    q = tmp_path / "q.fasta"
    q.write_text(">a\nMKVLA\n")
    result = invoke("predict", evil, q, "--out", tmp_path / "o.csv")
    assert result.exit_code == 3 and "refused to load" in result.output


# ----------------------------------------------------------------------------------------------- ensembles


@pytest.fixture
def two_members(tmp_path, classifier_checkpoint, noisy_dataset):
    """Two different untrained classifiers over the 6 families of ``noisy_dataset`` (its dataset recorded)."""
    from protlc.data.store import read_labels

    paths = []
    for i in range(2):
        path = tmp_path / f"m{i}.ckpt"
        ckpt = classifier_checkpoint(path, num_classes=6)
        ckpt["hyper_parameters"]["labels"] = read_labels(noisy_dataset)
        ckpt["hyper_parameters"]["config"]["dataset"] = str(noisy_dataset)
        generator = torch.Generator().manual_seed(i)
        for name, value in ckpt["state_dict"].items():
            if value.is_floating_point() and "running" not in name:
                value.add_(0.1 * torch.randn(value.shape, generator=generator))
        torch.save(ckpt, path)
        paths.append(path)
    return paths


def _probabilities(frame: pd.DataFrame, families: list[str]) -> np.ndarray:
    """The full (N, C) probabilities from a prediction table written with --top-k C."""
    out = np.zeros((len(frame), len(families)))
    for k in range(1, len(families) + 1):
        for j, family in enumerate(families):
            hit = (frame[f"top{k}_family"] == family).to_numpy()
            out[hit, j] = frame.loc[hit, f"top{k}_probability"].to_numpy()
    return out


def test_an_ensemble_predicts_the_mean_probability_with_a_threshold_calibrated_for_it(two_members, noisy_dataset,
                                                                                        tmp_path):
    from protlc.data.store import read_labels

    families = [e["family_id"] for e in read_labels(noisy_dataset)]
    dev = read_split(noisy_dataset, "dev")
    dev[[col.SEQUENCE_NAME, col.SEQUENCE]].to_csv(tmp_path / "dev.tsv", sep="\t", index=False)
    singles = []
    for i, member in enumerate(two_members):
        predict(member, tmp_path / "dev.tsv", tmp_path / f"single{i}.csv", top_k=6, unknown_threshold=0.0)
        singles.append(_probabilities(pd.read_csv(tmp_path / f"single{i}.csv"), families))
    assert np.abs(singles[0] - singles[1]).max() > 0.05  # the members differ
    summary = predict(two_members[0], tmp_path / "dev.tsv", tmp_path / "ens.csv", top_k=6, ensemble=[two_members[1]])
    ens = pd.read_csv(tmp_path / "ens.csv")
    mean = (singles[0] + singles[1]) / 2
    np.testing.assert_allclose(_probabilities(ens, families), mean, atol=1e-6)
    assert summary.models == 2 and (ens["predicted_family"] == np.array(families)[mean.argmax(1)]).all()
    # the threshold is the ensemble's own: the 1st percentile of its max probability on the dev split
    assert summary.threshold == pytest.approx(np.quantile(mean.max(1), 0.01), abs=1e-6)
    assert ens["is_unknown"].sum() == (mean.max(1) < summary.threshold).sum() >= 1


def test_ensemble_inputs_that_cannot_work_are_refused_in_one_line(two_members, noisy_dataset, tmp_path,
                                                                  classifier_checkpoint):
    from click.testing import CliRunner

    from protlc.cli import cli

    read_split(noisy_dataset, "test")[[col.SEQUENCE]].to_csv(tmp_path / "q.csv", index=False)
    classifier_checkpoint(tmp_path / "other.ckpt", num_classes=6)  # families FAM0..FAM5
    runner = CliRunner()
    base = ["predict", str(two_members[0]), str(tmp_path / "q.csv"), "--out", str(tmp_path / "o.csv")]
    ok = runner.invoke(cli, [*base, "--ensemble", str(two_members[1])])
    assert ok.exit_code == 0 and "mean of 2 models" in ok.output, ok.output
    (tmp_path / "o.csv").unlink()
    for extra, message in ((["--ensemble", str(tmp_path / "other.ckpt")], "its families differ"),
                           (["--ensemble", str(two_members[1]), "--unknown-score", "energy"], "no energy score")):
        bad = runner.invoke(cli, [*base, *extra])
        assert bad.exit_code != 0 and message in bad.output and "Traceback" not in bad.output, bad.output
        assert not (tmp_path / "o.csv").exists()
    moved = torch.load(two_members[1], weights_only=True)
    moved["hyper_parameters"]["config"]["dataset"] = str(tmp_path / "gone")
    torch.save(moved, tmp_path / "moved.ckpt")
    bad = runner.invoke(cli, ["predict", str(tmp_path / "moved.ckpt"), str(tmp_path / "q.csv"), "--out",
                              str(tmp_path / "o.csv"), "--ensemble", str(two_members[0])])
    assert bad.exit_code != 0 and "pass --unknown-threshold" in bad.output
    given = runner.invoke(cli, ["predict", str(tmp_path / "moved.ckpt"), str(tmp_path / "q.csv"), "--out",
                                str(tmp_path / "o.csv"), "--ensemble", str(two_members[0]), "--unknown-threshold", "0.5"])
    assert given.exit_code == 0 and "< 0.500, mean of 2 models" in given.output, given.output
