"""The run directory: resolved config, checkpoints, CSV logs, dynamics, plots and final metrics.

Layout (docs/method.md §7)::

    RUN_DIR/config.yaml              resolved config (+ dataset path)
    RUN_DIR/checkpoints/last.ckpt    every epoch; ``--resume`` continues from it
    RUN_DIR/checkpoints/best.ckpt    best dev accuracy
    RUN_DIR/metrics.csv              Lightning's CSV log (loss, accuracy, ECE, mean ε, lr)
    RUN_DIR/dynamics.csv             the six docs/method.md §4 curves every N steps (noisy datasets)
    RUN_DIR/final_metrics.json       the FINAL model on train (observed labels), dev and test (clean), and on
                                     the dataset's novel families when it has them (``novel/...``)
    RUN_DIR/calibration.json         the unknown score and its threshold for ``predict``
    RUN_DIR/plots/*.png
"""

from __future__ import annotations

import logging
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from protlc import columns as col
from protlc.atomic import atomic_write_text
from protlc.jsonio import write_json
from protlc.calibration import write_calibration
from protlc.data import store
from protlc.data.loading import EncodedSequences
from protlc.errors import CheckpointError, ConfigError, TrainingInterrupted
from protlc.inference import compile_model, model_outputs, softmax
from protlc.losses import build_loss
from protlc.metrics import summarize
from protlc.model import PooledLayers, ProtCNNConfig, get_preset
from protlc.training import plots
from protlc.training.callbacks import (
    DynamicsCallback,
    ThroughputCallback,
    ValidationTimer,
)
from protlc.training.classify import ClassifierModule
from protlc.training.config import check_values, dump_config
from protlc.training.datamodule import FamilyDataModule
from protlc.training.rundir import (
    CHECKPOINTS,
    DATA_SHA256,
    LAST,
    METRICS,
    AtomicCheckpointIO,
    MetricsLogger,
    MetricsRowsInCheckpoint,
    RecordInCheckpoint,
    RunLock,
    check_resume_unchanged,
    check_run_dir,
    lock_new_run_dir,
    read_resume_checkpoint,
    remove_partial_files,
    start_metrics,
)
from protlc.unknown import DEFAULT_SCORE, KMER, nearest_scores, novel_metrics


def resolve(config: dict, num_classes: int) -> dict:
    """Spell out the preset's sizes and the loss's parameters, so config.yaml says everything used."""
    config = {**config}
    model = get_preset(config["model"]["preset"]).to_dict()
    model.update({k: v for k, v in config["model"].items() if k != "preset"})
    config["model"] = {"preset": config["model"]["preset"], **ProtCNNConfig.from_dict(model).to_dict()}
    loss = config["loss"]
    params = {k: v for k, v in loss.items() if k != "name"}
    config["loss"] = {"name": loss["name"], **build_loss(loss["name"], num_classes, **params).params()}
    return config


def fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, out: Path,
        last: Path | None) -> None:
    """``trainer.fit``, resuming from ``last`` when given (train and train-dms share it).

    Raises:
        TrainingInterrupted: Ctrl-C or SIGTERM stopped training. Lightning shuts down gracefully and then
            raises SystemExit (status 0 after SIGTERM, as if the run had finished); this turns it into
            an error that says how to continue.
    """
    if rank_zero_only.rank == 0:
        remove_partial_files(out)
        start_metrics(out / METRICS, last)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=last, weights_only=True if last else None)
    except SystemExit:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores Ctrl-C from here on
        if not (out / CHECKPOINTS / LAST).is_file():
            raise TrainingInterrupted(f"{out}: training interrupted at epoch {trainer.current_epoch}, before the "
                                      "first checkpoint: rerun the same command (without --resume) to start again") from None
        raise TrainingInterrupted(
            f"{out}: training interrupted at epoch {trainer.current_epoch}; {CHECKPOINTS}/{LAST} holds the "
            "last finished epoch: rerun the same command with --resume to continue") from None
    finally:
        _close_progress_bars(trainer)


def _close_progress_bars(trainer: pl.Trainer) -> None:
    """Lightning leaves its tqdm bars open when training stops with an error or an interruption; tqdm
    would print them once more when the interpreter exits (after the error message)."""
    bar_callback = trainer.progress_bar_callback
    for name in ("_train_progress_bar", "_val_progress_bar"):
        bar = getattr(bar_callback, name, None)
        if bar is not None:
            bar.close()


class _NoAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: ... litlogger" advert from every run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud logging" not in record.getMessage()


def _silence_lightning_noise() -> None:
    """Lightning messages that mislead or distract users of every run (idempotent).

    The run dir already holds config.yaml when the loggers start, so Lightning's CSVLogger would warn that
    "previous log files will be deleted" (untrue of :class:`MetricsLogger`); the same for the checkpoint dir
    on resume. The LeafSpec notice is about torch internals; the Tip is an
    advert.
    """
    warnings.filterwarnings("ignore", message="(Experiment logs|Checkpoint) directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in log.filters):
        log.addFilter(_NoAdverts())


def make_trainer(config: dict, out: Path, callbacks: list, monitor: str = "dev/accuracy",
                 mode: str = "max") -> pl.Trainer:
    """The Trainer of a run: CSV (+ TensorBoard) logs in ``out``, ``checkpoints/{best,last}.ckpt``
    (best by ``monitor``/``mode``), settings from ``config["trainer"]``. Shared by train and train-dms."""
    t = config["trainer"]
    _silence_lightning_noise()
    loggers = [MetricsLogger(out, name="", version="")]
    try:  # TensorBoard when installed
        import tensorboard  # noqa: F401

        loggers.append(pl.loggers.TensorBoardLogger(out, name="tensorboard", version=""))
    except ImportError:
        pass
    # Two checkpoints: `best` (by `monitor`) and `last`, rewritten at the end of every epoch. (With
    # save_last=True Lightning refreshes last.ckpt only when a best checkpoint is written, which
    # would make --resume replay epochs.)
    common = dict(dirpath=out / CHECKPOINTS, save_top_k=1, auto_insert_metric_name=False,
                  enable_version_counter=False, save_on_train_epoch_end=True)
    checkpoints = [pl.callbacks.ModelCheckpoint(filename="best", monitor=monitor, mode=mode, **common),
                   pl.callbacks.ModelCheckpoint(filename="last", monitor=None, **common), MetricsRowsInCheckpoint()]
    try:
        return pl.Trainer(
            default_root_dir=out, max_epochs=t["max_epochs"], accelerator=t["accelerator"], devices=t["devices"],
            num_nodes=t["num_nodes"], strategy=t["strategy"], precision=t["precision"],
            accumulate_grad_batches=t["accumulate_grad_batches"], gradient_clip_val=t["gradient_clip_val"],
            log_every_n_steps=t["log_every_n_steps"], logger=loggers, callbacks=[*checkpoints, *callbacks],
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False, deterministic=False, enable_model_summary=False,
            enable_progress_bar=t.get("progress_bar", True),
        )
    except (ValueError, TypeError, MisconfigurationException) as exc:  # Lightning's own checks
        settings = ", ".join(f"{k} {t[k]!r}" for k in ("accelerator", "devices", "num_nodes", "strategy", "precision"))
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"trainer settings ({settings}): {first_line}") from None


def train(dataset_dir: str | Path, out_dir: str | Path, config: dict, resume: bool = False,
          extra_callbacks: list | None = None) -> dict | None:
    """Train a family classifier on a prepared dataset and evaluate the FINAL model.

    Returns:
        the final metrics (also written to ``final_metrics.json``) on the global-zero process,
        ``None`` on other DDP ranks.

    Raises:
        ConfigError: bad config, non-empty run dir without ``resume``, nothing to resume.
        InputError: ``dataset_dir`` is not a prepared dataset.
    """
    # Under DDP, Lightning re-launches this command for the other ranks; only rank 0 owns the run dir.
    with RunLock(out_dir, enabled=rank_zero_only.rank == 0) as lock:
        return _train(dataset_dir, out_dir, config, resume, extra_callbacks, lock)


def _train(dataset_dir: str | Path, out_dir: str | Path, config: dict, resume: bool, extra_callbacks: list | None,
           lock: RunLock) -> dict | None:
    entered = time.perf_counter()
    check_values(config)
    out = Path(out_dir)
    dataset_dir = Path(dataset_dir)
    is_rank_zero = rank_zero_only.rank == 0
    last = check_run_dir(out, resume) if is_rank_zero else (out / CHECKPOINTS / LAST if resume else None)
    resumed = read_resume_checkpoint(last, "classify") if last is not None and is_rank_zero else None
    splits = {s: store.read_split(dataset_dir, s) for s in col.SPLITS}
    labels = store.read_labels(dataset_dir)
    store.check_splits(dataset_dir, splits, labels)
    novel = store.read_split(dataset_dir, col.NOVEL) if store.has_novel(dataset_dir) else None
    if novel is not None:
        store.check_novel(dataset_dir, novel, labels)
    if resumed is not None and list(resumed.get("hyper_parameters", {}).get("labels", labels)) != labels:
        raise CheckpointError(f"{last}: trained on other families than {dataset_dir / store.LABELS_FILE}; "
                              "resume with the dataset the run started with")
    config = resolve(config, len(labels))
    config["dataset"] = str(dataset_dir.resolve())
    data_sha256 = store.fingerprint(*store.dataset_files(dataset_dir))
    if resumed is not None:
        check_resume_unchanged(resumed, config, data_sha256)
    model_config = {k: v for k, v in config["model"].items() if k != "preset"}

    pl.seed_everything(config["seed"], workers=True, verbose=False)

    encoded = {s: EncodedSequences(df[col.SEQUENCE].tolist(), df[col.LABEL].to_numpy()) for s, df in splits.items()}
    datamodule = FamilyDataModule(encoded["train"], encoded["dev"], config["data"]["batch_size"], config["seed"],
                                  config["data"]["num_workers"], config["eval"]["batch_size"],
                                  config["data"]["tokens_per_batch"], config["eval"]["tokens_per_batch"],
                                  config["data"]["width_multiple"])
    module = ClassifierModule(model_config, labels, config)
    if config["trainer"]["compile"]:
        compile_model(module.model)  # one graph for all bucket shapes (no recompiling per batch)

    throughput, validation = ThroughputCallback(), ValidationTimer()
    callbacks = [throughput, validation, RecordInCheckpoint({DATA_SHA256: data_sha256}), *(extra_callbacks or [])]
    train_df = splits["train"]
    dynamics = None
    if col.IS_NOISY in train_df and col.CLEAN_LABEL in train_df:
        callbacks.append(dynamics := DynamicsCallback(
            out / "dynamics.csv", train_df, splits["test"], config["dynamics"]["every_n_steps"],
            config["dynamics"]["max_examples"], seed=config["seed"], batch_size=config["eval"]["batch_size"],
            tokens_per_batch=config["eval"]["tokens_per_batch"], width_multiple=config["data"]["width_multiple"]))
    trainer = make_trainer(config, out, callbacks)  # before the run dir exists: bad settings leave nothing
    out.mkdir(parents=True, exist_ok=True)
    if is_rank_zero:
        lock_new_run_dir(out, lock, last)
        atomic_write_text(out / "config.yaml", dump_config(config))

    started = time.perf_counter()
    fit(trainer, module, datamodule, out, last)
    fit_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return None

    evaluated = time.perf_counter()
    model = module.model.to(trainer.strategy.root_device)  # Lightning hands the module back on the CPU
    metrics, logits = evaluate_final(model, splits, encoded, config)
    unknown_score, nearest = DEFAULT_SCORE, None
    if novel is not None:  # unknown-family detection: docs/method.md §4, protlc.unknown
        encoded[col.NOVEL] = EncodedSequences(novel[col.SEQUENCE].tolist())
        novel_logits = _logits(model, encoded[col.NOVEL], config)
        layers = PooledLayers(model.encoder)
        nearest = nearest_scores(lambda sequences: _logits(layers, EncodedSequences(sequences), config),
                                 splits["train"][col.SEQUENCE].tolist(), splits["train"][col.LABEL].to_numpy(),
                                 [frame[col.SEQUENCE].tolist() for frame in (splits["dev"], splits["test"], novel)])
        metrics.update(novel_metrics(logits["dev"], logits["test"], novel_logits, novel[col.FAMILY_ID].to_numpy(),
                                     config["seed"], reference_scores=nearest))
        metrics["novel/kmer"] = KMER  # nearest_kmer's k (runs without this key used 3)
        unknown_score = metrics["novel/chosen_score"]
    metrics["dev/unknown_score"] = unknown_score
    metrics["dev/unknown_threshold"] = write_calibration(out, logits["dev"], unknown_score,
                                                         None if nearest is None else
                                                         {name: values[0] for name, values in nearest.items()})
    final_seconds = time.perf_counter() - evaluated
    metrics["time/fit_seconds"] = fit_seconds
    if next(model.parameters()).is_cuda:
        metrics["gpu/peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        metrics["gpu/name"] = torch.cuda.get_device_name()
    metrics.update(throughput.figures())
    metrics["epochs"] = trainer.current_epoch
    metrics["optimizer_steps"] = trainer.global_step
    if hasattr(module.loss_fn, "emphasis_mode"):  # DM: the p(y|x) that gets the largest update
        metrics["loss/emphasis_mode"] = module.loss_fn.emphasis_mode
    plotted = time.perf_counter()
    plots.write_run_plots(out)
    metrics.update(phase_times(started - entered, fit_seconds, validation.seconds,
                               dynamics.seconds if dynamics is not None else 0.0, final_seconds,
                               time.perf_counter() - plotted, time.perf_counter() - entered))
    write_json(out / "final_metrics.json", metrics, sort_keys=True)
    return metrics


def phase_times(startup: float, fit: float, validation: float, dynamics: float, final_evaluation: float,
                plots: float, total: float) -> dict[str, float]:
    """Where a run's wall time went (seconds). ``time/startup`` (data, model, trainer), ``time/fit``
    (Lightning's fit: training steps, data loading, checkpoints, plus ``time/validation`` and
    ``time/dynamics``, which happen inside it), ``time/training`` (fit without those two),
    ``time/final_evaluation`` (final metrics and calibration on all splits), ``time/plots``;
    startup + training + validation + dynamics + final_evaluation + plots = ``time/total``, the wall
    time of the run up to writing ``final_metrics.json``."""
    return {"time/startup": startup, "time/fit": fit, "time/validation": validation, "time/dynamics": dynamics,
            "time/training": fit - validation - dynamics, "time/final_evaluation": final_evaluation,
            "time/plots": plots, "time/total": total}


def evaluate_final(model: torch.nn.Module, splits: dict, encoded: dict, config: dict
                   ) -> tuple[dict, dict[str, np.ndarray]]:
    """docs/method.md §4 metrics of the final model: train against observed labels, dev/test against clean labels.

    Returns:
        the metrics, and each split's logits ``(N, C)``.
    """
    metrics: dict = {}
    all_logits = {}
    for split in col.SPLITS:
        df = splits[split]
        all_logits[split] = _logits(model, encoded[split], config)
        probs = softmax(all_logits[split])
        metrics.update(summarize(probs, df[col.LABEL].to_numpy(), split))
        if split == "train" and col.CLEAN_LABEL in df:
            clean = df[col.CLEAN_LABEL].to_numpy()
            metrics["train/accuracy_clean_labels"] = float(np.mean(probs.argmax(1) == clean))
            if col.IS_NOISY in df and df[col.IS_NOISY].any():
                noisy = df[col.IS_NOISY].to_numpy()
                metrics["train/noisy_fraction"] = float(noisy.mean())
                metrics["train/accuracy_noisy_vs_clean"] = float(np.mean(probs.argmax(1)[noisy] == clean[noisy]))
    return metrics, all_logits


def _logits(model: torch.nn.Module, dataset: EncodedSequences, config: dict) -> np.ndarray:
    """The model's logits (the encoder's: embeddings) over ``dataset`` with the run's evaluation batching and
    precision."""
    return model_outputs(model, dataset, config["eval"]["batch_size"], next(model.parameters()).device,
                         config["trainer"]["precision"], config["eval"]["tokens_per_batch"],
                         config["data"]["width_multiple"])
