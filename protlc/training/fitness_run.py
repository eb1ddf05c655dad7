"""``train_dms``: one DMS fitness run, from a table to a run directory with the ridge baseline beside it.

Run directory (docs/method.md §7)::

    RUN_DIR/config.yaml                resolved config (table, wild type, notation, offset, split, sizes)
    RUN_DIR/checkpoints/{best,last}.ckpt   best by the early-stopping metric on the tune split
    RUN_DIR/metrics.csv                Lightning's CSV log (train/loss, tune/mse, tune/pearson, tune/spearman, lr)
    RUN_DIR/final_metrics.json         the best-on-tune model: test/pearson, test/spearman, tune/..., train/...,
                                       and ridge/test/pearson, ridge/test/spearman of the same split
                                       (+ additive_start/... with head.additive=ridge: the head's starting point)
    RUN_DIR/test_predictions.csv       row, measured, predicted (head), ridge
    RUN_DIR/plots/test_scatter.png     predicted vs measured on the test split (head | ridge)
    RUN_DIR/plots/tune_curve.png       tune Pearson and MSE per epoch
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from protlc.alphabet import ALPHABET, STANDARD, STOP
from protlc.atomic import atomic_path, atomic_write_text
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
from protlc.inference import model_outputs
from protlc.jsonio import write_json
from protlc.metrics import correlation
from protlc.model import get_preset
from protlc.model.checkpoint import load_checkpoint, read_checkpoint
from protlc.model.fitness import HEAD_DEFAULTS
from protlc.training.callbacks import ThroughputCallback
from protlc.training.config import COMMON_RULES, check_values, dump_config, load_config
from protlc.training.datamodule import FamilyDataModule
from protlc.training.fitness import FitnessModule, check_monitor
from protlc.training.plots import save_figure
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

# Defaults of a DMS run; configs/dms.yaml holds the same values with comments.
DMS_DEFAULTS: dict = {
    "seed": 0,  # training seed: initial weights, batch order, dropout
    "dms": {"table": None, "wild_type": None, "notation": "auto", "offset": None, "score_column": None,
            "mutant_column": None, "sequence_column": None, "skip_invalid": False, "init": None},
    "split": {"kind": "random", "dir": None, "seed": 0, "fractions": [0.81, 0.09, 0.10], "mutational_k": 1,
              "positional_fraction": 0.2, "tune_fraction": 0.1},
    "model": {"preset": "small", "filters": 32, "dilations": [1, 2]},
    "head": dict(HEAD_DEFAULTS),
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


def _correlations(predicted: np.ndarray, measured: np.ndarray, part: str) -> dict[str, float | None]:
    """Pearson and Spearman (None where undefined, e.g. a constant prediction) and the MSE of one part."""
    predicted, measured = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    return {f"{part}/pearson": correlation(predicted, measured),
            f"{part}/spearman": correlation(predicted, measured, "spearman"),
            f"{part}/mse": float(np.mean((predicted - measured) ** 2)) if len(measured) else None}


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
    last = check_run_dir(out, resume)
    resumed = read_resume_checkpoint(last, "fitness") if last is not None else None
    check_values(config, DMS_RULES)
    stopping = config["early_stopping"]
    mode = check_monitor(stopping["monitor"])
    dms = config["dms"]
    frame = load_dms_table(table, wt if wt is not None else dms["wild_type"], dms["notation"], dms["offset"],
                           dms["score_column"], dms["mutant_column"], sequence_column=dms["sequence_column"],
                           skip_invalid=bool(dms["skip_invalid"]))
    wild_type = frame.attrs["wild_type"]
    dms.update(wild_type=wild_type, notation=frame.attrs["notation"], offset=int(frame.attrs["offset"]))
    data_sha256 = store.fingerprint(table)
    if resumed is not None:
        check_resume_unchanged(resumed, config, data_sha256, RESUME_FIXED, data_key="dms.table")
    parts = make_split(frame, config["split"]).parts()
    sequences = frame[MUTATED_SEQUENCE].to_numpy()
    scores = frame[SCORE].to_numpy()
    module = _build_module(config, wild_type, scores[parts["train"]])
    started_ridge = time.perf_counter()
    split_parts = dms_splits.Split(**parts)
    ridge = ridge_baseline(wild_type, sequences, scores, split_parts)
    ridge_seconds = time.perf_counter() - started_ridge
    start, start_seconds = None, {}
    if config["head"]["additive"] == "ridge":  # the additive term starts at ridge + substitution types
        started_start = time.perf_counter()
        start = ridge_baseline(wild_type, sequences, scores, split_parts, substitution_types=True)
        start_seconds = {"time/additive_start_seconds": time.perf_counter() - started_start}
        if last is None:
            module.start_from_additive(*ridge_effects(start.model, start.alpha))

    encoded = {p: ScoredSequences(sequences[rows].tolist(), scores[rows]) for p, rows in parts.items()}
    datamodule = FamilyDataModule(encoded["train"], encoded["tune"], config["data"]["batch_size"], config["seed"],
                                  config["data"]["num_workers"], config["eval"]["batch_size"])
    throughput = ThroughputCallback()
    callbacks = [throughput, RecordInCheckpoint({DATA_SHA256: data_sha256}),
                 pl.callbacks.LearningRateMonitor(logging_interval="epoch"),
                 pl.callbacks.EarlyStopping(monitor=stopping["monitor"], mode=mode, patience=int(stopping["patience"])), *extra_callbacks]
    trainer = make_trainer(config, out, callbacks, monitor=stopping["monitor"], mode=mode)
    out.mkdir(parents=True, exist_ok=True)
    lock_new_run_dir(out, lock, last)
    atomic_write_text(out / "config.yaml", dump_config(config))
    if dms["skip_invalid"]:
        write_rejects(out / REJECTS_FILE, frame.attrs["rejects"])
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
    device = trainer.strategy.root_device  # Lightning hands the module back on the CPU after fit
    model = module.model.to(device)
    predictions = {p: model_outputs(model, encoded[p], config["eval"]["batch_size"], device,
                                    config["trainer"]["precision"]) for p in PARTS}
    metrics: dict = {}
    for p in PARTS:
        metrics.update(_correlations(predictions[p], scores[parts[p]], p))
    metrics.update(ridge.metrics())
    if start is not None:
        metrics.update(start.metrics(ADDITIVE_START_PREFIX))
    epochs = trainer.current_epoch
    metrics.update({
        "time/fit_seconds": fit_seconds, "time/ridge_seconds": ridge_seconds, **start_seconds,
        "epochs": epochs, "best_epoch": _best_epoch(out, stopping["monitor"], mode),
        "time/seconds_per_epoch": fit_seconds / max(1, epochs),
        "num_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "transfer": bool(dms["init"]), "rejected_rows": len(frame.attrs["rejects"]), **{f"split/{p}": len(parts[p]) for p in PARTS}, **throughput.figures(),
    })
    write_json(out / "final_metrics.json", metrics, sort_keys=True)
    test = pd.DataFrame({"row": frame.index.to_numpy()[parts["test"]], "measured": scores[parts["test"]],
                         "predicted": predictions["test"], "ridge": ridge.test_predictions})
    with atomic_path(out / "test_predictions.csv") as tmp:
        test.to_csv(tmp, index=False)
    write_fitness_plots(out, test, metrics)
    return metrics


def _best_epoch(out: Path, monitor: str, mode: str) -> int | None:
    """0-based epoch of the best tune metric in ``metrics.csv`` (None when there is none)."""
    path = out / "metrics.csv"
    if not path.is_file():
        return None
    log = pd.read_csv(path)
    if monitor not in log:
        return None
    rows = log.dropna(subset=[monitor])
    best = rows[monitor].idxmin() if mode == "min" else rows[monitor].idxmax()
    return int(rows.loc[best, "epoch"])


def _figure(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def write_fitness_plots(out: Path, test: pd.DataFrame, metrics: dict) -> None:
    """``plots/test_scatter.png`` (head and ridge vs measured) and ``plots/tune_curve.png``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True)
    for ax, column, name, key in ((axes[0], "predicted", "fitness head", "test"),
                                  (axes[1], "ridge", "ridge (one-hot)", "ridge/test")):
        ax.scatter(test["measured"], test[column], s=3, alpha=0.35, linewidths=0)
        low, high = test["measured"].min(), test["measured"].max()
        ax.plot([low, high], [low, high], color="grey", lw=0.8)
        ax.set_title(f"{name}: Pearson {_figure(metrics[key + '/pearson'])}, "
                     f"Spearman {_figure(metrics[key + '/spearman'])}", fontsize=9)
        ax.set_xlabel("measured score (test split)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("predicted score")
    fig.tight_layout()
    save_figure(fig, out / "plots" / "test_scatter.png")

    log_path = out / "metrics.csv"
    if log_path.is_file():
        log = pd.read_csv(log_path)
        if "tune/pearson" in log:
            rows = log.dropna(subset=["tune/pearson"])
            fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
            for ax, column in zip(axes, ("tune/pearson", "tune/mse")):
                ax.plot(rows["epoch"], rows[column], marker="o", ms=3)
                ax.set_title(column, fontsize=10)
                ax.set_xlabel("epoch")
                ax.grid(alpha=0.3)
            fig.tight_layout()
            save_figure(fig, out / "plots" / "tune_curve.png")
