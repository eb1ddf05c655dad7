"""``head.additive: auto`` (the default of ``train-dms``): train each candidate head, keep the best on tune.

The candidates are ``none`` (the network alone), ``ridge`` (the network plus the per-position residue
table that starts at a ridge fit) and ``epistasis`` (a global-epistasis fit, the table through a learned
monotone map, with the network added on its latent scale); with ``head.kind: pooled``, which cannot hold
the table, only ``none``.
They train with the same config and seed (the same initial network weights, batch order and dropout) on
the same split, one after the other, each in its own run directory::

    RUN_DIR/candidates/<name>/config.yaml, metrics.csv, checkpoints/{best,last}.ckpt
    RUN_DIR/candidates/<name>/candidate_metrics.json   train/ and tune/ metrics of its best checkpoint,
                                                        epochs, fit time (written when it finishes)

With two or more candidates there is one more (unless ``head.ensemble: false``): ``ensemble``, a blend
sum_i w_i * prediction_i (in score units) of the trained candidates at their best checkpoints, with weights
w_i >= 0 fitted by non-negative least squares to the tune split's scores (:func:`best_blend`); candidates
whose weight is 0 are left out, and with fewer than two left there is no ensemble candidate. It trains
nothing, but a run that keeps it scores about 3-4x slower (every member runs; Pab1, three heads: 3.7x).
Why: the candidates err differently (the network alone, an additive table, a saturating latent trait), so
a blend is often better than each; why weights: a weak candidate should count less, not as much (Pab1
main split, three seeds: test Pearson 0.9403 blended, 0.9398 for the best plain mean of a subset, 0.936 for
the best candidate; weights about 0.4-0.5 network, 0.2-0.3 ridge, 0.3 epistasis). Three weights fitted on
thousands of tune variants hardly overfit, but the tune MSE the choice compares is in-sample for the
ensemble, so a tie goes to the trained candidate.

The chosen candidate is the one whose best checkpoint has the best value of the early-stopping monitor
(``early_stopping.monitor``: tune/mse by default, or tune/pearson) on the tune split; a tie keeps the
earlier candidate (the ensemble comes last). The test split plays no part in the choice: only the chosen
candidate is evaluated on it. Its checkpoints and log are copied to ``RUN_DIR/checkpoints/{best,last}.ckpt``
and ``RUN_DIR/metrics.csv`` (so ``protlc score RUN_DIR/checkpoints/best.ckpt`` works as for one head; an
ensemble's checkpoint holds every member's weights, :func:`write_ensemble_checkpoint`, and has no log), and
``RUN_DIR/final_metrics.json`` holds its metrics plus ``choice/candidates``, ``choice/chosen``,
``choice/monitor`` and ``choice/<name>/...`` (each candidate's train/ and tune/ metrics, epochs, fit
seconds). ``time/fit_seconds`` is the cost of choosing: the training time of all candidates together plus
the seconds the ensemble candidate spends scoring the tune split with each of them (a few seconds).

``--resume`` continues an interrupted auto run: finished candidates are kept (after checking that they
were trained with this model, head and data), an interrupted one resumes from its ``last.ckpt``, one that
never reached its first checkpoint starts again, and then the choice is made.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from protlc.atomic import atomic_path
from protlc.errors import CheckpointError, ConfigError
from protlc.jsonio import write_json
from protlc.model.checkpoint import PROTLC_KEY, load_checkpoint, read_checkpoint
from protlc.model.fitness import ENSEMBLE_HEADS, ENSEMBLE_WEIGHTS
from protlc.training.fitness import check_monitor
from protlc.training.fitness_data import prepare_data, write_run_config
from protlc.training.fitness_fit import (
    ADDITIVE_START_PREFIX,
    CANDIDATES,
    PARTS,
    RESUME_FIXED,
    RESUME_FREE,
    data_figures,
    fit_candidate,
)
from protlc.training.fitness_outputs import correlations, evaluate, write_run_outputs
from protlc.training.rundir import (
    CHECKPOINTS,
    DATA_SHA256,
    FINISHED,
    LAST,
    METRICS,
    RunLock,
    check_resume_unchanged,
    check_run_dir,
    lock_new_run_dir,
    read_resume_checkpoint,
)

CANDIDATE_METRICS = "candidate_metrics.json"
ENSEMBLE = "ensemble"  # the trained candidates blended with weights fitted on tune (trains nothing)
CHOICE = "choice/"
_DONE = "done"


def candidate_names(config: dict) -> tuple[str, ...]:
    """The candidates of ``head.additive: auto``, in the order that wins a tie."""
    return ("none", "ridge", "epistasis") if config["head"]["kind"] == "positional" else ("none",)


def candidate_config(config: dict, name: str) -> dict:
    candidate = copy.deepcopy(config)
    candidate["head"]["additive"] = name
    return candidate


def choose(records: dict[str, dict], monitor: str, mode: str) -> str:
    """The candidate with the best ``monitor`` (``mode`` min or max); undefined values lose, ties keep the first."""
    best, best_value = next(iter(records)), None
    for name, record in records.items():
        value = record.get(monitor)
        if value is None or not math.isfinite(value):
            continue
        if best_value is None or (value < best_value if mode == "min" else value > best_value):
            best, best_value = name, value
    return best


def train_auto(config: dict, out: Path, table, wt, resume: bool, extra_callbacks, lock: RunLock) -> dict | None:
    """Train every candidate of ``config`` (``head.additive: auto``, values checked) and finish ``out`` with
    the best on tune."""
    _check_auto_run_dir(out, resume)
    monitor = config["early_stopping"]["monitor"]
    mode = check_monitor(monitor)
    data = prepare_data(config, table, wt)
    configs = {name: candidate_config(config, name) for name in candidate_names(config)}
    states = {name: _candidate_state(out / CANDIDATES / name, cfg, data.sha256, resume) for name, cfg in configs.items()}
    top_started = []

    def start_top() -> None:
        if not top_started:
            out.mkdir(parents=True, exist_ok=True)
            if resume:
                lock.acquire()
            else:
                lock_new_run_dir(out, lock, None)
            write_run_config(out, config, data)
            top_started.append(True)

    records, device = {}, torch.device("cpu")
    rank_zero = pl.utilities.rank_zero_only.rank == 0
    for name, cfg in configs.items():
        sub = out / CANDIDATES / name
        if states[name] == _DONE:
            records[name] = json.loads((sub / CANDIDATE_METRICS).read_text())
            continue
        last = states[name]
        with RunLock(sub, enabled=rank_zero) as sub_lock:
            def start_sub() -> None:
                start_top()
                sub.mkdir(parents=True, exist_ok=True)
                lock_new_run_dir(sub, sub_lock, last)
                write_run_config(sub, cfg, data, rejects=False)

            fitted = fit_candidate(cfg, data, sub, last, extra_callbacks, start_sub)
        if fitted is None:  # another DDP rank: rank zero evaluates and chooses
            continue
        device = fitted.device
        _, record = evaluate(fitted.model, data, cfg, ("train", "tune"), device)
        record.update({"epochs": fitted.epochs, "best_epoch": fitted.best_epoch, "time/fit_seconds": fitted.fit_seconds,
                       "time/seconds_per_epoch": fitted.fit_seconds / max(1, fitted.epochs), **fitted.throughput})
        write_json(sub / CANDIDATE_METRICS, record, sort_keys=True)
        records[name] = record
    if not rank_zero:
        return None
    start_top()  # (a resumed run whose candidates had all finished)
    if len(records) > 1 and config["head"].get("ensemble", True):
        ensemble = _ensemble_record({name: _best_checkpoint(out / CANDIDATES / name) for name in records},
                                    data, config, device)
        if ensemble is not None:
            records[ENSEMBLE] = ensemble
    chosen = choose(records, monitor, mode)
    if chosen == ENSEMBLE:
        members = [_best_checkpoint(out / CANDIDATES / name) for name in records[ENSEMBLE]["members"]]
        for name in ("best.ckpt", LAST):
            write_ensemble_checkpoint(members, out / CHECKPOINTS / name, records[ENSEMBLE]["weights"])
    else:
        _install(out / CANDIDATES / chosen, out)
    model = load_checkpoint(out / CHECKPOINTS / "best.ckpt", task="fitness").model
    predictions, metrics = evaluate(model, data, config, PARTS, device)
    metrics.update(data.ridge.metrics())
    if chosen not in ("none", ENSEMBLE):  # the starting point of the chosen head (a baseline, like ridge/...)
        metrics.update(data.additive_start(chosen).metrics(ADDITIVE_START_PREFIX))
    record = records[chosen]
    metrics.update({
        **data_figures(model, data, config),
        "time/fit_seconds": sum(r["time/fit_seconds"] for r in records.values()),
        **{key: record.get(key) for key in ("epochs", "best_epoch", "time/seconds_per_epoch", "time/train_seconds",
                                            "time/train_sequences_per_second", "time/train_residues_per_second")},
        f"{CHOICE}candidates": list(records), f"{CHOICE}chosen": chosen, f"{CHOICE}monitor": monitor,
    })
    for name, r in records.items():
        metrics.update({f"{CHOICE}{name}/{key}": value for key, value in r.items()
                        if key.split("/")[0] in ("train", "tune")
                        or key in ("epochs", "best_epoch", "time/fit_seconds", "members", "weights")})
    write_run_outputs(out, data, metrics, predictions["test"])
    return metrics


def _check_auto_run_dir(out: Path, resume: bool) -> None:
    """What ``check_run_dir`` checks for a run of one head, for a run of candidates.

    Raises:
        ConfigError: a non-empty directory without --resume; with --resume a finished run, or a directory
            that holds no candidates (nothing to resume, or a run of one head).
    """
    if not resume:
        check_run_dir(out, False)
        return
    if (out / FINISHED).is_file():
        raise ConfigError(f"--resume: {out} is a finished run ({FINISHED} exists), there is nothing to resume; "
                          "start a new run with another --out")
    if not (out / CANDIDATES).is_dir():
        if (out / CHECKPOINTS / LAST).is_file():
            raise ConfigError(f"--resume: {out} holds a run of one head (no {CANDIDATES}/), now head.additive=auto; "
                              "resume it with the head.additive it started with")
        raise ConfigError(f"--resume: no {CANDIDATES}/ in {out}; start a new run without --resume")


def _candidate_state(sub: Path, config: dict, data_sha256: str, resume: bool):
    """``"done"`` (finished), the ``last.ckpt`` to resume from, or None (train from the start); a finished or
    interrupted candidate must have been trained with this config's model, head, data and split."""
    last = sub / CHECKPOINTS / LAST
    if not resume or not last.is_file():
        return None  # a candidate that never reached its first checkpoint starts again (check_run_dir allows it)
    check_resume_unchanged(read_resume_checkpoint(last, "fitness"), config, data_sha256, RESUME_FIXED,
                           data_key="dms.table", free=RESUME_FREE)
    return _DONE if (sub / CANDIDATE_METRICS).is_file() else last


def _best_checkpoint(candidate: Path) -> Path:
    """A candidate's best checkpoint (its last when it kept none: an epoch-less resume)."""
    best = candidate / CHECKPOINTS / "best.ckpt"
    return best if best.is_file() else candidate / CHECKPOINTS / LAST


def _ensemble_record(checkpoints: dict[str, Path], data, config: dict, device) -> dict | None:
    """The ensemble candidate: ``members`` and ``weights`` (:func:`best_blend` of the candidates' tune
    predictions) and the blend's tune metrics; None when fewer than two candidates get a weight."""
    started = time.perf_counter()
    tune = {name: evaluate(load_checkpoint(path, task="fitness").model, data, config, ("tune",), device)[0]["tune"]
            for name, path in checkpoints.items()}
    blend = best_blend(tune, data.scores[data.parts["tune"]])
    if blend is None:
        return None
    members, weights, record = blend
    return {**record, "members": members, "weights": weights, "time/fit_seconds": time.perf_counter() - started}


def best_blend(tune: dict[str, np.ndarray], measured: np.ndarray) -> tuple[list[str], list[float], dict] | None:
    """Non-negative least-squares weights of ``tune``'s predictions ``{name: (N,)}`` against ``measured``
    ``(N,)``: ``(members, weights, tune metrics of the blend)``, the members being the names with a weight
    above 0 (in ``tune``'s order); None when fewer than two are."""
    from scipy.optimize import nnls

    names = list(tune)
    predictions = np.stack([np.asarray(tune[n], dtype=np.float64) for n in names], axis=1)
    weights, _ = nnls(predictions, np.asarray(measured, dtype=np.float64))
    kept = [i for i, w in enumerate(weights) if w > 0]
    if len(kept) < 2:
        return None
    blended = predictions[:, kept] @ weights[kept]
    return [names[i] for i in kept], [float(weights[i]) for i in kept], correlations(blended, measured, "tune")


def write_ensemble_checkpoint(members: list[Path], target: Path, weights: list[float] | None = None) -> None:
    """One fitness checkpoint holding every member checkpoint's model (``model.members.<i>.…``) and the blend
    ``weights`` (None: the mean), loaded by :func:`protlc.model.checkpoint.load_checkpoint` as a
    :class:`protlc.model.fitness.FitnessEnsemble`; tensors and plain values only, written atomically.

    Raises:
        CheckpointError: a member is unreadable or not a fitness checkpoint.
    """
    found = [read_checkpoint(path) for path in members]
    for path, ckpt in zip(members, found):
        if ckpt[PROTLC_KEY].get("task") != "fitness":
            raise CheckpointError(f"{path}: an ensemble member must be a fitness checkpoint")
    hparams = dict(found[0]["hyper_parameters"])
    hparams[ENSEMBLE_HEADS] = [dict(ckpt["hyper_parameters"]["head"]) for ckpt in found]
    hparams.pop(ENSEMBLE_WEIGHTS, None)
    if weights is not None:
        hparams[ENSEMBLE_WEIGHTS] = [float(w) for w in weights]
    state = {f"model.members.{i}.{key[len('model.'):]}": tensor for i, ckpt in enumerate(found)
             for key, tensor in ckpt["state_dict"].items() if key.startswith("model.")}
    ensemble = {PROTLC_KEY: found[0][PROTLC_KEY], "state_dict": state, "hyper_parameters": hparams}
    if DATA_SHA256 in found[0]:
        ensemble[DATA_SHA256] = found[0][DATA_SHA256]
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, durable=True) as tmp:
        torch.save(ensemble, tmp)


def _install(candidate: Path, out: Path) -> None:
    """The chosen candidate's checkpoints and log become the run's (atomic copies)."""
    for name in ("best.ckpt", LAST):
        source = candidate / CHECKPOINTS / name
        if not source.is_file():
            source = candidate / CHECKPOINTS / LAST
        _copy(source, out / CHECKPOINTS / name)
    if (candidate / METRICS).is_file():
        _copy(candidate / METRICS, out / METRICS)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, durable=True) as tmp:
        shutil.copyfile(source, tmp)
