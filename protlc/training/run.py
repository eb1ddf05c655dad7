"""The run directory: resolved config, checkpoints, CSV logs, dynamics, plots and final metrics.

Layout (docs/method.md §7)::

    RUN_DIR/config.yaml              resolved config (+ dataset path)
    RUN_DIR/checkpoints/last.ckpt    every epoch; ``--resume`` continues from it
    RUN_DIR/checkpoints/best.ckpt    best dev accuracy
    RUN_DIR/metrics.csv              Lightning's CSV log (loss, accuracy, ECE, mean ε, lr)
    RUN_DIR/dynamics.csv             the six docs/method.md §4 curves every N steps (noisy datasets)
    RUN_DIR/final_metrics.json       the FINAL model on train (observed labels), dev and test (clean)
    RUN_DIR/plots/*.png
"""

from __future__ import annotations

import csv
import io
import json
import logging
import signal
import time
import warnings
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: run directories are not locked
    fcntl = None

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from protlc import columns as col
from protlc.atomic import atomic_path, atomic_write_text
from protlc.data import store
from protlc.data.loading import EncodedSequences
from protlc.training.datamodule import FamilyDataModule
from protlc.errors import CheckpointError, ConfigError, TrainingInterrupted
from protlc.losses import build_loss
from protlc.model import ProtCNNConfig, get_preset
from protlc.model.checkpoint import PROTLC_KEY, read_checkpoint
from protlc.calibration import write_calibration
from protlc.training.callbacks import DynamicsCallback, ThroughputCallback, ValidationTimer
from protlc.training.classify import ClassifierModule
from protlc.training.config import check_values, dump_config
from protlc.metrics import summarize
from protlc.inference import compile_model, predict_proba
from protlc.training import plots

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
METRICS = "metrics.csv"
FINISHED = "final_metrics.json"  # written last: its presence marks a finished run
METRICS_ROWS = "protlc_metrics_rows"  # checkpoint key: metrics.csv rows logged before the checkpoint
DATA_SHA256 = "protlc_data_sha256"  # checkpoint key: fingerprint of the data the run trains on
LOCK = ".lock"
# What a run writes before its first checkpoint (is_failed_start)
START_FILES = {"config.yaml", "hparams.yaml", METRICS, "dynamics.csv", LOCK, CHECKPOINTS, "tensorboard"}
# What defines a run's model and data: --resume refuses to change them (see check_resume_unchanged)
RESUME_FIXED = ("model", "loss", "dataset")
PATH_KEYS = ("dataset", "dms.table", "dms.init", "split.dir")


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


class RunLock:
    """An exclusive ``flock`` on ``RUN_DIR/.lock`` while a process trains into the run directory, so a
    second ``train``/``train-dms`` on it refuses instead of writing the same files. The kernel drops the
    lock when its process ends, however it ends, so a killed run never blocks the next one.

    Use as a context manager; :meth:`acquire` locks once the directory exists (again, for a new run
    directory, after creating it) and is a no-op while the lock is held.
    """

    def __init__(self, out: str | Path, enabled: bool = True):
        self.out = Path(out)
        self.enabled = enabled and fcntl is not None
        self._handle = None

    def acquire(self) -> None:
        """Raises ConfigError when another process holds the lock."""
        if not self.enabled or self._handle is not None or not self.out.is_dir():
            return
        handle = open(self.out / LOCK, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise ConfigError(f"run directory {self.out} is in use by another protlc process (it holds "
                              f"{self.out / LOCK}); wait until it ends, or choose another --out") from None
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file drops the flock
            self._handle = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def check_run_dir(out: Path, resume: bool) -> Path | None:
    last = out / CHECKPOINTS / LAST
    if resume:
        if (out / FINISHED).is_file():
            raise ConfigError(f"--resume: {out} is a finished run ({FINISHED} exists), there is nothing to resume; "
                              "start a new run with another --out")
        if not last.is_file():
            raise ConfigError(f"--resume: no {CHECKPOINTS}/{LAST} in {out}; start a new run without --resume")
        return last
    if out.exists() and not out.is_dir():
        raise ConfigError(f"run directory {out} is a file; choose another --out")
    if out.exists() and any(p.name != LOCK for p in out.iterdir()) and not is_failed_start(out):
        raise ConfigError(f"run directory {out} is not empty; use --resume to continue it or choose another --out")
    return None


def is_failed_start(out: Path) -> bool:
    """A run directory left by a run that stopped before its first checkpoint (config, logs, no
    checkpoint): there is nothing to resume, so a new run may start in it again."""
    if any(p.name not in START_FILES and not _is_partial(p) for p in out.iterdir()):
        return False
    checkpoints = out / CHECKPOINTS
    return not checkpoints.exists() or (checkpoints.is_dir() and not any(checkpoints.glob("*.ckpt")))


def _is_partial(path: Path) -> bool:
    """A temporary file of an atomic write (:func:`protlc.atomic.atomic_path`): ``.NAME.XXXX.tmp``."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file()


def lock_new_run_dir(out: Path, lock: RunLock, last: Path | None) -> None:
    """Lock the run directory just created for a new run, check again that no other run started in it
    meanwhile, and drop the logs of a start that failed before its first checkpoint (a resumed run's
    directory is locked from the start)."""
    lock.acquire()
    if last is None:
        check_run_dir(out, False)
        for stale in ("metrics.csv", "dynamics.csv", "hparams.yaml"):  # of a start that failed (is_failed_start)
            (out / stale).unlink(missing_ok=True)


def read_resume_checkpoint(last: Path, task: str) -> dict:
    """The checkpoint ``--resume`` continues from, read with the safe loader before anything in the run
    directory is touched.

    Raises:
        CheckpointError: truncated or corrupt, unsafe to load, not protlc's, made for another task, or
            without Lightning's training state.
    """
    ckpt = read_checkpoint(last)
    found = ckpt[PROTLC_KEY].get("task")
    if found != task:
        raise CheckpointError(f"{last}: --resume needs a {task!r} checkpoint, this one is {found!r}")
    if not isinstance(ckpt.get("global_step"), int) or "loops" not in ckpt:
        raise CheckpointError(f"{last}: holds no training state (global step, loops) to resume from")
    return ckpt


def check_resume_unchanged(ckpt: dict, config: dict, data_sha256: str, fixed: tuple[str, ...] = RESUME_FIXED,
                           data_key: str = "dataset") -> None:
    """Refuse to resume with another model, loss or data than the run started with.

    ``ckpt`` is the checkpoint to resume (its config and the data's fingerprint, :data:`DATA_SHA256`),
    ``config`` the resolved config of this command, ``data_sha256`` the fingerprint of its data, and
    ``fixed`` the config sections (or dotted keys) that must not change. The data at ``data_key`` is
    compared by content when the checkpoint records it (so a moved dataset resumes), else by path.

    Raises:
        ConfigError: one line naming the key, its value at the start of the run and now.
    """
    advice = "a resumed run keeps the model and data it started with: drop the change, or start a new run with another --out"
    saved_sha256 = ckpt.get(DATA_SHA256)
    if saved_sha256 is not None and saved_sha256 != data_sha256:
        raise ConfigError(f"--resume: {data_key} {_get(config, data_key)!r} is not the data the run started with "
                          f"(sha256 {saved_sha256[:12]}..., now {data_sha256[:12]}...); {advice}")
    saved = _flatten(ckpt.get("hyper_parameters", {}).get("config") or {})
    now = _flatten(config)
    for key, old in saved.items():
        if not any(key == f or key.startswith(f + ".") for f in fixed) or (key == data_key and saved_sha256):
            continue
        new = now.get(key)
        same = old == new
        if key in PATH_KEYS and isinstance(old, str) and isinstance(new, str):
            same = Path(old).resolve() == Path(new).resolve()
        if not same:
            raise ConfigError(f"--resume: {key} was {old!r} when the run started, now {new!r}; {advice}")


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _get(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


class RecordInCheckpoint(pl.Callback):
    """Puts plain values into every checkpoint (the fingerprint of the training data, for --resume)."""

    def __init__(self, values: dict):
        self.values = values

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint.update(self.values)


class _MetricsWriter(ExperimentWriter):
    """Lightning's ``metrics.csv`` writer, made safe against a kill at any point.

    Lightning's writer deletes ``metrics.csv`` when it starts and rewrites it in place when new columns
    appear. This one never deletes it (on resume it already holds exactly the rows logged before the
    checkpoint, see :func:`_start_metrics`), appends under the existing header, and rewrites the file
    through a temporary file and a rename when the header grows.
    """

    def _check_log_dir_exists(self) -> None:
        self.rows_written = 0
        path = Path(self.metrics_file_path)
        if path.is_file():
            with open(path, newline="") as fh:
                reader = csv.reader(fh)
                self.metrics_keys = [k for k in next(reader, []) if k]
                self.rows_written = sum(1 for _ in reader)

    def save(self) -> None:
        pending = len(self.metrics)
        super().save()
        self.rows_written += pending

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        _write_csv(Path(self.metrics_file_path), fieldnames, rows)


class _CSVLogger(pl.loggers.CSVLogger):
    """:class:`pytorch_lightning.loggers.CSVLogger` with :class:`_MetricsWriter`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _MetricsWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _MetricsWriter(log_dir=self.log_dir)
        return self._experiment


class _MetricsRowsInCheckpoint(pl.Callback):
    """Records in every checkpoint how many ``metrics.csv`` rows were logged before it (flushing them
    first), so that ``--resume`` keeps exactly those rows and drops the ones of the replayed part."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, _CSVLogger):
                logger.save()
                checkpoint[METRICS_ROWS] = int(logger.experiment.rows_written)


class _AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file next to the target, fsynced and renamed onto it: a full
    disk or a kill while writing leaves the previous ``last.ckpt``/``best.ckpt`` intact.

    (Lightning writes through a temporary file in the system's temp directory and moves it, which is a
    copy onto the target, truncating it first, when the run dir is on another file system.)
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(path, durable=True) as tmp:
            torch.save(checkpoint, tmp)


def _remove_partial_files(out: Path) -> None:
    """Temporary files of atomic writes (checkpoints, metrics.csv, config.yaml) that a kill interrupted
    before their rename: never a finished file (called while holding the run directory's lock)."""
    for directory in (out, out / CHECKPOINTS):
        for partial in directory.glob(".*.tmp") if directory.is_dir() else ():
            if partial.is_file():
                partial.unlink(missing_ok=True)


def _write_csv(path: Path, fieldnames: list[str], rows: list[dict]) -> None:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path, durable=True) as tmp:
        with open(tmp, "w", newline="") as fh:
            fh.write(buf.getvalue())


def _start_metrics(path: Path, last: Path | None) -> None:
    """Before Lightning starts: a new run starts without ``metrics.csv`` (one left by a start that failed
    before its first checkpoint is dropped); a resumed run keeps the rows logged before the checkpoint
    and drops those of the part that is replayed (and a row cut short by a kill), in one atomic rewrite,
    so that the earlier rows are on disk whenever the process dies.

    Kept: the rows logged before the checkpoint (it records how many, :class:`_MetricsRowsInCheckpoint`)
    and, after them, those of the checkpoint's epoch (Lightning logs the epoch's training means after
    saving). For checkpoints without that count: rows of the epochs up to the checkpoint's, and rows
    without an epoch (dynamics, lr) before its step.
    """
    if last is None:
        path.unlink(missing_ok=True)
        return
    if not path.is_file():
        return
    ckpt = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    with open(path, newline="") as fh:
        text = fh.read()
    if not text.endswith("\n"):  # a kill while a row was appended: that row belongs to the replayed part
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    step, epoch = int(ckpt["global_step"]), int(ckpt["epoch"])
    logged = ckpt.get(METRICS_ROWS)
    if isinstance(logged, int):
        rows = rows[:logged] + [row for row in rows[logged:] if row.get("epoch") and _before(row, step, epoch)]
    else:
        rows = [row for row in rows if _before(row, step, epoch)]
    _write_csv(path, [k for k in reader.fieldnames or [] if k], rows)


def _before(row: dict, step: int, epoch: int) -> bool:
    try:
        if row.get("epoch"):
            return int(float(row["epoch"])) <= epoch
        return int(float(row.get("step") or "")) < step
    except ValueError:
        return False


def fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, out: Path,
        last: Path | None) -> None:
    """``trainer.fit``, resuming from ``last`` when given (train and train-dms share it).

    Raises:
        TrainingInterrupted: Ctrl-C or SIGTERM stopped training. Lightning shuts down gracefully and then
            raises SystemExit (status 0 after SIGTERM, as if the run had finished); this turns it into
            an error that says how to continue.
    """
    if rank_zero_only.rank == 0:
        _remove_partial_files(out)
        _start_metrics(out / METRICS, last)
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
    "previous log files will be deleted" (untrue of :class:`_CSVLogger`); the same for the checkpoint dir
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
    loggers = [_CSVLogger(out, name="", version="")]
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
                   pl.callbacks.ModelCheckpoint(filename="last", monitor=None, **common), _MetricsRowsInCheckpoint()]
    try:
        return pl.Trainer(
            default_root_dir=out, max_epochs=t["max_epochs"], accelerator=t["accelerator"], devices=t["devices"],
            num_nodes=t["num_nodes"], strategy=t["strategy"], precision=t["precision"],
            accumulate_grad_batches=t["accumulate_grad_batches"], gradient_clip_val=t["gradient_clip_val"],
            log_every_n_steps=t["log_every_n_steps"], logger=loggers, callbacks=[*checkpoints, *callbacks],
            plugins=[_AtomicCheckpointIO()],
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
    metrics, probs = evaluate_final(model, splits, encoded, config)
    metrics["dev/unknown_threshold"] = write_calibration(out, probs["dev"])
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
    atomic_write_text(out / "final_metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
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
        the metrics, and each split's class probabilities ``(N, C)``.
    """
    device = next(model.parameters()).device
    precision = config["trainer"]["precision"]
    metrics: dict = {}
    all_probs = {}
    for split in col.SPLITS:
        df = splits[split]
        probs = all_probs[split] = predict_proba(model, encoded[split], config["eval"]["batch_size"], device, precision,
                                                 config["eval"]["tokens_per_batch"], config["data"]["width_multiple"])
        metrics.update(summarize(probs, df[col.LABEL].to_numpy(), split))
        if split == "train" and col.CLEAN_LABEL in df:
            clean = df[col.CLEAN_LABEL].to_numpy()
            metrics["train/accuracy_clean_labels"] = float(np.mean(probs.argmax(1) == clean))
            if col.IS_NOISY in df and df[col.IS_NOISY].any():
                noisy = df[col.IS_NOISY].to_numpy()
                metrics["train/noisy_fraction"] = float(noisy.mean())
                metrics["train/accuracy_noisy_vs_clean"] = float(np.mean(probs.argmax(1)[noisy] == clean[noisy]))
    return metrics, all_probs
