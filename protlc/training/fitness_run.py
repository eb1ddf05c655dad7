"""``train_dms``: one DMS fitness run, from a table to a run directory with the ridge baseline beside it.

Run directory (docs/method.md §7)::

    RUN_DIR/config.yaml                resolved config (table, wild type, notation, offset, split, sizes)
    RUN_DIR/checkpoints/{best,last}.ckpt   best by the early-stopping metric on the tune split
    RUN_DIR/metrics.csv                Lightning's CSV log (train/loss, tune/mse, tune/pearson, tune/spearman, lr)
    RUN_DIR/final_metrics.json         the best-on-tune model: test/pearson, test/spearman, tune/..., train/...,
                                       and ridge/test/pearson, ridge/test/spearman of the same split
                                       (+ additive_start/... when the head has the additive term: its starting point)
    RUN_DIR/test_predictions.csv       row, measured, predicted (head), ridge
    RUN_DIR/plots/test_scatter.png     predicted vs measured on the test split (head | ridge)
    RUN_DIR/plots/tune_curve.png       tune Pearson and MSE per epoch

With ``head.additive: auto`` (the default) the candidates train in ``RUN_DIR/candidates/<name>/`` and the
one best on the tune split becomes the run's model (:mod:`protlc.training.fitness_choice`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from protlc.alphabet import ALPHABET, STANDARD, STOP
from protlc.atomic import atomic_write_text
from protlc.data import store
from protlc.data.loading import EncodedSequences
from protlc.dms import splits as dms_splits
from protlc.dms.rejects import REJECTS_FILE, write_rejects
from protlc.dms.ridge import OneHotRidge, ridge_baseline
from protlc.dms.tables import (
    MUTATED_SEQUENCE,
    NUM_MUTATIONS,
    POSITIONS,
    SCORE,
    load_dms_table,
    sequence_matrix,
)
from protlc.errors import CheckpointError, ConfigError
from protlc.model import get_preset
from protlc.model.checkpoint import load_checkpoint, read_checkpoint
from protlc.model.fitness import ADDITIVE_KINDS, HEAD_DEFAULTS
from protlc.training.callbacks import ThroughputCallback
from protlc.training.config import COMMON_RULES, check_values, dump_config, load_config
from protlc.training.datamodule import FamilyDataModule
from protlc.training.fitness import FitnessModule, check_monitor
from protlc.training.fitness_outputs import best_epoch, evaluate, write_run_outputs
from protlc.training.run import fit, make_trainer
from protlc.training.rundir import (
    DATA_SHA256,
    RecordInCheckpoint,
    RunLock,
    check_resume_unchanged,
    check_run_dir,
    lock_new_run_dir,
    read_resume_checkpoint,
)
from protlc.validate import number, whole

SPLIT_KINDS = ("published", "random", "mutational", "positional")
RESUME_FIXED = ("model", "head", "dms", "split")  # what --resume must not change (check_resume_unchanged)
PARTS = dms_splits.PART_NAMES
ADDITIVE_START_PREFIX = "additive_start/"
AUTO = "auto"  # head.additive: train every candidate, keep the best on tune (protlc.training.fitness_choice)
CANDIDATES = "candidates"  # RUN_DIR/candidates/<name>/: the run directory of each candidate of head.additive=auto

# Defaults of a DMS run; configs/dms.yaml holds the same values with comments.
DMS_DEFAULTS: dict = {
    "seed": 0,  # training seed: initial weights, batch order, dropout
    "dms": {"table": None, "wild_type": None, "notation": "auto", "offset": None, "score_column": None,
            "mutant_column": None, "sequence_column": None, "skip_invalid": False, "init": None},
    "split": {"kind": "random", "dir": None, "seed": 0, "fractions": [0.81, 0.09, 0.10], "mutational_k": 1,
              "positional_fraction": 0.2, "tune_fraction": 0.1},
    "model": {"preset": "small", "filters": 32, "dilations": [1, 2]},
    "head": {**HEAD_DEFAULTS, "additive": AUTO},  # the model's own default stays none (old checkpoints)
    "optim": {"lr": 1e-3, "weight_decay": 0.0, "plateau_factor": 0.5, "plateau_patience": 2},
    "early_stopping": {"monitor": "tune/mse", "patience": 6},
    "data": {"batch_size": 128, "num_workers": 0},
    "trainer": {"max_epochs": 40, "accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto",
                "precision": "32", "accumulate_grad_batches": 1, "gradient_clip_val": None,
                "log_every_n_steps": 50, "progress_bar": True},
    "eval": {"batch_size": 512},
}

DMS_RULES = {
    **COMMON_RULES,
    "optim.plateau_factor": number(0, 1, low_open=True),
    "optim.plateau_patience": whole(0),
    "early_stopping.patience": whole(0),
    "head.channels": whole(1),
    "head.hidden": whole(1),
    "head.dropout": number(0, 1, high_open=True),
    "head.additive": ((lambda v: v in (AUTO, *ADDITIVE_KINDS)), f"one of {AUTO}, {', '.join(ADDITIVE_KINDS)}"),
    "split.seed": whole(0),
    "split.mutational_k": whole(1),
    "split.positional_fraction": number(0, 1, low_open=True, high_open=True),
    "split.tune_fraction": number(0, 1, low_open=True, high_open=True),
}


def load_dms_config(files=(), overrides=()) -> dict:
    """DMS defaults, then YAML files, then ``section.key=value`` overrides (see :func:`load_config`)."""
    return load_config(files, overrides, base=DMS_DEFAULTS)


class ScoredSequences(EncodedSequences):
    """:class:`EncodedSequences` whose batches also carry ``score`` ``(B,)`` float32."""

    def __init__(self, sequences, scores):
        super().__init__(sequences)
        self.scores = torch.as_tensor(np.asarray(scores, dtype=np.float32))

    def __getitem__(self, rows):
        batch = super().__getitem__(rows)
        batch["score"] = self.scores[batch["index"]]
        return batch


def make_split(frame: pd.DataFrame, split: dict) -> dms_splits.Split:
    """The split named by ``split["kind"]`` (each random kind draws only from ``split["seed"]``).

    Raises:
        ConfigError: unknown kind, published without a directory, empty part.
        InputError: bad split files.
    """
    kind = split["kind"]
    if kind == "published":
        if not split.get("dir"):
            raise ConfigError("split kind 'published' needs the directory of train.txt, tune.txt, stest.txt (--splits DIR)")
        published = dms_splits.published_split(split["dir"], frame.attrs.get("rows", len(frame)))
        return _without_rejected(published, frame.index.to_numpy(), frame.attrs.get("rows", len(frame)))
    if kind == "random":
        return dms_splits.random_split(len(frame), split["fractions"], split["seed"])
    if kind == "mutational":
        return dms_splits.mutational_split(frame[NUM_MUTATIONS].to_numpy(), int(split["mutational_k"]),
                                           split["seed"], split["tune_fraction"])
    if kind == "positional":
        return dms_splits.positional_split(frame[POSITIONS].tolist(), split["seed"], split["positional_fraction"],
                                           split["tune_fraction"])
    raise ConfigError(f"split.kind must be one of {', '.join(SPLIT_KINDS)}, got {kind!r}")


def _without_rejected(split: dms_splits.Split, kept_rows: np.ndarray, rows: int) -> dms_splits.Split:
    """A published split (input row numbers) as positions among the kept rows, rejected rows left out.

    Raises:
        ConfigError: a part is left empty.
    """
    if len(kept_rows) == rows:
        return split
    position = np.full(rows, -1, dtype=np.int64)
    position[kept_rows] = np.arange(len(kept_rows))
    parts = {name: position[rows_] for name, rows_ in split.parts().items()}
    return dms_splits.finish_split(*(p[p >= 0] for p in parts.values()), what="published split without rejected rows")


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


def resolve_dms_config(config: dict | None, table, *, notation=None, offset=None, score_column=None,
                       mutant_column=None, sequence_column=None, skip_invalid=None, splits_dir=None, split=None,
                       init=None, seed=None) -> dict:
    """A copy of ``config`` (defaults when None) with the given arguments written into it."""
    config = copy.deepcopy(config if config is not None else load_dms_config())
    given = {"notation": notation, "offset": offset, "score_column": score_column,
             "mutant_column": mutant_column, "sequence_column": sequence_column,
             "skip_invalid": None if skip_invalid is None else bool(skip_invalid),
             "init": None if init is None else str(init)}
    config["dms"].update({k: v for k, v in given.items() if v is not None})
    config["dms"]["table"] = str(table)
    if seed is not None:
        config["seed"] = int(seed)
    if splits_dir is not None:
        config["split"].update(kind="published", dir=str(splits_dir))
    elif split is not None:
        config["split"]["kind"] = split
    return config


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


def train_dms(table: str | Path, out_dir: str | Path, wt: str | Path | None = None, config: dict | None = None,
              *, notation: str | None = None, offset: int | None = None, score_column: str | None = None,
              mutant_column: str | None = None, sequence_column: str | None = None, skip_invalid: bool | None = None,
              splits_dir: str | Path | None = None, split: str | None = None,
              init: str | Path | None = None, seed: int | None = None, resume: bool = False,
              extra_callbacks: Sequence[pl.Callback] = ()) -> dict | None:
    """Train a fitness head on a DMS table and report it next to the ridge baseline of the same split.

    Keyword arguments override the matching ``config`` entries (``splits_dir`` implies the published
    split). The model evaluated in ``final_metrics.json`` is the best on the tune split.

    Returns:
        the final metrics on the global-zero process, None on other DDP ranks.

    Raises:
        InputError: unreadable table, bad mutants, bad split files.
        ConfigError: bad config, non-empty run dir (without ``resume``).
        CheckpointError: ``init`` is not a Pfam classifier checkpoint.
    """
    with RunLock(out_dir, enabled=pl.utilities.rank_zero_only.rank == 0) as lock:
        return _train_dms(table, out_dir, wt, config, notation=notation, offset=offset, score_column=score_column,
                          mutant_column=mutant_column, sequence_column=sequence_column, skip_invalid=skip_invalid,
                          splits_dir=splits_dir, split=split, init=init, seed=seed, resume=resume, extra_callbacks=extra_callbacks, lock=lock)


def _train_dms(table, out_dir, wt, config, *, notation, offset, score_column, mutant_column, sequence_column,
               skip_invalid, splits_dir, split, init, seed, resume, extra_callbacks, lock: RunLock) -> dict | None:
    config = resolve_dms_config(config, table, notation=notation, offset=offset, score_column=score_column,
                                mutant_column=mutant_column, sequence_column=sequence_column,
                                skip_invalid=skip_invalid, splits_dir=splits_dir, split=split, init=init, seed=seed)
    out = Path(out_dir)
    if config["head"].get("additive") == AUTO:
        from protlc.training.fitness_choice import train_auto

        return train_auto(config, out, table, wt, resume, extra_callbacks, lock)
    if resume and (out / CANDIDATES).is_dir():
        raise ConfigError(f"--resume: {out} was started with head.additive=auto (it holds {CANDIDATES}/), now "
                          f"{config['head'].get('additive')!r}; resume it with head.additive=auto")
    last = check_run_dir(out, resume)
    resumed = read_resume_checkpoint(last, "fitness") if last is not None else None
    check_values(config, DMS_RULES)
    check_monitor(config["early_stopping"]["monitor"])
    data = prepare_data(config, table, wt)
    if resumed is not None:
        check_resume_unchanged(resumed, config, data.sha256, RESUME_FIXED, data_key="dms.table")

    def start_run_dir() -> None:
        out.mkdir(parents=True, exist_ok=True)
        lock_new_run_dir(out, lock, last)
        write_run_config(out, config, data)

    fitted = fit_candidate(config, data, out, last, extra_callbacks, start_run_dir)
    if fitted is None:
        return None
    predictions, metrics = evaluate(fitted.model, data, config, PARTS, fitted.device)
    metrics.update(data.ridge.metrics())
    if fitted.additive_start is not None:
        metrics.update(fitted.additive_start.metrics(ADDITIVE_START_PREFIX))
    metrics.update(run_figures(fitted, data, config))
    write_run_outputs(out, data, metrics, predictions["test"])
    return metrics


@dataclass
class DmsData:
    """A DMS table read, split and encoded once per run, with its ridge baseline (shared by the candidates)."""
    frame: pd.DataFrame
    wild_type: str
    parts: dict
    sequences: np.ndarray
    scores: np.ndarray
    encoded: dict
    sha256: str
    ridge: object
    ridge_seconds: float
    _start: object = None
    start_seconds: float | None = None

    def additive_start(self):
        """The ridge fit with substitution types that ``head.additive=ridge`` starts from (fitted once)."""
        if self._start is None:
            started = time.perf_counter()
            self._start = ridge_baseline(self.wild_type, self.sequences, self.scores,
                                         dms_splits.Split(**self.parts), substitution_types=True)
            self.start_seconds = time.perf_counter() - started
        return self._start


def prepare_data(config: dict, table, wt) -> DmsData:
    """Read and split the table (filling ``config["dms"]``'s wild type, notation and offset), fit the ridge baseline."""
    dms = config["dms"]
    frame = load_dms_table(table, wt if wt is not None else dms["wild_type"], dms["notation"], dms["offset"],
                           dms["score_column"], dms["mutant_column"], sequence_column=dms["sequence_column"],
                           skip_invalid=bool(dms["skip_invalid"]))
    wild_type = frame.attrs["wild_type"]
    dms.update(wild_type=wild_type, notation=frame.attrs["notation"], offset=int(frame.attrs["offset"]))
    sha256 = store.fingerprint(table)
    parts = make_split(frame, config["split"]).parts()
    sequences = frame[MUTATED_SEQUENCE].to_numpy()
    scores = frame[SCORE].to_numpy()
    started = time.perf_counter()
    ridge = ridge_baseline(wild_type, sequences, scores, dms_splits.Split(**parts))
    ridge_seconds = time.perf_counter() - started
    encoded = {p: ScoredSequences(sequences[rows].tolist(), scores[rows]) for p, rows in parts.items()}
    return DmsData(frame, wild_type, parts, sequences, scores, encoded, sha256, ridge, ridge_seconds)


def write_run_config(out: Path, config: dict, data: DmsData, rejects: bool = True) -> None:
    atomic_write_text(out / "config.yaml", dump_config(config))
    if rejects and config["dms"]["skip_invalid"]:
        write_rejects(out / REJECTS_FILE, data.frame.attrs["rejects"])


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
    """Train one head (``config["head"]["additive"]`` none or ridge) in run directory ``out``, resuming from
    ``last`` when given; ``start_run_dir`` makes and locks ``out`` once the trainer is built.

    Returns:
        the model at its best tune checkpoint, None on DDP ranks other than zero.
    """
    stopping = config["early_stopping"]
    mode = check_monitor(stopping["monitor"])
    module = _build_module(config, data.wild_type, data.scores[data.parts["train"]])
    start = None
    if config["head"]["additive"] == "ridge":  # the additive term starts at ridge + substitution types
        start = data.additive_start()
        if last is None:
            module.start_from_additive(*ridge_effects(start.model, start.alpha))
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


def run_figures(fitted: Fitted, data: DmsData, config: dict) -> dict:
    """Times, epochs and sizes of a run for ``final_metrics.json``."""
    start_seconds = {} if data.start_seconds is None else {"time/additive_start_seconds": data.start_seconds}
    return {"time/fit_seconds": fitted.fit_seconds, "time/ridge_seconds": data.ridge_seconds, **start_seconds,
            "epochs": fitted.epochs, "best_epoch": fitted.best_epoch,
            "time/seconds_per_epoch": fitted.fit_seconds / max(1, fitted.epochs),
            "num_parameters": sum(p.numel() for p in fitted.model.parameters() if p.requires_grad),
            "transfer": bool(config["dms"]["init"]), "rejected_rows": len(data.frame.attrs["rejects"]),
            **{f"split/{p}": len(data.parts[p]) for p in PARTS}, **fitted.throughput}
