"""Training end to end on tiny real data: run directory, checkpoints, resume, determinism, DDP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tqdm import tqdm

from protlc.errors import CheckpointError, ConfigError, TrainingInterrupted
from protlc.model.checkpoint import load_checkpoint
from protlc.training.config import load_config
from protlc.training.run import train

REPO = Path(__file__).resolve().parents[1]
TIMING_KEYS = ("time/", "gpu/")


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(TIMING_KEYS)}


def test_run_dir_holds_config_metrics_plots_and_safe_checkpoints(noisy_dataset, tmp_path, tiny_config):
    run = tmp_path / "run"
    started = time.perf_counter()
    metrics = train(noisy_dataset, run, tiny_config(**{"loss.name": "proselflc_at"}))
    wall = time.perf_counter() - started
    for name in ("config.yaml", "metrics.csv", "dynamics.csv", "final_metrics.json", "calibration.json",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt", "plots/learning_curves.png", "plots/dynamics.png"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "final_metrics.json").read_text())
    for key in ("train/accuracy", "test/accuracy", "test/confidence_entropy", "test/max_p", "test/ece"):
        assert 0.0 <= saved[key] <= 1.0 and saved[key] == metrics[key]
    assert saved["train/noisy_fraction"] == pytest.approx(0.3, abs=0.01)
    config = (run / "config.yaml").read_text()
    assert "temperature: 0.2" in config and "filters: 16" in config  # resolved, not just names
    dynamics = pd.read_csv(run / "dynamics.csv")
    assert list(dynamics.columns[2:]) == ["correct_fitting", "wrong_fitting", "class_correction",
                                          "entropy_clean", "entropy_noisy", "generalisation"]
    assert "train/epsilon" in pd.read_csv(run / "metrics.csv").columns
    # where the time went: the phases add up to the wall time of the run
    phases = ["time/startup", "time/training", "time/validation", "time/dynamics", "time/final_evaluation",
              "time/plots"]
    assert all(saved[k] >= 0 for k in phases + ["time/fit", "time/total"])
    assert saved["time/validation"] > 0 and saved["time/dynamics"] > 0 and saved["time/plots"] > 0
    assert saved["time/fit"] == pytest.approx(saved["time/training"] + saved["time/validation"] + saved["time/dynamics"])
    assert sum(saved[k] for k in phases) == pytest.approx(saved["time/total"], rel=0.02, abs=0.2)
    assert saved["time/total"] == pytest.approx(wall, rel=0.05, abs=0.5)

    raw = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # plain tensors + primitives only
    assert raw["protlc"]["task"] == "classify"
    loaded = load_checkpoint(run / "checkpoints" / "last.ckpt", task="classify")
    assert [lab["family_id"] for lab in loaded.labels] == [lab["family_id"] for lab in json.loads(
        (noisy_dataset / "labels.json").read_text())]
    with pytest.raises(CheckpointError, match="fitness model"):
        load_checkpoint(run / "checkpoints" / "last.ckpt", task="fitness")


def test_same_seed_same_numbers_and_resume_reaches_the_uninterrupted_result(noisy_dataset, tmp_path, tiny_config, crash_at_epoch):
    config = tiny_config(**{"trainer.max_epochs": 3})
    first = comparable(train(noisy_dataset, tmp_path / "a", config))
    again = comparable(train(noisy_dataset, tmp_path / "b", config))
    assert first == again

    bars_before = set(tqdm._instances)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(noisy_dataset, tmp_path / "c", config, extra_callbacks=[crash_at_epoch(2)])
    assert set(tqdm._instances) <= bars_before  # closed, or tqdm prints them again when Python exits
    assert (tmp_path / "c" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "c" / "final_metrics.json").exists()
    # what a kill -9 between an atomic write and its rename leaves: swept when the run resumes
    partials = [tmp_path / "c" / sub / f".{name}.k9x_1.tmp" for sub, name in
                (("", "metrics.csv"), ("checkpoints", "last.ckpt"), ("plots", "dynamics.png"))]
    for partial in partials:
        partial.parent.mkdir(exist_ok=True)
        partial.write_bytes(b"half")
    resumed = comparable(train(noisy_dataset, tmp_path / "c", config, resume=True))
    assert resumed == first
    assert not [p for p in partials if p.exists()]
    logs = [pd.read_csv(tmp_path / d / "metrics.csv") for d in "ac"]  # earlier epochs kept on resume
    assert logs[1]["step"].tolist() == logs[0]["step"].tolist()


def test_ctrl_c_twice_then_resume_keeps_every_epoch_and_reaches_the_uninterrupted_result(noisy_dataset, tmp_path, tiny_config, crash_at_epoch):
    config = tiny_config(**{"trainer.max_epochs": 3})
    whole = train(noisy_dataset, tmp_path / "whole", config)
    run = tmp_path / "run"
    for epoch, resume in ((1, False), (2, True)):
        with pytest.raises(TrainingInterrupted, match=f"interrupted at epoch {epoch}.*--resume"):
            train(noisy_dataset, run, config, resume=resume, extra_callbacks=[crash_at_epoch(epoch, KeyboardInterrupt)])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards
        assert sorted(pd.read_csv(run / "metrics.csv")["epoch"].dropna().unique()) == list(range(epoch))
    assert comparable(train(noisy_dataset, run, config, resume=True)) == comparable(whole)


@pytest.mark.slow
def test_sigterm_stops_the_command_with_a_resume_hint_and_status_130(noisy_dataset, tmp_path):
    """A scheduler's SIGTERM must not look like success (Lightning alone exits 0 after it)."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "protlc", "train", str(noisy_dataset), "--out", str(run), "--preset", "tiny",
           "--max-epochs", "500", "--batch-size", "16"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not (run / "checkpoints" / "last.ckpt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    for noise in ("litlogger", "exists and is not empty", "LeafSpec"):  # Lightning's adverts and false alarms
        assert noise not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("protlc: error: ") and "training interrupted at epoch" in last_line
    assert "--resume" in last_line
    assert not (run / "final_metrics.json").exists()


def test_run_dir_guards(noisy_dataset, tmp_path, tiny_config):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        train(noisy_dataset, tmp_path / "used", tiny_config())
    with pytest.raises(ConfigError, match="no checkpoints/last.ckpt"):
        train(noisy_dataset, tmp_path / "fresh", tiny_config(), resume=True)
    with pytest.raises(ConfigError, match="unknown config key 'optim.lrr'"):
        load_config([], ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="unknown loss"):
        train(noisy_dataset, tmp_path / "x", tiny_config(**{"loss.name": "nope"}))


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lr=abc", "config: optim.lr must be a number in (0, inf), got 'abc'"),
    ("data.batch_size=0", "config: data.batch_size must be an integer >= 1, got 0"),
    ("trainer.max_epochs=-1", "config: trainer.max_epochs must be an integer >= 1, got -1"),
    ("optim.final_lr_fraction=0", "config: optim.final_lr_fraction must be a number in (0, 1], got 0"),
    ("dynamics.every_n_steps=often", "config: dynamics.every_n_steps must be auto or an integer >= 1"),
    ("trainer.progress_bar=maybe", "config: trainer.progress_bar must be true or false, got 'maybe'"),
    ("data.tokens_per_batch=10", "config: data.tokens_per_batch must be null, 0 (off) or an integer >= 64, got 10"),
    ("eval.tokens_per_batch=true", "config: eval.tokens_per_batch must be null, 0 (off) or an integer >= 64"),
    ("data.width_multiple=0", "config: data.width_multiple must be an integer >= 1, got 0"),
    ("trainer.accelerator=banana", "trainer settings (accelerator 'banana'"),
    ("trainer.precision=17", "Precision 17 is invalid"),
])
def test_bad_config_values_fail_in_one_line_before_the_run_dir_exists(noisy_dataset, tmp_path, override, message):
    from click.testing import CliRunner

    from protlc.cli import cli

    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(noisy_dataset), "--out", str(run), "--preset", "tiny",
                                      "--set", override])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("protlc: error: ") and message in lines[0], result.output
    assert not run.exists()  # nothing left that would block the corrected command


def test_exponent_floats_from_the_command_line_and_yaml_files(tmp_path):
    """YAML 1.1 reads 1e-3 as a string; the README's own `--set optim.lr=3e-4` must be a float."""
    (tmp_path / "c.yaml").write_text("optim: {lr: 2e-3, weight_decay: 1E-5}\n")
    config = load_config([tmp_path / "c.yaml"], ["optim.final_lr_fraction=5e-2"])
    assert (config["optim"]["lr"], config["optim"]["weight_decay"], config["optim"]["final_lr_fraction"]) == (2e-3, 1e-5, 5e-2)
    assert load_config([], ["optim.lr=3e-4"])["optim"]["lr"] == 3e-4
    assert load_config([], ["loss.name=e5"])["loss"]["name"] == "e5"  # not a number: stays a string


def test_dynamics_auto_spacing(noisy_dataset, tmp_path):
    """auto: every 100 steps for short runs, 50 points over a long run."""
    from protlc.training.callbacks import AUTO_MIN_STEPS, AUTO_POINTS, DynamicsCallback

    train_df = pd.read_parquet(noisy_dataset / "train.parquet")
    test_df = pd.read_parquet(noisy_dataset / "test.parquet")

    class FakeTrainer:
        estimated_stepping_batches = 0
        global_step = 0

    for total, expected in ((40, AUTO_MIN_STEPS), (AUTO_MIN_STEPS * AUTO_POINTS * 3 + 1, AUTO_MIN_STEPS * 3 + 1)):
        callback = DynamicsCallback(tmp_path / f"d{total}.csv", train_df, test_df, "auto", 10, seed=0)
        FakeTrainer.estimated_stepping_batches = total
        callback.on_train_start(FakeTrainer(), None)
        assert callback.every == expected


def test_dynamics_end_at_the_final_model_even_when_the_run_is_shorter_than_the_interval(noisy_dataset, tmp_path, tiny_config):
    metrics = train(noisy_dataset, tmp_path / "run", tiny_config(**{"trainer.max_epochs": 1,
                                                                       "dynamics.every_n_steps": 10_000}))
    dynamics = pd.read_csv(tmp_path / "run" / "dynamics.csv")
    assert dynamics["step"].tolist() == [metrics["optimizer_steps"]]


def test_dm_run_records_emphasis_mode_and_variance(noisy_dataset, tmp_path, tiny_config):
    metrics = train(noisy_dataset, tmp_path / "run", tiny_config(**{"trainer.max_epochs": 1, "loss.name": "dm",
                                                                       "loss.lam": 2.0}))
    assert metrics["loss/emphasis_mode"] == pytest.approx(2 / 3)
    assert json.loads((tmp_path / "run" / "final_metrics.json").read_text())["loss/emphasis_mode"] == pytest.approx(2 / 3)
    assert "train/emphasis_variance" in pd.read_csv(tmp_path / "run" / "metrics.csv").columns


def test_token_budget_batches_in_every_phase(noisy_dataset, tmp_path, tiny_config):
    """data/eval.tokens_per_batch: training, validation, dynamics and the final evaluation run on width-class
    batches; an epoch has as many steps as the token sampler has batches."""
    from protlc.data.loading import LengthBucketSampler

    config = tiny_config(**{"data.tokens_per_batch": 1024, "eval.tokens_per_batch": 4096})
    metrics = train(noisy_dataset, tmp_path / "run", config)
    lengths = pd.read_parquet(noisy_dataset / "train.parquet")["length"].to_numpy()
    per_epoch = len(LengthBucketSampler(lengths, 16, tokens_per_batch=1024))
    assert metrics["optimizer_steps"] == 2 * per_epoch != 2 * np.ceil(len(lengths) / 16)
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and "dev/unknown_threshold" in metrics
    assert pd.read_csv(tmp_path / "run" / "dynamics.csv")["step"].iloc[-1] == metrics["optimizer_steps"]
    assert (tmp_path / "run" / "config.yaml").read_text().count("tokens_per_batch") == 2


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(noisy_dataset, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "protlc", "train", str(noisy_dataset), "--out", str(run), "--preset", "tiny",
           "--max-epochs", "1", "--batch-size", "8", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run / "final_metrics.json").read_text())
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    # each rank took every other bucket batch: one epoch is half the single-process step count
    train_rows = len(pd.read_parquet(noisy_dataset / "train.parquet"))
    assert metrics["optimizer_steps"] <= np.ceil(train_rows / 8) // 2 + 1
