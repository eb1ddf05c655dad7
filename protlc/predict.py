"""Streaming family prediction with an "unknown" flag, and the label audit (detect => ignore or correct).

Prediction output columns (one row per input sequence, input order kept):
``sequence_name, predicted_family, predicted_accession, probability, confidence, is_unknown,
top1_family, top1_probability, ..., topK_family, topK_probability`` where ``probability`` is the
predicted family's softmax probability and ``confidence`` is 1 - H(p)/H(u). With a homology
reference (:mod:`protlc.homology`) three more columns follow ``is_unknown``: ``homology_family`` (the
best phmmer hit's family, empty without a hit), ``homology_evalue`` and ``source`` (``homology`` when
hits support the predicted family, else ``network``).

Unknown ("know the unknown"): a sequence is flagged when its unknown score (:mod:`protlc.unknown`) is
below the threshold. The score is the one the run chose on its dev data when it was trained on a dataset
with novel families (``unknown_score`` in ``RUN_DIR/calibration.json``), else the top probability
(``max_p``; also for runs of older protlc versions); ``unknown_score`` overrides it. The default
threshold is calibrated on the dev split at the end of ``protlc train``: the 1st percentile of the dev
sequences' score, so that 99% of in-distribution sequences pass. ``unknown_score="homology"`` (with a
homology reference) is HMMER's rule instead: unknown = no phmmer hit at E <= 1e-3 (``homology_evalue``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from protlc import columns as col
from protlc.calibration import calibration_kmer, find_calibration
from protlc.data.chunks import ChunkWriter, check_not_input, iter_sequence_chunks
from protlc.data.loading import EncodedSequences
from protlc.data.store import read_labels, read_table, split_path
from protlc.errors import ConfigError
from protlc.homology import (
    DEFAULT_EVALUE,
    DEFAULT_PER_FAMILY,
    Hits,
    HomologyFusion,
    Reference,
    choose_fusion,
    homology_fusion_rule,
    reference_rows,
)
from protlc.inference import (
    autocast_for,
    check_device,
    inference_precision,
    inference_tokens,
    model_outputs,
    softmax,
)
from protlc.metrics import entropy
from protlc.model import PooledLayers
from protlc.model.checkpoint import load_checkpoint
from protlc.progress import progress_bar
from protlc.unknown import (ALL_SCORES, DEFAULT_SCORE, EVALUE_CUTOFF, HOMOLOGY, NEAREST, REFERENCE_SCORES,
                            UNKNOWN_QUANTILE, UNKNOWN_RATES, NearestReference, homology_score, nearest_reference_rows,
                            score)
from protlc.unknown import threshold as unknown_threshold_of


def prediction_frame(names, probs: np.ndarray, labels: list[dict], top_k: int, threshold: float,
                     unknown_values: np.ndarray | None = None, hits: Hits | None = None,
                     fusion: HomologyFusion | None = None, hits_decide_known: bool = True) -> pd.DataFrame:
    """Turn ``(N, C)`` probabilities (and the homology hits, fused by ``fusion``) into the prediction table
    described in the module docstring; ``unknown_values`` are the unknown scores compared with ``threshold``
    (default: the probability of the predicted family). ``hits_decide_known``: a row whose family the hits
    decided is never unknown (off for the homology rule, whose E-value cutoff alone decides)."""
    k = min(top_k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    family = np.array([lab["family_id"] for lab in labels], dtype=object)
    accession = np.array([lab.get("family_accession") for lab in labels], dtype=object)
    best = top[:, 0]
    decided = np.zeros(len(best), dtype=bool)
    if hits is not None:
        best, decided = (fusion or HomologyFusion("best-hit", DEFAULT_EVALUE)).apply(probs, hits)
    frame = {
        col.SEQUENCE_NAME: list(names),
        "predicted_family": family[best],
        "predicted_accession": accession[best],
        "probability": probs[np.arange(len(probs)), best],
        "confidence": 1.0 - entropy(probs) / np.log(probs.shape[1]),
        "is_unknown": ((probs[np.arange(len(probs)), best] if unknown_values is None else unknown_values) < threshold)
        & ~(decided & hits_decide_known),
    }
    if hits is not None:
        frame["homology_family"] = np.where(hits.label >= 0, family[np.maximum(hits.label, 0)], None)
        frame["homology_evalue"] = hits.evalue
        frame["source"] = np.where(decided, "homology", "network")
    for i in range(k):
        frame[f"top{i + 1}_family"] = family[top[:, i]]
        frame[f"top{i + 1}_probability"] = probs[np.arange(len(probs)), top[:, i]]
    return pd.DataFrame(frame)


@dataclass
class PredictSummary:
    sequences: int
    unknown: int
    threshold: float
    out: Path
    score: str = DEFAULT_SCORE
    fusion: HomologyFusion | None = None
    fusion_dev_accuracy: dict | None = None
    models: int = 1


def predict(checkpoint: str | Path, input_path: str | Path, out_path: str | Path, top_k: int = 3,
            unknown_threshold: float | None = None, batch_size: int = 256, chunk_size: int = 50_000,
            device: str = "cpu", max_length: int | None = 10_000, progress: bool | None = False,
            tokens_per_batch: int | None = None, precision: str | None = None,
            unknown_score: str | None = None, unknown_rate: float | None = None,
            homology_reference: str | Path | None = None, homology_per_family: int | None = DEFAULT_PER_FAMILY,
            homology_evalue: float | None = None, threads: int = 1, homology_fusion: str = "vote",
            homology_weight: float | None = None, homology_labels: str = "auto",
            ensemble: Sequence[str | Path] = ()) -> PredictSummary:
    """Predict families for every sequence of ``input_path`` (FASTA, CSV/TSV, Parquet) into ``out_path``.

    ``progress``: a bar on stderr (None: when stderr is a terminal, see :mod:`protlc.progress`).
    ``homology_reference``: a prepared dataset whose training split (at most ``homology_per_family`` seeded
    domains per family; None: all) is searched with phmmer (``threads`` threads) and the hits are fused with
    the network's answer by ``homology_fusion`` (:class:`HomologyFusion`; ``homology_evalue`` None: 1e-3
    for best-hit, every reported hit for vote; ``homology_weight`` None: chosen on the reference dataset's
    dev split; ``homology_labels``: the reference domains' labels, ``observed``, ``network`` (the model's
    prediction for each) or ``auto`` (chosen on dev); see :func:`calibrate_fusion`).
    ``tokens_per_batch`` and ``precision``: see :func:`protlc.inference.inference_tokens` and
    :func:`protlc.inference.inference_precision` (None: token batches on CUDA, the checkpoint's precision).
    ``unknown_score``: ``max_p``, ``entropy``, ``energy``, ``nearest``, ``nearest_kmer`` or ``homology`` (None:
    the run's calibrated choice, else max p); the nearest scores embed the training domains of the run's dataset (or
    of ``homology_reference``) that ``protlc train`` compared with (:func:`nearest_reference_sequences`);
    ``homology`` flags a sequence without a phmmer hit at E <= ``homology_evalue`` (default 1e-3) in
    ``homology_reference`` (:func:`homology_unknown_threshold`), whatever the network says.
    ``ensemble``: more classifier checkpoints over the same families; the prediction is the mean of all the
    models' probabilities (:func:`ensemble_logits`), and the unknown threshold is calibrated for that mean
    on the dev split of the first checkpoint's dataset (or of ``homology_reference``), as ``protlc train``
    calibrates one model.

    Raises:
        CheckpointError: not a classifier checkpoint. InputError: bad sequences (file + record named).
        ConfigError: bad ``top_k`` or threshold; ensemble members over other families; energy or a nearest score
            for an ensemble; a nearest score without the run's dataset; the homology score without a reference.
    """
    checkpoint = Path(checkpoint)
    check_not_input(out_path, input_path, checkpoint, *ensemble)
    if top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {top_k}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    device = check_device(device)
    tokens_per_batch = inference_tokens(device, tokens_per_batch)
    loaded = load_checkpoint(checkpoint, task="classify")
    precision = inference_precision(precision, loaded.config)
    models = [m.to(device) for m in ensemble_models(checkpoint, loaded, ensemble)]

    def outputs(module: torch.nn.Module, sequences: list[str]) -> np.ndarray:
        return model_outputs(module, EncodedSequences(sequences), batch_size, device, precision, tokens_per_batch)

    def logits_of(sequences: list[str]) -> np.ndarray:
        return ensemble_logits([outputs(m, sequences) for m in models])

    def probabilities(sequences: list[str]) -> np.ndarray:
        return softmax(logits_of(sequences))

    calibrate = None
    if len(models) > 1:
        if unknown_score == "energy":
            raise ConfigError("--unknown-score energy: the mean probability of an ensemble has no energy score; "
                              "use max_p or entropy")
        calibrate = dev_calibration(homology_reference or loaded.config.get("dataset"), logits_of)
    if unknown_score == HOMOLOGY:
        score_name, threshold = HOMOLOGY, homology_unknown_threshold(homology_reference, homology_evalue,
                                                                      unknown_threshold, unknown_rate)
    else:
        score_name, threshold = unknown_rule(checkpoint, unknown_score, unknown_threshold, calibrate, unknown_rate)
    nearest_reference = layers = None
    if score_name in REFERENCE_SCORES:
        if len(models) > 1:
            raise ConfigError(f"--unknown-score {score_name}: an ensemble has no single embedding; "
                              "use max_p or entropy")
        layers = PooledLayers(models[0].encoder)
        sequences = nearest_reference_sequences(homology_reference or loaded.config.get("dataset"), loaded.labels,
                                                score_name)
        nearest_reference = NearestReference(outputs(layers, sequences), sequences, calibration_kmer(checkpoint))
    reference = fusion = dev_accuracy = None
    if homology_reference is not None:
        fusion = homology_fusion_rule(homology_fusion, homology_evalue, homology_weight, homology_labels)
        reference = load_reference(homology_reference, loaded.labels, homology_per_family)

    if fusion is not None:
        network_labels = probabilities(reference.sequences).argmax(axis=1) if fusion.labels != "observed" else None
        if fusion.needs_dev:
            fusion, dev_accuracy = calibrate_fusion(fusion, reference, homology_reference, probabilities, threads,
                                                    network_labels)
        if fusion.labels == "network":
            reference.labels = network_labels
    n = unknown = 0
    with progress_bar(progress, desc="predict", unit="seq") as bar, ChunkWriter(out_path) as writer:
        for chunk in iter_sequence_chunks(input_path, chunk_size, max_length=max_length):
            sequences = chunk[col.SEQUENCE].tolist()
            if nearest_reference is not None:  # one encoder pass for both the logits and the nearest score
                pooled = outputs(layers, sequences)  # (N, layers, F); the last layer is the embedding
                with torch.no_grad(), autocast_for(device, precision):  # the head as in the full model's pass
                    logits = models[0].head(torch.from_numpy(pooled[:, -1]).to(device)).float().cpu().numpy()
                values = nearest_reference.scores(pooled, sequences, (score_name,))[score_name]
            else:
                logits = logits_of(sequences)
                values = None if score_name in (DEFAULT_SCORE, HOMOLOGY) else score(logits, score_name)
            hits = reference.search(sequences, threads) if reference is not None else None
            if score_name == HOMOLOGY:
                values = homology_score(hits.evalue)
            frame = prediction_frame(chunk[col.SEQUENCE_NAME], softmax(logits), loaded.labels, top_k, threshold,
                                     values, hits, fusion, hits_decide_known=score_name != HOMOLOGY)
            writer.write(frame)
            n += len(frame)
            unknown += int(frame["is_unknown"].sum())
            bar.update(len(frame))
    return PredictSummary(n, unknown, threshold, Path(out_path), score_name, fusion, dev_accuracy, len(models))


DEV_CALIBRATION_MAX = 2000


def calibrate_fusion(fusion: HomologyFusion, reference: Reference, dataset_dir, probabilities, threads: int,
                     network_labels: np.ndarray | None = None) -> tuple[HomologyFusion, dict]:
    """The fusion with its open settings (reference labels, vote weight) chosen on the reference dataset's dev
    split (at most :data:`DEV_CALIBRATION_MAX` domains, a seeded sample; dev labels are clean) by
    :func:`protlc.homology.choose_fusion`; ``probabilities(sequences)`` gives the network's ``(N, C)`` and
    ``network_labels`` its label for each reference domain.

    Raises:
        ConfigError: the dataset has no dev domains (pass ``--homology-weight`` and ``--homology-labels``).
    """
    dev = read_table(dataset_dir, "dev", [col.SEQUENCE, col.LABEL])
    if dev.num_rows == 0:
        raise ConfigError(f"--homology-reference {dataset_dir}: no dev domains to choose the fusion's settings on; "
                          "pass --homology-weight and --homology-labels observed or network")
    rows = np.sort(np.random.default_rng(0).permutation(dev.num_rows)[:DEV_CALIBRATION_MAX])
    sequences = dev.column(col.SEQUENCE).to_numpy(zero_copy_only=False)[rows].tolist()
    truth = dev.column(col.LABEL).to_numpy()[rows]
    return choose_fusion(fusion, probabilities(sequences), reference.search(sequences, threads), truth, network_labels)


def unknown_rule(checkpoint: Path, unknown_score: str | None, unknown_threshold: float | None,
                 calibrate=None, unknown_rate: float | None = None) -> tuple[str, float]:
    """``(score, threshold)`` for ``is_unknown``: the given ones, else the run's calibration (the threshold
    that flags ``unknown_rate`` of the dev sequences, default 1%), else max p with threshold 0 (nothing
    flagged; -inf for energy). ``calibrate(score, rate) -> threshold`` (an ensemble's,
    :func:`dev_calibration`) replaces the run's calibration file, and the score defaults to max p.

    Raises:
        ConfigError: an unknown score name, a rate not in :data:`~protlc.unknown.UNKNOWN_RATES` or given with a
            threshold, a max-p or entropy threshold outside [0, 1], or a score (rate) that the run's
            calibration.json has no threshold for (an older run) without ``--unknown-threshold``.
    """
    if unknown_score is not None and unknown_score not in ALL_SCORES:
        raise ConfigError(f"--unknown-score {unknown_score!r}: choose one of {', '.join(ALL_SCORES)}")
    if unknown_rate is not None and unknown_threshold is not None:
        raise ConfigError("--unknown-rate and --unknown-threshold both set the threshold; give one of them")
    if unknown_rate is not None and unknown_rate not in UNKNOWN_RATES:
        rates = ", ".join(f"{r:g}" for r in UNKNOWN_RATES)
        raise ConfigError(f"--unknown-rate {unknown_rate:g}: choose one of {rates} "
                          "(the share of known dev sequences to flag), or pass --unknown-threshold")
    rate = UNKNOWN_QUANTILE if unknown_rate is None else unknown_rate
    calibration = None if calibrate is not None else find_calibration(checkpoint, rate)
    name = unknown_score or (calibration[0] if calibration else DEFAULT_SCORE)
    threshold = unknown_threshold
    if threshold is None and calibrate is not None:
        threshold = calibrate(name, rate)
    if threshold is None and calibration is not None:
        threshold = calibration[1].get(name)
        if threshold is None:
            why = ("has no threshold for it (calibrated only when the dataset has novel families)"
                   if name in REFERENCE_SCORES
                   else f"(older protlc) has a threshold for {DEFAULT_SCORE} only")
            raise ConfigError(f"--unknown-score {name}: the run's calibration.json {why}; pass --unknown-threshold")
    if threshold is None:
        threshold = float("-inf") if name == "energy" else 0.0
    low = -1.0 if name in REFERENCE_SCORES else 0.0
    if name != "energy" and not low <= threshold <= 1.0:
        raise ConfigError(f"--unknown-threshold must be in [{low:g}, 1] for --unknown-score {name}, got {threshold}")
    return name, float(threshold)


def homology_unknown_threshold(homology_reference, homology_evalue: float | None,
                               unknown_threshold: float | None, unknown_rate: float | None) -> float:
    """The threshold on :func:`protlc.unknown.homology_score` (``-log10 E``) of ``--unknown-score homology``:
    HMMER's rule, a sequence without a phmmer hit at E <= ``homology_evalue`` (default 1e-3) is unknown.

    Raises:
        ConfigError: no ``--homology-reference`` to search, a negative E-value, or a network threshold
            (``--unknown-threshold``, ``--unknown-rate``) given with it.
    """
    if homology_reference is None:
        raise ConfigError("--unknown-score homology flags sequences without a phmmer hit in the training domains; "
                          "pass --homology-reference DATASET_DIR (the prepared dataset the model was trained on)")
    if unknown_threshold is not None or unknown_rate is not None:
        raise ConfigError("--unknown-score homology: its cutoff is an E-value, --homology-evalue [default: 1e-3]; "
                          "drop --unknown-threshold / --unknown-rate")
    cutoff = EVALUE_CUTOFF if homology_evalue is None else homology_evalue
    if not cutoff >= 0:
        raise ConfigError(f"--homology-evalue must be >= 0, got {cutoff}")
    return float(homology_score(np.array([cutoff]))[0])


def ensemble_models(checkpoint: Path, loaded, others: Sequence[str | Path]) -> list:
    """The models of ``loaded`` and of every checkpoint in ``others`` (eval mode, on the CPU).

    Raises:
        CheckpointError: one is not a classifier checkpoint. ConfigError: its families (or their order)
            differ from the first checkpoint's.
    """
    models = [loaded.model]
    families = [e["family_id"] for e in loaded.labels]
    for path in others:
        member = load_checkpoint(path, task="classify")
        if [e["family_id"] for e in member.labels] != families:
            raise ConfigError(f"--ensemble {path}: its families differ from {checkpoint}'s; an ensemble averages "
                              "models trained on the same dataset")
        models.append(member.model)
    return models


def ensemble_logits(member_logits: list[np.ndarray]) -> np.ndarray:
    """One model's ``(N, C)`` logits, or for several the log of their mean softmax probability (so that
    softmax of the result is the ensemble's mean probability; floored at 1e-30)."""
    if len(member_logits) == 1:
        return member_logits[0]
    return np.log(np.maximum(np.mean([softmax(z) for z in member_logits], axis=0), 1e-30))


def dev_calibration(dataset_dir, logits_of):
    """``calibrate(score, rate) -> threshold`` on the dev split of ``dataset_dir`` (the ``rate`` quantile of the
    dev domains' score); the dataset is only read when a threshold is asked for.

    Raises (when called):
        ConfigError: no dataset recorded, or its dev split is missing or empty.
    """
    def calibrate(name: str, rate: float = UNKNOWN_QUANTILE) -> float:
        dev_path = split_path(dataset_dir, "dev") if dataset_dir else None
        if dev_path is None or not dev_path.is_file():
            raise ConfigError(f"--ensemble: the unknown threshold is calibrated on the dev split of the first "
                              f"checkpoint's dataset ({dataset_dir or 'not recorded'}), which is not there; "
                              "pass --unknown-threshold, or --homology-reference DATASET_DIR")
        sequences = read_table(dataset_dir, "dev", [col.SEQUENCE]).column(col.SEQUENCE).to_pylist()
        if not sequences:
            raise ConfigError(f"--ensemble: {dev_path} has no domains to calibrate the unknown threshold on; "
                              "pass --unknown-threshold")
        return unknown_threshold_of(score(logits_of(sequences), name), rate)

    return calibrate


def nearest_reference_sequences(dataset_dir: str | Path | None, labels: list[dict], name: str = NEAREST) -> list[str]:
    """The training domains that the nearest unknown score compares with: the sample ``protlc train`` used
    (:func:`protlc.unknown.nearest_reference_rows` of the dataset's training split).

    Raises:
        ConfigError: no dataset recorded or given, it is not there, or its families differ from the checkpoint's.
    """
    if not dataset_dir or not split_path(dataset_dir, "train").is_file():
        raise ConfigError(f"--unknown-score {name} compares with the training domains of the run's dataset "
                          f"({dataset_dir or 'not recorded'}), which is not there; pass --homology-reference "
                          "DATASET_DIR (the prepared dataset the model was trained on), or --unknown-score max_p")
    if [e[col.FAMILY_ID] for e in read_labels(dataset_dir)] != [e["family_id"] for e in labels]:
        raise ConfigError(f"{dataset_dir}: its families differ from the checkpoint's; the {name} unknown score "
                          "needs the dataset the model was trained on")
    train = read_table(dataset_dir, "train", [col.SEQUENCE, col.LABEL])
    rows = nearest_reference_rows(train.column(col.LABEL).to_numpy())
    return train.column(col.SEQUENCE).to_numpy(zero_copy_only=False)[rows].tolist()


def load_reference(dataset_dir: str | Path, labels: list[dict], per_family: int | None) -> Reference:
    """The training split of a prepared dataset as a homology reference, labelled like the checkpoint.

    Raises:
        InputError: not a prepared dataset. ConfigError: its families differ from the checkpoint's, or
        pyhmmer is missing.
    """
    dataset_labels = read_labels(dataset_dir)
    if [e[col.FAMILY_ID] for e in dataset_labels] != [e["family_id"] for e in labels]:
        raise ConfigError(f"--homology-reference {dataset_dir}: its families differ from the checkpoint's; "
                          "give the dataset the model was trained on")
    train = read_table(dataset_dir, "train", [col.SEQUENCE, col.LABEL])
    observed = train.column(col.LABEL).to_numpy()
    rows = reference_rows(observed, per_family or None, seed=0)
    return Reference(train.column(col.SEQUENCE).to_numpy(zero_copy_only=False)[rows].tolist(), observed[rows])
