"""Lightning callbacks: training-dynamics curves (docs/method.md §4) and throughput."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from protlc import columns as col
from protlc.atomic import atomic_write_text
from protlc.data.loading import EncodedSequences
from protlc.metrics import DYNAMICS_CURVES, training_dynamics
from protlc.inference import predict_proba

AUTO_MIN_STEPS, AUTO_POINTS = 100, 50  # dynamics.every_n_steps=auto


class DynamicsCallback(pl.Callback):
    """Every ``every_n_steps`` optimizer steps, and once more for the final model, compute the six curves on
    a fixed subsample.

    ``every_n_steps="auto"``: every 100 steps, or :data:`AUTO_POINTS` points over the whole run when that
    is sparser, so that the curves cost a bounded share of a long run.

    The subsample (at most ``max_examples`` clean and ``max_examples`` noisy training rows, and
    ``max_examples`` test rows) is drawn once from ``seed``. Rows go to ``path`` (CSV, rewritten
    atomically) and to the loggers under ``dynamics/<curve>``. Runs on global rank 0 only.
    """

    def __init__(self, path: Path, train_df: pd.DataFrame, test_df: pd.DataFrame, every_n_steps: int | str,
                 max_examples: int, seed: int, batch_size: int = 256, tokens_per_batch: int | None = None,
                 width_multiple: int | None = None):
        self.path = Path(path)
        self.every = None if every_n_steps == "auto" else max(1, int(every_n_steps))
        self.batch_size = batch_size
        self.batching = {"tokens_per_batch": tokens_per_batch, "width_multiple": width_multiple}
        self.seconds = 0.0  # spent computing and writing the curves (time/dynamics)
        rng = np.random.default_rng([seed, 17])
        noisy = train_df[col.IS_NOISY].to_numpy(bool)
        pick = np.concatenate([
            _sample(np.flatnonzero(~noisy), max_examples, rng), _sample(np.flatnonzero(noisy), max_examples, rng)])
        sub = train_df.iloc[np.sort(pick)]
        self.train = EncodedSequences(sub[col.SEQUENCE].tolist())
        self.observed = sub[col.LABEL].to_numpy()
        self.clean = sub[col.CLEAN_LABEL].to_numpy()
        self.noisy = sub[col.IS_NOISY].to_numpy(bool)
        test_sub = test_df.iloc[np.sort(_sample(np.arange(len(test_df)), max_examples, rng))]
        self.test = EncodedSequences(test_sub[col.SEQUENCE].tolist())
        self.test_labels = test_sub[col.LABEL].to_numpy()
        self.rows: list[dict] = []

    def on_train_start(self, trainer, pl_module):
        if self.every is None:
            self.every = max(AUTO_MIN_STEPS, -(-int(trainer.estimated_stepping_batches) // AUTO_POINTS))
        if self.path.is_file():  # resuming: keep what the earlier part of the run measured
            kept = pd.read_csv(self.path)
            self.rows = kept[kept["step"] <= trainer.global_step].to_dict("records")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            self._record(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        # the curves end at the model the run reports (also for runs shorter than every_n_steps)
        self._record(trainer, pl_module)

    def _record(self, trainer, pl_module):
        step = trainer.global_step
        if not trainer.is_global_zero or (self.rows and self.rows[-1]["step"] == step):
            return
        started = time.perf_counter()
        model = pl_module.model
        precision = str(trainer.precision)
        train_probs = predict_proba(model, self.train, self.batch_size, precision=precision, **self.batching)
        test_probs = predict_proba(model, self.test, self.batch_size, precision=precision, **self.batching)
        curves = training_dynamics(train_probs, self.observed, self.clean, self.noisy, test_probs, self.test_labels)
        self.rows.append({"step": step, "epoch": trainer.current_epoch, **curves})
        for logger in trainer.loggers:
            logger.log_metrics({f"dynamics/{k}": v for k, v in curves.items()}, step=step)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["step", "epoch", *DYNAMICS_CURVES])
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())
        self.seconds += time.perf_counter() - started


class ThroughputCallback(pl.Callback):
    """Training sequences/s and residues/s of this process, timed from each batch's start to its end
    (forward, backward, optimizer step; excludes data loading, validation and dynamics).
    Register it before other callbacks that work in ``on_train_batch_end``.

    Residues are summed on the batch's device (no read-back per step). On CUDA the host only queues the
    work, so these per-batch windows time the host side; ``time/fit`` of ``final_metrics.json`` is the
    wall time."""

    def __init__(self):
        self.sequences = self.residues = 0
        self.seconds = 0.0
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seconds += time.perf_counter() - self._t0
        self.sequences += len(batch["tokens"])
        self.residues = batch["mask"].sum() + self.residues  # a tensor on the batch's device

    def figures(self) -> dict[str, float | None]:
        """Seconds and rates; a rate is None when no training batch ran (e.g. a finished run resumed)."""
        s = self.seconds
        return {"time/train_seconds": s, "time/train_sequences_per_second": self.sequences / s if s else None,
                "time/train_residues_per_second": int(self.residues) / s if s else None}


class ValidationTimer(pl.Callback):
    """Wall seconds of the validation loops inside ``fit`` (the sanity check included), for
    ``time/validation``; on CUDA the device is synchronised at each loop's start and end (twice per
    validation, never per step) so that queued training work is not counted as validation."""

    def __init__(self):
        self.seconds = 0.0
        self._t0 = 0.0

    @staticmethod
    def _now(pl_module) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_validation_start(self, trainer, pl_module):
        self._t0 = self._now(pl_module)

    def on_validation_end(self, trainer, pl_module):
        self.seconds += self._now(pl_module) - self._t0


def _sample(rows: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= k else rng.choice(rows, size=k, replace=False)

