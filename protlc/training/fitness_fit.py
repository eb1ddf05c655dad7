"""Training of one fitness head of a ``train-dms`` run (a run of one head, or one candidate of
``head.additive: auto``): the model built from scratch or from a Pfam encoder, the additive term's ridge
start, Lightning's fit, the best-on-tune weights."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch

from protlc.alphabet import ALPHABET, STANDARD, STOP
from protlc.dms import splits as dms_splits
from protlc.dms.ridge import OneHotRidge
from protlc.dms.tables import sequence_matrix
from protlc.errors import CheckpointError
from protlc.model import get_preset
from protlc.model.checkpoint import load_checkpoint, read_checkpoint
from protlc.training.callbacks import ThroughputCallback
from protlc.training.datamodule import FamilyDataModule
from protlc.training.fitness import FitnessModule, check_monitor
from protlc.training.fitness_data import DmsData
from protlc.training.fitness_outputs import best_epoch
from protlc.training.run import fit, make_trainer
from protlc.training.rundir import DATA_SHA256, RecordInCheckpoint

RESUME_FIXED = ("model", "head", "dms", "split")  # what --resume must not change (check_resume_unchanged)
RESUME_FREE = ("head.ensemble",)  # ... except the final choice's setting: it trains nothing
PARTS = dms_splits.PART_NAMES
ADDITIVE_START_PREFIX = "additive_start/"
AUTO = "auto"  # head.additive: train every candidate, keep the best on tune (protlc.training.fitness_choice)
CANDIDATES = "candidates"  # RUN_DIR/candidates/<name>/: the run directory of each candidate of head.additive=auto


def _pfam_classifier(path: str | Path) -> tuple[dict, list, dict]:
    """``(model_config, labels, classifier state)`` of a Pfam classifier checkpoint, for ``--init``.

    Raises:
        CheckpointError: unreadable, or not a classifier checkpoint.
    """
    ckpt = read_checkpoint(path)
    if ckpt["protlc"].get("task") != "classify":
        raise CheckpointError(f"{path}: --init needs a family classifier checkpoint (protlc train); this one is "
                              f"{ckpt['protlc'].get('task')!r}")
    loaded = load_checkpoint(path, task="classify")  # its sizes checked against its tensors
    return dict(loaded.hparams["model_config"]), loaded.labels, loaded.model.state_dict()


def _build_module(config: dict, wild_type: str, train_scores: np.ndarray) -> FitnessModule:
    """The model to train: scratch encoder of the configured size, or the ``dms.init`` Pfam encoder."""
    dms = config["dms"]
    labels: list = []
    if dms["init"]:
        model_config, labels, classifier_state = _pfam_classifier(dms["init"])
    else:
        model_config = get_preset(config["model"]["preset"]).to_dict()
        model_config.update({k: v for k, v in config["model"].items() if k != "preset"})
    module = FitnessModule(model_config, config["head"], wild_type, dms["notation"], dms["offset"], config,
                           labels, float(train_scores.mean()), float(train_scores.std() or 1.0))
    if dms["init"]:
        module.load_pretrained(classifier_state)
    return module


def ridge_effects(model: OneHotRidge, alpha: float) -> tuple[torch.Tensor, float]:
    """A fitted ridge model as a per-position residue table (the fitness head's additive start).

    Ridge on the one-hot (with or without substitution types) is additive over substitutions, so its
    prediction for any variant is the wild type's prediction plus the effects of its substitutions,
    each read off the prediction for that single mutant.

    Returns:
        ``(effects, wild_type_score)``: effects ``(L, ALPHABET.size)`` in score units (0 for the
        wild-type residue and for letters it gives no weight), and the prediction for the wild type.
    """
    wild_type = model.wt_bytes.tobytes().decode("ascii")
    length = len(wild_type)
    letters = STANDARD + STOP
    singles = [wild_type[:p] + a + wild_type[p + 1:] for p in range(length) for a in letters]
    predicted = model.predict(sequence_matrix(singles + [wild_type], length), alpha)
    effects = torch.zeros(length, ALPHABET.size)
    effects[:, torch.from_numpy(ALPHABET.encode(letters).astype(np.int64))] = torch.from_numpy(
        (predicted[:-1] - predicted[-1]).reshape(length, len(letters))).float()
    return effects, float(predicted[-1])


@dataclass
class Fitted:
    """One trained head: the model at its best-on-tune checkpoint and what its training measured."""
    model: torch.nn.Module
    device: torch.device
    fit_seconds: float
    epochs: int
    best_epoch: int | None
    throughput: dict
    additive_start: object = None


def fit_candidate(config: dict, data: DmsData, out: Path, last: Path | None, extra_callbacks,
                  start_run_dir: Callable[[], None]) -> Fitted | None:
    """Train one head (``config["head"]["additive"]`` none, ridge or epistasis) in run directory ``out``, resuming from
    ``last`` when given; ``start_run_dir`` makes and locks ``out`` once the trainer is built.

    Returns:
        the model at its best tune checkpoint, None on DDP ranks other than zero.
    """
    stopping = config["early_stopping"]
    mode = check_monitor(stopping["monitor"])
    module = _build_module(config, data.wild_type, data.scores[data.parts["train"]])
    start = None
    kind = config["head"]["additive"]
    if kind in ("ridge", "epistasis"):  # the additive term starts at ridge + substitution types, or at the
        start = data.additive_start(kind)  # global-epistasis fit
        if last is None and kind == "ridge":
            module.start_from_additive(*ridge_effects(start.model, start.alpha))
        elif last is None:
            module.start_from_epistasis(start)
    datamodule = FamilyDataModule(data.encoded["train"], data.encoded["tune"], config["data"]["batch_size"],
                                  config["seed"], config["data"]["num_workers"], config["eval"]["batch_size"])
    throughput = ThroughputCallback()
    callbacks = [throughput, RecordInCheckpoint({DATA_SHA256: data.sha256}),
                 pl.callbacks.LearningRateMonitor(logging_interval="epoch"),
                 pl.callbacks.EarlyStopping(monitor=stopping["monitor"], mode=mode, patience=int(stopping["patience"])),
                 *extra_callbacks]
    trainer = make_trainer(config, out, callbacks, monitor=stopping["monitor"], mode=mode)
    start_run_dir()
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global RNG: seed it for this run only
        torch.manual_seed(int(config["seed"]))
        fit(trainer, module, datamodule, out, last)
    fit_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return None
    best_path = trainer.checkpoint_callback.best_model_path
    if best_path:
        module.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"])
    # Lightning hands the module back on the CPU after fit
    return Fitted(module.model, trainer.strategy.root_device, fit_seconds, trainer.current_epoch,
                  best_epoch(out, stopping["monitor"], mode), throughput.figures(), start)


def data_figures(model, data: DmsData, config: dict) -> dict:
    """Sizes and data-side times of a run for ``final_metrics.json`` (one head, or auto's chosen candidate)."""
    start_seconds = {} if data.start_seconds is None else {"time/additive_start_seconds": data.start_seconds}
    return {"time/ridge_seconds": data.ridge_seconds, **start_seconds,
            "num_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "transfer": bool(config["dms"]["init"]), "rejected_rows": len(data.frame.attrs["rejects"]),
            **{f"split/{p}": len(data.parts[p]) for p in PARTS},
            "split/tune_mode": config["split"].get("tune_mode", "random")}


def run_figures(fitted: Fitted, data: DmsData, config: dict) -> dict:
    """Times, epochs and sizes of a run of one head for ``final_metrics.json``."""
    return {**data_figures(fitted.model, data, config), "time/fit_seconds": fitted.fit_seconds,
            "epochs": fitted.epochs, "best_epoch": fitted.best_epoch,
            "time/seconds_per_epoch": fitted.fit_seconds / max(1, fitted.epochs), **fitted.throughput}
