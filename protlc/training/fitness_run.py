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
from pathlib import Path
from typing import Sequence

import pytorch_lightning as pl

from protlc.dms.splits import TUNE_MODES
from protlc.errors import ConfigError
from protlc.model.fitness import ADDITIVE_KINDS, HEAD_DEFAULTS
from protlc.training.config import COMMON_RULES, check_values, load_config
from protlc.training.fitness import check_monitor
from protlc.training.fitness_choice import train_auto
from protlc.training.fitness_data import SPLIT_KINDS, ScoredSequences, make_split  # noqa: F401 (re-exported)
from protlc.training.fitness_data import prepare_data, write_run_config
from protlc.training.fitness_fit import (  # noqa: F401 (_build_module, ridge_effects: re-exported)
    ADDITIVE_START_PREFIX,
    AUTO,
    CANDIDATES,
    PARTS,
    RESUME_FIXED,
    RESUME_FREE,
    _build_module,
    fit_candidate,
    ridge_effects,
    run_figures,
)
from protlc.training.fitness_outputs import evaluate, write_run_outputs
from protlc.training.rundir import (
    RunLock,
    check_resume_unchanged,
    check_run_dir,
    lock_new_run_dir,
    read_resume_checkpoint,
)
from protlc.validate import FLAG, number, whole

# Defaults of a DMS run; configs/dms.yaml holds the same values with comments.
DMS_DEFAULTS: dict = {
    "seed": 0,  # training seed: initial weights, batch order, dropout
    "dms": {"table": None, "wild_type": None, "notation": "auto", "offset": None, "score_column": None,
            "mutant_column": None, "sequence_column": None, "skip_invalid": False, "init": None},
    "split": {"kind": "random", "dir": None, "seed": 0, "fractions": [0.81, 0.09, 0.10], "mutational_k": 1,
              "positional_fraction": 0.2, "tune_fraction": 0.1, "tune_mode": "random"},
    "model": {"preset": "small", "filters": 32, "dilations": [1, 2]},
    # the model's own default stays none (old checkpoints); ensemble: auto may keep the mean of its heads
    "head": {**HEAD_DEFAULTS, "additive": AUTO, "ensemble": True},
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
    "head.ensemble": FLAG,
    "split.seed": whole(0),
    "split.mutational_k": whole(1),
    "split.positional_fraction": number(0, 1, low_open=True, high_open=True),
    "split.tune_fraction": number(0, 1, low_open=True, high_open=True),
    "split.tune_mode": ((lambda v: v in TUNE_MODES), f"one of {', '.join(TUNE_MODES)}"),
}


def load_dms_config(files=(), overrides=()) -> dict:
    """DMS defaults, then YAML files, then ``section.key=value`` overrides (see :func:`load_config`)."""
    return load_config(files, overrides, base=DMS_DEFAULTS)


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


def train_dms(table: str | Path, out_dir: str | Path, wt: str | Path | None = None, config: dict | None = None,
              *, notation: str | None = None, offset: int | None = None, score_column: str | None = None,
              mutant_column: str | None = None, sequence_column: str | None = None, skip_invalid: bool | None = None,
              splits_dir: str | Path | None = None, split: str | None = None,
              init: str | Path | None = None, seed: int | None = None, resume: bool = False,
              extra_callbacks: Sequence[pl.Callback] = ()) -> dict | None:
    """Train a fitness head on a DMS table and report it next to the ridge baseline of the same split.

    Keyword arguments override the matching ``config`` entries (``splits_dir`` implies the published
    split). The model evaluated in ``final_metrics.json`` is the best on the tune split: the best
    checkpoint of one head, or with ``head.additive: auto`` (the default) the best checkpoint of the
    candidate head best on tune (:mod:`protlc.training.fitness_choice`).

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
        check_values(config, DMS_RULES)
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
        check_resume_unchanged(resumed, config, data.sha256, RESUME_FIXED, data_key="dms.table", free=RESUME_FREE)

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


