"""Nothing lost, nothing half-made (issue 16): resume, checkpoints, outputs and inputs under faults.

After every fault the invariants are: no half-written output file, earlier outputs and metrics intact,
and the command either succeeds or prints one line with a non-zero exit code.
"""

from __future__ import annotations

import fractions
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from click.testing import CliRunner

from protlc.cli import cli
from protlc.data.prepare import PrepareOptions, prepare_dataset
from protlc.training.config import load_config
from protlc.training.run import train

REPO = Path(__file__).resolve().parents[1]
TIMING_KEYS = ("time/", "gpu/")


def _prepare(tmp: Path, families: slice, name: str, **options) -> Path:
    """A small prepared dataset of real Pfam families from the embedded 16-family sample."""
    df = pd.read_csv(REPO / "data" / "exthomfam_16fam.tsv", sep="\t")
    keep = sorted(df["family_id"].unique())[families]
    source = tmp / f"{name}.tsv"
    df[df["family_id"].isin(keep)].to_csv(source, sep="\t", index=False)
    prepare_dataset([source], tmp / name, PrepareOptions(**options), progress=False)
    return tmp / name


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """6 real families, symmetric label noise 0.3 + crop noise (as in test_train)."""
    return _prepare(tmp_path_factory.mktemp("data"), slice(0, 6), "ds", label_noise=0.3, crop_noise=0.2, seed=3)


@pytest.fixture(scope="module")
def other_dataset(tmp_path_factory) -> Path:
    """6 other real families: a run started on ``dataset`` must not resume on it."""
    return _prepare(tmp_path_factory.mktemp("other"), slice(6, 12), "ds", seed=3)


def tiny_config(**overrides) -> dict:
    items = {"model.preset": "tiny", "trainer.max_epochs": 2, "data.batch_size": 16, "dynamics.every_n_steps": 4,
             "optim.warmup_steps": 2, "trainer.log_every_n_steps": 2, "trainer.progress_bar": False, **overrides}
    return load_config([], [f"{k}={v}" for k, v in items.items()])


TINY_FLAGS = ["--preset", "tiny", "--max-epochs", "2", "--batch-size", "16", "--set", "dynamics.every_n_steps=4",
              "--set", "optim.warmup_steps=2", "--set", "trainer.log_every_n_steps=2",
              "--set", "trainer.progress_bar=false"]


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(TIMING_KEYS)}


@pytest.fixture(scope="module")
def whole_run(dataset, tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted 2-epoch run: the reference every interrupted one must reach."""
    run = tmp_path_factory.mktemp("whole") / "run"
    return run, train(dataset, run, tiny_config())


@pytest.fixture(scope="module")
def killed_run(dataset, tmp_path_factory, crash_at_epoch) -> Path:
    """The same run killed at the start of epoch 1: last.ckpt holds epoch 0, metrics.csv epoch 0."""
    run = tmp_path_factory.mktemp("killed") / "run"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(dataset, run, tiny_config(), extra_callbacks=[crash_at_epoch(1)])
    return run


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (but the lock file) and its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, *needles: str, exit_code: int | None = None) -> str:
    """The command failed with exactly one line, ``protlc: error: ...``, containing every needle."""
    assert result.exit_code != 0, result.output
    if exit_code is not None:
        assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("protlc: error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------------------
# 1. --resume never loses metrics.csv rows, and refuses what it cannot continue before touching anything


def test_resume_of_a_finished_run_refuses_in_one_line_and_keeps_everything(dataset, whole_run, tmp_path):
    run = copy_run(whole_run[0], tmp_path)
    before = snapshot(run)
    result = invoke("train", dataset, "--out", run, "--resume", *TINY_FLAGS)
    assert_one_line_error(result, "finished run", "final_metrics.json", exit_code=2)
    assert snapshot(run) == before  # final_metrics.json not rewritten (no NaN throughput), rows all there


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _unsafe(path: Path) -> None:
    ckpt = torch.load(path, weights_only=True)
    ckpt["extra"] = fractions.Fraction(1, 3)  # an arbitrary Python object: weights_only refuses to unpickle it
    torch.save(ckpt, path)


@pytest.mark.parametrize(("damage", "message"), [(_truncated, "not a readable checkpoint"),
                                                 (_unsafe, "refused to load")])
def test_resume_refuses_a_damaged_last_ckpt_before_touching_the_run_dir(dataset, killed_run, tmp_path, damage,
                                                                        message):
    run = copy_run(killed_run, tmp_path)
    damage(run / "checkpoints" / "last.ckpt")
    before = snapshot(run)
    result = invoke("train", dataset, "--out", run, "--resume", *TINY_FLAGS)
    assert_one_line_error(result, "last.ckpt", message, exit_code=3)
    assert snapshot(run) == before


def test_resume_refuses_a_checkpoint_of_another_dataset_before_touching_the_run_dir(other_dataset, killed_run,
                                                                                   tmp_path):
    run = copy_run(killed_run, tmp_path)
    before = snapshot(run)
    result = invoke("train", other_dataset, "--out", run, "--resume", *TINY_FLAGS)
    assert_one_line_error(result, "last.ckpt", "other families", exit_code=3)
    assert snapshot(run) == before


class MetricsOnDisk(pl.Callback):
    """What a kill -9 would leave: the epochs in metrics.csv on disk after every training batch."""

    def __init__(self, path: Path):
        self.path = path
        self.seen: list[list[int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        epochs = pd.read_csv(self.path)["epoch"].dropna() if self.path.is_file() else pd.Series(dtype=float)
        self.seen.append(sorted(int(e) for e in epochs.unique()))


def test_earlier_metrics_rows_stay_on_disk_throughout_a_resumed_run(dataset, whole_run, killed_run, tmp_path):
    run = copy_run(killed_run, tmp_path)
    watch = MetricsOnDisk(run / "metrics.csv")
    resumed = train(dataset, run, tiny_config(), resume=True, extra_callbacks=[watch])
    assert watch.seen and all(seen[:1] == [0] for seen in watch.seen), watch.seen
    assert comparable(resumed) == comparable(whole_run[1])
    # every row of the uninterrupted run, once, in order, with the same values
    pd.testing.assert_frame_equal(pd.read_csv(run / "metrics.csv"), pd.read_csv(whole_run[0] / "metrics.csv"))


# ---------------------------------------------------------------------------------------------------------
# DMS fixtures: a tiny fitness model on 600 of the real Pab1 variants in tests/data

PAB1_WT = "GNIFIKNLHPDIDNKALYDTFSVFGDILSSKIATDENGKSKGFGFVHFEEEGAAKEAIDALNGMLLNGQEIYVAP"
PAB1_OFFSET = 126
TINY_DMS = ["model.preset=tiny", "model.filters=16", "model.dilations=[1, 2]", "head.channels=2", "head.hidden=16",
            "head.additive=none", "head.dropout=0.0", "trainer.max_epochs=2", "data.batch_size=64", "trainer.log_every_n_steps=5",
            "trainer.progress_bar=false", "early_stopping.patience=10"]


@pytest.fixture(scope="module")
def dms_table(nn4dms, tmp_path_factory) -> Path:
    table = pd.read_csv(nn4dms / "pab1" / "pab1.tsv", sep="\t")
    path = tmp_path_factory.mktemp("pab1") / "pab1_600.tsv"
    table.sample(600, random_state=0).to_csv(path, sep="\t", index=False)
    return path


def dms_config(*extra: str) -> dict:
    from protlc.training.fitness_run import load_dms_config

    return load_dms_config(overrides=[*TINY_DMS, *extra])


@pytest.fixture(scope="module")
def dms_killed_run(dms_table, tmp_path_factory, crash_at_epoch) -> Path:
    """A train-dms run killed at the start of epoch 1 (last.ckpt holds epoch 0)."""
    from protlc.training.fitness_run import train_dms

    run = tmp_path_factory.mktemp("dms") / "run"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_dms(dms_table, run, PAB1_WT, dms_config(), offset=PAB1_OFFSET, seed=3,
                  extra_callbacks=[crash_at_epoch(1)])
    return run


@pytest.fixture(scope="module")
def fitness_checkpoint(dms_killed_run) -> Path:
    return dms_killed_run / "checkpoints" / "last.ckpt"


# ---------------------------------------------------------------------------------------------------------
# 2. predict / score refuse an output path that is the input


@pytest.fixture
def sequences_csv(dataset, tmp_path) -> Path:
    path = tmp_path / "seqs.csv"
    pd.read_parquet(dataset / "test.parquet")[["sequence_name", "sequence"]].to_csv(path, index=False)
    return path


def _alias(path: Path, how: str) -> Path:
    if how == "same":
        return path
    alias = path.with_name(f"{how}_{path.name}")
    (alias.symlink_to if how == "symlink" else alias.hardlink_to)(path)
    return alias


def _no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_predict_refuses_to_write_over_its_input(whole_run, sequences_csv, how):
    before = sequences_csv.read_bytes()
    out = _alias(sequences_csv, how)
    result = invoke("predict", whole_run[0] / "checkpoints" / "last.ckpt", sequences_csv, "--out", out)
    assert_one_line_error(result, "--out", "is the input", exit_code=2)
    assert sequences_csv.read_bytes() == before and _no_temp_files(sequences_csv.parent)


@pytest.mark.parametrize("how", ["same", "symlink"])
def test_score_refuses_to_write_over_its_library(fitness_checkpoint, dms_table, tmp_path, how):
    library = tmp_path / "library.tsv"
    shutil.copy(dms_table, library)
    before = library.read_bytes()
    result = invoke("score", fitness_checkpoint, library, "--out", _alias(library, how), "--no-progress")
    assert_one_line_error(result, "--out", "is the input", exit_code=2)
    assert library.read_bytes() == before and _no_temp_files(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# 4. checkpoints are written atomically: a failed write leaves the previous one loadable


class FaultFromEpoch(pl.Callback):
    """Calls ``inject()`` at the start of training epoch ``epoch`` (after the checkpoint of the one before)."""

    def __init__(self, epoch: int, inject):
        self.epoch, self.inject = epoch, inject

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            self.inject()


def _checkpoint_epoch(path: Path) -> int:
    from protlc.model.checkpoint import read_checkpoint

    return int(read_checkpoint(path)["epoch"])  # raises CheckpointError when it is not loadable


def test_a_full_disk_while_a_checkpoint_is_written_leaves_the_previous_one(dataset, tmp_path, monkeypatch):
    """The run dir on another file system than TMPDIR (a rename there fails with EXDEV, so a move is a
    copy) and its disk fills up while the epoch-1 checkpoint is written: the training may fail, but
    last.ckpt is never half a file."""
    import errno
    import os

    rename, copyfile = os.rename, shutil.copyfile

    def cross_device_rename(src, dst, *args, **kwargs):
        if str(dst).endswith(".ckpt"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return rename(src, dst, *args, **kwargs)

    def disk_fills_up(src, dst, *args, **kwargs):
        if not str(dst).endswith(".ckpt"):
            return copyfile(src, dst, *args, **kwargs)
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 3])
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    def inject():
        monkeypatch.setattr(os, "rename", cross_device_rename)
        monkeypatch.setattr(shutil, "copyfile", disk_fills_up)

    run = tmp_path / "run"
    try:
        train(dataset, run, tiny_config(), extra_callbacks=[FaultFromEpoch(1, inject)])
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    monkeypatch.undo()
    assert _checkpoint_epoch(run / "checkpoints" / "last.ckpt") in (0, 1)  # loadable: the old one or the new one
    assert _checkpoint_epoch(run / "checkpoints" / "best.ckpt") in (0, 1)


def _full_disk_at_epoch(real_save, epoch: int):
    """A ``torch.save`` that, for the checkpoints of ``epoch``, writes part of the file and fails with
    ENOSPC, as a full disk does."""
    import errno
    import io

    def save(obj, f, *args, **kwargs):
        if not (isinstance(obj, dict) and obj.get("epoch") == epoch):
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        part = buffer.getvalue()[: buffer.tell() // 2]
        if hasattr(f, "write"):
            f.write(part)
        else:
            Path(f).write_bytes(part)
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


def test_enospc_during_a_checkpoint_save_is_one_line_and_keeps_the_previous_last_ckpt(dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", _full_disk_at_epoch(torch.save, epoch=1))
    result = invoke("train", dataset, "--out", run, *TINY_FLAGS)
    assert_one_line_error(result, "No space left on device", exit_code=1)
    monkeypatch.undo()
    assert _checkpoint_epoch(run / "checkpoints" / "last.ckpt") == 0  # the previous checkpoint, loadable
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]  # nothing half-written
    assert not (run / "final_metrics.json").exists()
    assert sorted(pd.read_csv(run / "metrics.csv")["epoch"].dropna().unique()) == [0, 1]
    _check_run_dir_invariants(run, None)


# ---------------------------------------------------------------------------------------------------------
# 3. one process at a time in a run directory


class LockHolder:
    """Another process holding ``RUN_DIR/.lock`` (as a running ``protlc train`` does)."""

    CODE = ("import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(600)")

    def __init__(self, run: Path):
        import subprocess
        import sys

        self.process = subprocess.Popen([sys.executable, "-c", self.CODE, str(run / ".lock")],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "locked"

    def kill(self) -> None:
        import os
        import signal

        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def test_a_second_train_on_a_run_dir_in_use_refuses_and_a_killed_holder_never_blocks(dataset, whole_run,
                                                                                     killed_run, tmp_path):
    run = copy_run(killed_run, tmp_path)
    before = snapshot(run)
    holder = LockHolder(run)
    try:
        result = invoke("train", dataset, "--out", run, "--resume", *TINY_FLAGS)
        assert_one_line_error(result, "in use by another protlc process", exit_code=2)
        assert snapshot(run) == before
    finally:
        holder.kill()  # the lock file stays, but a killed process holds no lock
    assert (run / ".lock").exists()
    assert comparable(train(dataset, run, tiny_config(), resume=True)) == comparable(whole_run[1])
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    holder = LockHolder(fresh)  # a new run whose directory another process has just created and locked
    try:
        assert_one_line_error(invoke("train", dataset, "--out", fresh, *TINY_FLAGS), "in use", exit_code=2)
    finally:
        holder.kill()


def test_a_second_train_dms_on_a_run_dir_in_use_refuses(dms_table, dms_killed_run, tmp_path):
    run = copy_run(dms_killed_run, tmp_path)
    before = snapshot(run)
    holder = LockHolder(run)
    try:
        result = invoke("train-dms", dms_table, "--out", run, "--resume", "--wt", PAB1_WT, "--offset", PAB1_OFFSET)
        assert_one_line_error(result, "in use by another protlc process", exit_code=2)
        assert snapshot(run) == before
    finally:
        holder.kill()


# ---------------------------------------------------------------------------------------------------------
# 5, 6. train checks the prepared dataset it reads, before the run directory exists


def _edit_split(dataset: Path, split: str, edit) -> None:
    import pyarrow.parquet as pq

    from protlc.data import store

    df = store.read_split(dataset, split)
    df = edit(df.copy())
    pq.write_table(store.to_table(df), store.split_path(dataset, split))


def _edit_labels(dataset: Path, edit) -> None:
    path = dataset / "labels.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _set_row(column, value, row=3):
    def edit(df):
        df.loc[row, column] = value
        return df
    return edit


BAD_DATASETS = {
    "empty train split": (lambda ds: _edit_split(ds, "train", lambda df: df.iloc[:0]), "train.parquet: no sequences"),
    "empty sequence": (lambda ds: _edit_split(ds, "train", _set_row("sequence", "")), "empty sequence"),
    "invalid residue": (lambda ds: _edit_split(ds, "dev", _set_row("sequence", "MKV1LLA")), "invalid residue '1'"),
    "label out of range": (lambda ds: _edit_split(ds, "train", _set_row("label", 6)), "label 6 is not in"),
    "labels.json too short": (lambda ds: _edit_labels(ds, lambda labels: labels[:-1]), "label 5 is not in"),
    "labels.json duplicate": (lambda ds: _edit_labels(ds, lambda labels: [labels[0], *labels[:-1]]), "listed twice"),
    "labels.json reordered": (lambda ds: _edit_labels(ds, lambda labels: [labels[1], labels[0], *labels[2:]]),
                              "but the row says"),
}


@pytest.mark.parametrize("case", list(BAD_DATASETS))
def test_train_refuses_a_bad_prepared_dataset_in_one_line_before_the_run_dir_exists(dataset, tmp_path, case):
    damage, message = BAD_DATASETS[case]
    bad = Path(shutil.copytree(dataset, tmp_path / "bad"))
    damage(bad)
    run = tmp_path / "run"
    result = invoke("train", bad, "--out", run, *TINY_FLAGS)
    assert_one_line_error(result, message, exit_code=2)
    assert not run.exists()


# ---------------------------------------------------------------------------------------------------------
# 7. --resume refuses to change what defines the model or the data


@pytest.fixture(scope="module")
def reshuffled_dataset(tmp_path_factory) -> Path:
    """The same 6 families as ``dataset`` (identical labels.json), split and noised with another seed."""
    return _prepare(tmp_path_factory.mktemp("reshuffled"), slice(0, 6), "ds", label_noise=0.3, crop_noise=0.2, seed=4)


@pytest.mark.parametrize(("flags", "message"), [
    (["--loss", "proselflc_at"], "loss.name was 'cce' when the run started, now 'proselflc_at'"),
    (["--set", "model.filters=32"], "model.filters was 16 when the run started, now 32"),
    (["--preset", "small"], "model.preset was 'tiny' when the run started, now 'small'"),
    (["--set", "loss.name=ls", "--set", "loss.epsilon=0.2"], "loss.name was 'cce'"),
    ("reshuffled", "is not the data the run started with"),
])
def test_resume_refuses_another_model_loss_or_dataset_in_one_line(dataset, reshuffled_dataset, killed_run, tmp_path,
                                                                  flags, message):
    run = copy_run(killed_run, tmp_path)
    before = snapshot(run)
    data = reshuffled_dataset if flags == "reshuffled" else dataset
    extra = [] if flags == "reshuffled" else flags
    result = invoke("train", data, "--out", run, "--resume", *TINY_FLAGS, *extra)
    assert_one_line_error(result, "--resume: ", message, exit_code=2)
    assert snapshot(run) == before


def test_resume_accepts_a_moved_dataset_and_a_longer_run(dataset, killed_run, tmp_path):
    run = copy_run(killed_run, tmp_path)
    moved = Path(shutil.copytree(dataset, tmp_path / "moved"))
    result = invoke("train", moved, "--out", run, "--resume", *TINY_FLAGS, "--max-epochs", "3")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "final_metrics.json").read_text())["epochs"] == 3


@pytest.mark.parametrize(("flags", "message"), [
    (["--set", "head.hidden=32"], "head.hidden was 16 when the run started, now 32"),
    (["--split", "positional"], "split.kind was 'random' when the run started, now 'positional'"),
    (["--split-seed", "5"], "split.seed was 0 when the run started, now 5"),
])
def test_train_dms_resume_refuses_another_model_or_data_in_one_line(dms_table, dms_killed_run, tmp_path, flags,
                                                                    message):
    run = copy_run(dms_killed_run, tmp_path)
    before = snapshot(run)
    result = invoke("train-dms", dms_table, "--out", run, "--resume", "--wt", PAB1_WT, "--offset", PAB1_OFFSET, *flags)
    assert_one_line_error(result, "--resume: ", message, exit_code=2)
    assert snapshot(run) == before


# ---------------------------------------------------------------------------------------------------------
# 10. a run stopped before its first checkpoint leaves a directory that a rerun accepts


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_run_stopped_before_its_first_checkpoint_can_simply_be_rerun(dataset, whole_run, tmp_path, error, crash_at_epoch):
    from protlc.errors import TrainingInterrupted

    run = tmp_path / "run"
    expected = TrainingInterrupted if error is KeyboardInterrupt else RuntimeError
    with pytest.raises(expected) as stopped:
        train(dataset, run, tiny_config(), extra_callbacks=[crash_at_epoch(0, error)])
    if error is KeyboardInterrupt:  # the hint says what works: there is nothing to resume yet
        assert "without --resume" in str(stopped.value)
    assert (run / "config.yaml").is_file() and not list(run.rglob("*.ckpt"))
    assert_one_line_error(invoke("train", dataset, "--out", run, "--resume", *TINY_FLAGS), "no checkpoints/last.ckpt",
                          "without --resume")
    result = invoke("train", dataset, "--out", run, *TINY_FLAGS)
    assert result.exit_code == 0, result.output
    assert comparable(json.loads((run / "final_metrics.json").read_text())) == comparable(whole_run[1])
    pd.testing.assert_frame_equal(pd.read_csv(run / "metrics.csv"), pd.read_csv(whole_run[0] / "metrics.csv"))


@pytest.mark.slow
def test_a_train_dms_run_stopped_before_its_first_checkpoint_can_simply_be_rerun(dms_table, tmp_path, crash_at_epoch):
    from protlc.training.fitness_run import train_dms

    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_dms(dms_table, run, PAB1_WT, dms_config(), offset=PAB1_OFFSET, seed=3, extra_callbacks=[crash_at_epoch(0)])
    assert train_dms(dms_table, run, PAB1_WT, dms_config(), offset=PAB1_OFFSET, seed=3)["epochs"] == 2


def test_a_directory_with_other_files_is_still_refused(dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("mine\n")
    (run / "notes.txt").write_text("mine\n")
    assert_one_line_error(invoke("train", dataset, "--out", run, *TINY_FLAGS), "is not empty", exit_code=2)
    assert (run / "config.yaml").read_text() == "mine\n"


# ---------------------------------------------------------------------------------------------------------
# 13. SIGTERM stops predict / score with one line and status 143, leaving no temporary file


class _ReachedDefault(Exception):
    pass


@pytest.fixture
def sigterm_fallback():
    """Without a handler of protlc's, SIGTERM would end the test process: this fallback raises instead."""
    import signal

    def fallback(signum, frame):
        raise _ReachedDefault("SIGTERM was not handled by protlc")

    previous = signal.signal(signal.SIGTERM, fallback)
    yield
    signal.signal(signal.SIGTERM, previous)


def _sigterm_on_call(monkeypatch, module, name: str) -> None:
    """``module.name`` sends SIGTERM to this process when it is first called (mid-way through the output)."""
    import os
    import signal

    real = getattr(module, name)

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, terminated)


def _error_lines(output: str) -> list[str]:
    """The output without progress-bar lines (tqdm on stderr)."""
    return [line for line in output.strip().splitlines() if line.strip() and not line.startswith(("predict:", "score:"))]


def test_sigterm_during_predict_leaves_no_output_and_exits_143(whole_run, sequences_csv, tmp_path, monkeypatch,
                                                               sigterm_fallback):
    import protlc.predict

    _sigterm_on_call(monkeypatch, protlc.predict, "model_outputs")
    out = tmp_path / "out" / "predictions.csv"
    out.parent.mkdir()
    result = invoke("predict", whole_run[0] / "checkpoints" / "last.ckpt", sequences_csv, "--out", out)
    assert result.exit_code == 143, result.output
    lines = _error_lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("protlc: terminated by SIGTERM"), result.output
    assert list(out.parent.iterdir()) == []  # neither the output nor its temporary file


def test_sigterm_during_score_leaves_no_output_and_exits_143(fitness_checkpoint, dms_table, tmp_path, monkeypatch,
                                                             sigterm_fallback):
    import protlc.dms.scoring

    _sigterm_on_call(monkeypatch, protlc.dms.scoring, "model_outputs")
    out = tmp_path / "out" / "scores.parquet"
    out.parent.mkdir()
    result = invoke("score", fitness_checkpoint, dms_table, "--out", out, "--skip-invalid", "--no-progress",
                    "--chunk-size", "100")
    assert result.exit_code == 143, result.output
    lines = _error_lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("protlc: terminated by SIGTERM"), result.output
    assert list(out.parent.iterdir()) == []  # no output, no rejects file, no temporary files


# ---------------------------------------------------------------------------------------------------------
# Fault injection: kill -9 at random points, truncated gzip inputs, SIGTERM from outside


def _protlc(*args) -> list[str]:
    import sys

    return [sys.executable, "-m", "protlc", *[str(a) for a in args]]


def _check_run_dir_invariants(run: Path, reference: pd.DataFrame | None) -> None:
    """What any kill may leave: loadable checkpoints, a metrics.csv whose rows are rows of the
    uninterrupted run (in order, none twice), no final metrics before the run is finished."""
    for name in ("last.ckpt", "best.ckpt"):
        if (run / "checkpoints" / name).exists():
            _checkpoint_epoch(run / "checkpoints" / name)
    if (run / "metrics.csv").exists() and reference is not None:
        rows = pd.read_csv(run / "metrics.csv")
        keys = [tuple(r) for r in rows[["step", "epoch"]].fillna(-1).itertuples(index=False)]
        expected = [tuple(r) for r in reference[["step", "epoch"]].fillna(-1).itertuples(index=False)]
        it = iter(expected)
        assert all(key in it for key in keys), (keys, expected)  # an ordered sub-sequence


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_reaches_the_uninterrupted_result(dataset, tmp_path):
    import os
    import random
    import signal
    import subprocess
    import time

    flags = [*TINY_FLAGS, "--max-epochs", "4"]
    reference = tmp_path / "whole"
    done = subprocess.run(_protlc("train", dataset, "--out", reference, *flags), capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = json.loads((reference / "final_metrics.json").read_text())
    expected_rows = pd.read_csv(reference / "metrics.csv")
    # config.yaml is written just before training starts, final_metrics.json last
    busy = (reference / "final_metrics.json").stat().st_mtime - (reference / "config.yaml").stat().st_mtime

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    run = tmp_path / "run"
    history = []
    for _ in range(4):  # up to 4 kills, each at a random time of the training (after the imports and checks)
        if (run / "final_metrics.json").exists():
            break
        resume = (run / "checkpoints" / "last.ckpt").exists()
        started = time.time()
        process = subprocess.Popen(_protlc("train", dataset, "--out", run, *flags, *(["--resume"] if resume else [])),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        config = run / "config.yaml"
        while process.poll() is None and not (config.exists() and config.stat().st_mtime >= started - 1):
            time.sleep(0.01)
        delay = rng.uniform(0.0, busy)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
        history.append((round(delay, 2), resume, process.returncode))
        assert process.returncode in (0, -signal.SIGKILL), (seed, history, stderr[-2000:])
        _check_run_dir_invariants(run, expected_rows)
        time.sleep(0.1)
    if not (run / "final_metrics.json").exists():
        resume = (run / "checkpoints" / "last.ckpt").exists()
        done = subprocess.run(_protlc("train", dataset, "--out", run, *flags, *(["--resume"] if resume else [])),
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, (seed, history, done.stderr[-2000:])
    print(f"kill -9 seed {seed}: (delay s, resumed, exit status) {history}")
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["test/accuracy"] == expected["test/accuracy"], (seed, history)
    assert comparable(final) == comparable(expected), (seed, history)
    _check_run_dir_invariants(run, expected_rows)
    kept = pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(kept.dropna(subset=["dev/accuracy"]).reset_index(drop=True),
                                  expected_rows.dropna(subset=["dev/accuracy"]).reset_index(drop=True))
    assert not [p for p in run.rglob(".*.tmp")], (seed, history)


def _truncated_gzip(source: Path, target: Path) -> Path:
    import gzip

    data = gzip.compress(source.read_bytes())
    target.write_bytes(data[: len(data) // 2])
    return target


def test_truncated_gzip_inputs_give_one_line_and_no_output(dataset, whole_run, tmp_path):
    tsv = tmp_path / "six.tsv"
    df = pd.read_csv(REPO / "data" / "exthomfam_16fam.tsv", sep="\t")
    df[df["family_id"].isin(sorted(df["family_id"].unique())[:6])].to_csv(tsv, sep="\t", index=False)
    fasta = tmp_path / "test.fasta"
    test = pd.read_parquet(dataset / "test.parquet")
    fasta.write_text("".join(f">{n}\n{s}\n" for n, s in zip(test["sequence_name"], test["sequence"])) * 20)

    labelled = tmp_path / "six.fasta"  # '>NAME FAMILY' headers
    labelled.write_text("".join(f">{n} {f}\n{s}\n" for n, f, s in zip(df["sequence_name"], df["family_id"],
                                                                      df["sequence"])))
    out = tmp_path / "out"
    out.mkdir()
    for source in (tsv, labelled):
        gz = _truncated_gzip(source, tmp_path / f"{source.name}.gz")
        result = invoke("prepare", gz, "--out", out / "ds", "--no-progress")
        assert_one_line_error(result, gz.name, "truncated")
    for source in (tsv, fasta):
        gz = _truncated_gzip(source, tmp_path / f"{source.name}.gz")
        result = invoke("predict", whole_run[0] / "checkpoints" / "last.ckpt", gz, "--out", out / "p.csv")
        lines = _error_lines(result.output)
        assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("protlc: error: "), result.output
        assert gz.name in lines[0] and "truncated" in lines[0]
    assert list(out.iterdir()) == []  # no dataset, no predictions, no temporary files


@pytest.mark.slow
def test_sigterm_from_outside_stops_predict_with_143_and_no_files(whole_run, dataset, tmp_path):
    import signal
    import subprocess
    import time

    test = pd.read_parquet(dataset / "test.parquet")
    big = tmp_path / "big.csv"
    pd.concat([test[["sequence_name", "sequence"]]] * 2000, ignore_index=True).to_csv(big, index=False)
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen(_protlc("predict", whole_run[0] / "checkpoints" / "last.ckpt", big, "--out",
                                       out / "p.parquet", "--batch-size", "8"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(out.iterdir()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the temporary output exists: predicting has begun
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-2000:]
    lines = _error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("protlc: terminated by SIGTERM"), stderr[-2000:]
    assert list(out.iterdir()) == []


def test_sigterm_during_prepare_or_audit_leaves_no_output_and_exits_143(dataset, whole_run, tmp_path, monkeypatch,
                                                                        sigterm_fallback):
    import protlc.audit
    from protlc.data import store

    out = tmp_path / "out"
    out.mkdir()
    tsv = tmp_path / "six.tsv"
    pd.read_csv(REPO / "data" / "exthomfam_16fam.tsv", sep="\t").head(200).to_csv(tsv, sep="\t", index=False)
    _sigterm_on_call(monkeypatch, store, "to_table")  # inside the temporary dataset directory
    result = invoke("prepare", tsv, "--out", out / "ds", "--no-progress")
    assert result.exit_code == 143 and _error_lines(result.output)[0].startswith("protlc: terminated"), result.output
    _sigterm_on_call(monkeypatch, protlc.audit, "model_outputs")
    result = invoke("audit", whole_run[0] / "checkpoints" / "last.ckpt", "--dataset", dataset, "--out", out / "a.csv")
    assert result.exit_code == 143 and _error_lines(result.output) == [
        "protlc: terminated by SIGTERM; no output written (its temporary files are removed)"], result.output
    assert list(out.iterdir()) == []


def test_audit_refuses_to_write_over_the_split_it_reads(dataset, whole_run, tmp_path):
    copy = Path(shutil.copytree(dataset, tmp_path / "ds"))
    before = snapshot(copy)
    result = invoke("audit", whole_run[0] / "checkpoints" / "last.ckpt", "--dataset", copy, "--out",
                    copy / "train.parquet")
    assert_one_line_error(result, "is the input", exit_code=2)
    assert snapshot(copy) == before


# ---------------------------------------------------------------------------------------------------------
# 14. a full disk while prepare / predict / score write their output: one line naming it, nothing half-made


def _disk_full(*args, **kwargs):
    """A Parquet write that fails with ENOSPC, as on a full disk (naming no file, like a plain write), after
    writing part of a file when it is given a path."""
    import errno

    path = next((a for a in args if isinstance(a, (str, Path))), None)
    if path is not None:
        Path(path).write_bytes(b"PAR1 half a file")
    raise OSError(errno.ENOSPC, "No space left on device")


def _full_disk_on_csv(monkeypatch):
    import errno

    real = pd.DataFrame.to_csv

    def to_csv(self, path=None, *args, **kwargs):
        if path is None:
            return real(self, path, *args, **kwargs)
        real(self.head(len(self) // 2), path, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)


def test_a_full_disk_while_predict_writes_is_one_line_naming_the_output_and_keeps_the_earlier_one(
        tmp_path, classifier_checkpoint, sequences_csv, monkeypatch):
    checkpoint = tmp_path / "classifier.ckpt"
    classifier_checkpoint(checkpoint)
    out = tmp_path / "out" / "predictions.csv"
    out.parent.mkdir()
    out.write_text("earlier output\n")
    _full_disk_on_csv(monkeypatch)
    result = invoke("predict", checkpoint, sequences_csv, "--out", out)
    assert_one_line_error(result, f"{out}: No space left on device", exit_code=1)
    assert out.read_text() == "earlier output\n" and [p.name for p in out.parent.iterdir()] == [out.name]


def test_a_full_disk_while_score_writes_parquet_is_one_line_and_leaves_no_file(fitness_checkpoint, dms_table,
                                                                               tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    out = tmp_path / "out" / "scores.parquet"
    out.parent.mkdir()
    monkeypatch.setattr(pq.ParquetWriter, "write_table", _disk_full)
    result = invoke("score", fitness_checkpoint, dms_table, "--out", out, "--skip-invalid", "--chunk-size", "100")
    assert_one_line_error(result, str(out), "No space left on device", exit_code=1)
    assert list(out.parent.iterdir()) == []  # neither the output, nor its rejects file, nor a temporary file


def test_a_full_disk_while_prepare_writes_is_one_line_and_keeps_the_earlier_dataset(dataset, tmp_path,
                                                                                    monkeypatch):
    import pyarrow.parquet as pq

    out = Path(shutil.copytree(dataset, tmp_path / "out" / "ds"))
    before = snapshot(out)
    tsv = tmp_path / "six.tsv"
    pd.read_csv(REPO / "data" / "exthomfam_16fam.tsv", sep="\t").head(300).to_csv(tsv, sep="\t", index=False)
    monkeypatch.setattr(pq, "write_table", _disk_full)
    result = invoke("prepare", tsv, "--out", out, "--overwrite")
    assert_one_line_error(result, f"{out}: No space left on device", exit_code=1)
    assert snapshot(out) == before and [p.name for p in out.parent.iterdir()] == ["ds"]


def _this_checkout() -> dict:
    """The environment of a ``python -m protlc`` subprocess that imports this checkout's protlc."""
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _with_file_size_limit(limit: int):
    """preexec_fn of a process whose files may not grow past ``limit`` bytes: a write beyond it fails with
    EFBIG ('File too large'), as a full disk fails with ENOSPC (SIGXFSZ ignored, so it is an error)."""
    import resource
    import signal

    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_files


@pytest.mark.parametrize("command", ["predict", "score"])
def test_a_real_write_failure_in_a_pipe_is_exactly_one_stderr_line_without_a_progress_bar(
        command, whole_run, dataset, fitness_checkpoint, tmp_path):
    """stderr is a pipe: no progress bar is drawn by default, so stderr holds the one error line only."""
    import subprocess

    out = tmp_path / "out" / "result.csv"
    out.parent.mkdir()
    if command == "predict":
        big = tmp_path / "big.csv"
        test = pd.read_parquet(dataset / "test.parquet")[["sequence_name", "sequence"]]
        pd.concat([test] * 10, ignore_index=True).to_csv(big, index=False)
        args = ["predict", whole_run[0] / "checkpoints" / "last.ckpt", big, "--out", out]
    else:
        args = ["score", fitness_checkpoint, "--saturation", "--out", out]
    done = subprocess.run(_protlc(*args), capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          preexec_fn=_with_file_size_limit(20_000), env=_this_checkout())
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.splitlines() == [f"protlc: error: {out}: File too large"], done.stderr[-2000:]
    assert list(out.parent.iterdir()) == []


def test_progress_bars_are_drawn_only_on_a_terminal_or_when_asked_and_never_hold_the_error_line(
        tmp_path, classifier_checkpoint, sequences_csv, monkeypatch):
    checkpoint = tmp_path / "classifier.ckpt"
    classifier_checkpoint(checkpoint)
    quiet = invoke("predict", checkpoint, sequences_csv, "--out", tmp_path / "a.csv")  # stderr is no terminal
    assert quiet.exit_code == 0 and "predict:" not in quiet.output and "seq/s" not in quiet.output, quiet.output
    asked = invoke("predict", checkpoint, sequences_csv, "--out", tmp_path / "b.csv", "--progress")
    assert asked.exit_code == 0 and "predict:" in asked.output, asked.output
    _full_disk_on_csv(monkeypatch)
    failed = invoke("predict", checkpoint, sequences_csv, "--out", tmp_path / "c.csv", "--progress")
    assert failed.exit_code == 1 and "predict:" in failed.output, failed.output
    last = failed.output.splitlines()[-1]
    assert last == f"protlc: error: {tmp_path / 'c.csv'}: No space left on device", failed.output


# ---------------------------------------------------------------------------------------------------------
# 15. --config that is not a YAML mapping: one line naming the file and what it is


def _config_file(tmp_path: Path, kind: str, classifier_checkpoint) -> Path:
    path = tmp_path / f"config.{kind}"
    if kind == "ckpt":
        classifier_checkpoint(path)
    elif kind == "bin":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "list":
        path.write_text("- optim\n- lr\n")
    elif kind == "dir":
        path.mkdir()
    return path


@pytest.mark.parametrize(("command", "kind", "message"), [
    ("train", "ckpt", "not a YAML text file (a zip archive such as a checkpoint)"),
    ("train", "bin", "not a YAML text file (binary, not UTF-8 text)"),
    ("train", "list", "must be a mapping of sections (e.g. 'optim: {lr: 0.001}'), got a list"),
    ("train", "dir", "is a directory"),
    ("train-dms", "ckpt", "not a YAML text file"),
    ("reproduce", "bin", "not a YAML text file"),
    ("reproduce", "list", "a grid config must be a mapping"),
])
def test_a_config_that_is_binary_or_not_a_mapping_is_one_line_naming_it(dataset, dms_table, tmp_path, command, kind,
                                                                        message, classifier_checkpoint):
    config = _config_file(tmp_path, kind, classifier_checkpoint)
    source = {"train": [dataset], "train-dms": [dms_table, "--wt", PAB1_WT], "reproduce": []}[command]
    result = invoke(command, *source, "--out", tmp_path / "run", "--config", config)
    assert_one_line_error(result, str(config), message, exit_code=2)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------------
# 16. a hand-edited checkpoint: sizes checked against its tensors, before the model is allocated


def _hand_edited(source: Path, target: Path, how: str) -> Path:
    ckpt = torch.load(source, weights_only=True)
    hp, state = ckpt["hyper_parameters"], ckpt["state_dict"]
    if how == "absurd filters":
        hp["model_config"]["filters"] = 10**7  # terabytes, were it allocated
    elif how == "one more label":
        hp["labels"] = [*hp["labels"], {"family_id": "EXTRA", "family_accession": None}]
    elif how == "narrower kernel":
        state["model.encoder.conv_in.weight"] = state["model.encoder.conv_in.weight"][:, :, :5].clone()
    elif how == "missing tensor":
        del state["model.encoder.conv_in.bias"]
    torch.save(ckpt, target)
    return target


@pytest.mark.parametrize(("how", "message"), [
    ("absurd filters", "tensor encoder.conv_in.weight has shape [16, 20, 9] but the model its model_config and "
                       "3 labels describe needs [10000000, 20, 9]"),
    ("one more label", "tensor head.linear.weight has shape [3, 16] but the model its model_config and 4 labels "
                       "describe needs [4, 16]"),
    ("narrower kernel", "tensor encoder.conv_in.weight has shape [16, 20, 5]"),
    ("missing tensor", "missing tensor(s) encoder.conv_in.bias"),
])
def test_predict_and_audit_refuse_a_hand_edited_classifier_checkpoint_in_one_line(
        tmp_path, classifier_checkpoint, sequences_csv, dataset, how, message):
    classifier_checkpoint(tmp_path / "c.ckpt")
    checkpoint = _hand_edited(tmp_path / "c.ckpt", tmp_path / "edited.ckpt", how)
    result = invoke("predict", checkpoint, sequences_csv, "--out", tmp_path / "p.csv")
    assert_one_line_error(result, str(checkpoint), message, exit_code=3)
    result = invoke("audit", checkpoint, "--dataset", dataset, "--out", tmp_path / "a.csv")
    assert_one_line_error(result, str(checkpoint), message, exit_code=3)
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "a.csv").exists()


@pytest.mark.parametrize("how", ["absurd filters", "narrower kernel"])
def test_score_and_init_refuse_a_hand_edited_checkpoint_in_one_line(fitness_checkpoint, dms_table, tmp_path,
                                                                   classifier_checkpoint, how):
    checkpoint = _hand_edited(fitness_checkpoint, tmp_path / "edited.ckpt", how)
    result = invoke("score", checkpoint, "--saturation", "--out", tmp_path / "s.csv")
    assert_one_line_error(result, str(checkpoint), "tensor encoder.conv_in.weight has shape", exit_code=3)
    classifier_checkpoint(tmp_path / "c.ckpt")
    pfam = _hand_edited(tmp_path / "c.ckpt", tmp_path / "pfam.ckpt", how)
    result = invoke("train-dms", dms_table, "--out", tmp_path / "run", "--wt", PAB1_WT, "--offset", PAB1_OFFSET,
                    "--init", pfam)
    assert_one_line_error(result, str(pfam), "tensor encoder.conv_in.weight has shape", exit_code=3)


def test_an_absurd_model_size_is_refused_before_any_memory_is_taken(tmp_path, classifier_checkpoint, sequences_csv):
    """Under a 6 GiB address-space limit: building the 10**7-filter model first would fail for memory."""
    import resource
    import subprocess

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    classifier_checkpoint(tmp_path / "c.ckpt")
    checkpoint = _hand_edited(tmp_path / "c.ckpt", tmp_path / "edited.ckpt", "absurd filters")
    done = subprocess.run(_protlc("predict", checkpoint, sequences_csv, "--out", tmp_path / "p.csv"),
                          capture_output=True, text=True, cwd=tmp_path, timeout=300, preexec_fn=limit_memory,
                          env=_this_checkout())
    assert done.returncode == 3, done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1 and "needs [10000000, 20, 9]" in done.stderr, done.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------------
# 17. score: a combinatorial library's size up front and a limit; no stale rejects; nothing scoreable


def test_a_combinatorial_library_states_its_size_and_is_refused_past_max_variants(fitness_checkpoint, tmp_path):
    small = invoke("score", fitness_checkpoint, "--combinatorial", "1:GAV,2:NAG", "--out", tmp_path / "c.csv",
                   "--max-variants", "8")
    assert_one_line_error(small, "makes 9 variants, more than --max-variants 8", exit_code=2)
    every = "ACDEFGHIKLMNPQRSTVWY"
    spec = ",".join(f"{i}:{every}" for i in range(1, 7))  # 20**6 = 64,000,000 variants
    result = invoke("score", fitness_checkpoint, "--combinatorial", spec, "--out", tmp_path / "c.csv")
    assert_one_line_error(result, "makes 64,000,000 variants, more than --max-variants 10,000,000",
                          "pass --max-variants 64000000", exit_code=2)
    assert list(tmp_path.iterdir()) == []
    done = invoke("score", fitness_checkpoint, "--combinatorial", "1:GAV,2:NAG", "--out", tmp_path / "c.csv",
                  "--max-variants", "9")
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[0] == "scoring 9 variants of the --combinatorial library"
    assert len(pd.read_csv(tmp_path / "c.csv")) == 9


def test_score_removes_a_stale_rejects_file_and_refuses_a_library_without_a_valid_row(fitness_checkpoint,
                                                                                      tmp_path):
    out = tmp_path / "scores.csv"
    (tmp_path / "mixed.csv").write_text("mutant\nG126A\nN127J\n")
    assert invoke("score", fitness_checkpoint, tmp_path / "mixed.csv", "--out", out, "--skip-invalid").exit_code == 0
    assert len(pd.read_csv(tmp_path / "scores.rejects.csv")) == 1
    (tmp_path / "clean.csv").write_text("mutant\nG126A\nN127A\n")
    result = invoke("score", fitness_checkpoint, tmp_path / "clean.csv", "--out", out)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 2 and not (tmp_path / "scores.rejects.csv").exists()  # it described another run

    (tmp_path / "invalid.csv").write_text("mutant\nG126J\nN127B\n")
    result = invoke("score", fitness_checkpoint, tmp_path / "invalid.csv", "--out", tmp_path / "none.csv",
                    "--skip-invalid")
    assert_one_line_error(result, "none of its 2 rows could be scored", exit_code=2)
    assert not (tmp_path / "none.csv").exists() and not (tmp_path / "none.rejects.csv").exists()


# ---------------------------------------------------------------------------------------------------------
# 18. prepare warns when it keeps very long sequences


def test_prepare_warns_in_one_line_when_it_keeps_sequences_longer_than_10000_residues(tmp_path):
    df = pd.read_csv(REPO / "data" / "exthomfam_16fam.tsv", sep="\t").head(300)
    long = (df["sequence"].iloc[0] * 200)[:12_345]  # a real domain repeated: 12,345 residues
    df.loc[df.index[0], "sequence"] = long
    tsv = tmp_path / "long.tsv"
    df.to_csv(tsv, sep="\t", index=False)
    result = CliRunner().invoke(cli, ["prepare", str(tsv), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "protlc: warning: 1 sequence(s) longer than 10,000 residues kept (longest 12,345); drop or cut them with "
        "--max-length 10000 [--too-long truncate]"]
    capped = CliRunner().invoke(cli, ["prepare", str(tsv), "--out", str(tmp_path / "ds2"), "--max-length", "10000"])
    assert capped.exit_code == 0 and capped.stderr == "", capped.output


# ---------------------------------------------------------------------------------------------------------
# 19. a directory where a file is expected; an empty --loss


def test_a_directory_given_where_a_file_is_expected_says_so(dms_table, sequences_csv, fitness_checkpoint, tmp_path,
                                                            classifier_checkpoint):
    folder = tmp_path / "folder"
    folder.mkdir()
    classifier = classifier_checkpoint(tmp_path / "c.ckpt") and tmp_path / "c.ckpt"
    cases = [
        ["predict", folder, sequences_csv, "--out", tmp_path / "p.csv"],  # the checkpoint
        ["predict", classifier, folder, "--out", tmp_path / "p.csv"],
        ["score", fitness_checkpoint, folder, "--out", tmp_path / "s.csv"],  # the library
        ["score", fitness_checkpoint, "--saturation", "--wt", folder, "--out", tmp_path / "s.csv"],
        ["train-dms", folder, "--out", tmp_path / "run", "--wt", PAB1_WT],  # the table
    ]
    for args in cases:
        line = assert_one_line_error(invoke(*args), str(folder), "is a directory")
        assert "does not exist" not in line and "no such file" not in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ckpt", "folder", "seqs.csv"]


@pytest.mark.parametrize("flags", [["--loss", ""], ["--set", "loss.name="]])
def test_an_empty_loss_name_says_it_is_empty_and_lists_the_losses(dataset, tmp_path, flags):
    result = invoke("train", dataset, "--out", tmp_path / "run", *flags)
    assert_one_line_error(result, "the loss name is empty; valid losses: cce, ls, cp, bootsoft, proselflc",
                          exit_code=2)
    assert not (tmp_path / "run").exists()
