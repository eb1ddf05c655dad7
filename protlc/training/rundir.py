"""A run directory that never loses data: one process at a time (a lock), resume checks made before
anything is touched, metrics rows that survive a kill, checkpoints written atomically.

Shared by ``protlc train`` (:mod:`protlc.training.run`) and ``protlc train-dms``
(:mod:`protlc.training.fitness_run`); ``tests/test_faults.py`` proves what it promises.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: run directories are not locked
    fcntl = None

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.plugins.io import TorchCheckpointIO

from protlc.atomic import atomic_path
from protlc.errors import CheckpointError, ConfigError
from protlc.model.checkpoint import PROTLC_KEY, read_checkpoint

PLOTS = "plots"
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
                           data_key: str = "dataset", free: tuple[str, ...] = ()) -> None:
    """Refuse to resume with another model, loss or data than the run started with.

    ``ckpt`` is the checkpoint to resume (its config and the data's fingerprint, :data:`DATA_SHA256`),
    ``config`` the resolved config of this command, ``data_sha256`` the fingerprint of its data, and
    ``fixed`` the config sections (or dotted keys) that must not change, except the dotted keys in ``free``.
    The data at ``data_key`` is compared by content when the checkpoint records it (so a moved dataset
    resumes), else by path.

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
        if (not any(key == f or key.startswith(f + ".") for f in fixed) or key in free
                or (key == data_key and saved_sha256)):
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


class MetricsWriter(ExperimentWriter):
    """Lightning's ``metrics.csv`` writer, made safe against a kill at any point.

    Lightning's writer deletes ``metrics.csv`` when it starts and rewrites it in place when new columns
    appear. This one never deletes it (on resume it already holds exactly the rows logged before the
    checkpoint, see :func:`start_metrics`), appends under the existing header, and rewrites the file
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


class MetricsLogger(pl.loggers.CSVLogger):
    """:class:`pytorch_lightning.loggers.CSVLogger` with :class:`MetricsWriter`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> MetricsWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = MetricsWriter(log_dir=self.log_dir)
        return self._experiment


class MetricsRowsInCheckpoint(pl.Callback):
    """Records in every checkpoint how many ``metrics.csv`` rows were logged before it (flushing them
    first), so that ``--resume`` keeps exactly those rows and drops the ones of the replayed part."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, MetricsLogger):
                logger.save()
                checkpoint[METRICS_ROWS] = int(logger.experiment.rows_written)


class AtomicCheckpointIO(TorchCheckpointIO):
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


def remove_partial_files(out: Path) -> None:
    """Temporary files of atomic writes (checkpoints, metrics.csv, config.yaml, plots) that a kill
    interrupted before their rename: never a finished file (called while holding the run directory's lock)."""
    for directory in (out, out / CHECKPOINTS, out / PLOTS):
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


def start_metrics(path: Path, last: Path | None) -> None:
    """Before Lightning starts: a new run starts without ``metrics.csv`` (one left by a start that failed
    before its first checkpoint is dropped); a resumed run keeps the rows logged before the checkpoint
    and drops those of the part that is replayed (and a row cut short by a kill), in one atomic rewrite,
    so that the earlier rows are on disk whenever the process dies.

    Kept: the rows logged before the checkpoint (it records how many, :class:`MetricsRowsInCheckpoint`)
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


