"""Streaming family prediction with an "unknown" flag, and the label audit (detect => ignore or correct).

Prediction output columns (one row per input sequence, input order kept):
``sequence_name, predicted_family, predicted_accession, probability, confidence, is_unknown,
top1_family, top1_probability, ..., topK_family, topK_probability`` where ``probability`` is the
predicted family's softmax probability and ``confidence`` is 1 - H(p)/H(u).

Unknown ("know the unknown"): a sequence is flagged when its unknown score (:mod:`protlc.unknown`) is
below the threshold. The score is the one the run chose on its dev data when it was trained on a dataset
with novel families (``unknown_score`` in ``RUN_DIR/calibration.json``), else the top probability
(``max_p``; also for runs of older protlc versions); ``unknown_score`` overrides it. The default
threshold is calibrated on the dev split at the end of ``protlc train``: the 1st percentile of the dev
sequences' score, so that 99% of in-distribution sequences pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from protlc import columns as col
from protlc.calibration import find_calibration
from protlc.data.chunks import ChunkWriter, check_not_input, iter_sequence_chunks
from protlc.data.loading import EncodedSequences
from protlc.errors import ConfigError
from protlc.inference import (
    check_device,
    inference_precision,
    inference_tokens,
    model_outputs,
    softmax,
)
from protlc.metrics import entropy
from protlc.model.checkpoint import load_checkpoint
from protlc.unknown import DEFAULT_SCORE, SCORES, score


def prediction_frame(names, probs: np.ndarray, labels: list[dict], top_k: int, threshold: float,
                     unknown_values: np.ndarray | None = None) -> pd.DataFrame:
    """Turn ``(N, C)`` probabilities into the prediction table described in the module docstring;
    ``unknown_values`` are the unknown scores compared with ``threshold`` (default: the top probability)."""
    k = min(top_k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    family = np.array([lab["family_id"] for lab in labels], dtype=object)
    accession = np.array([lab.get("family_accession") for lab in labels], dtype=object)
    best = top[:, 0]
    frame = {
        col.SEQUENCE_NAME: list(names),
        "predicted_family": family[best],
        "predicted_accession": accession[best],
        "probability": probs[np.arange(len(probs)), best],
        "confidence": 1.0 - entropy(probs) / np.log(probs.shape[1]),
        "is_unknown": (probs[np.arange(len(probs)), best] if unknown_values is None else unknown_values) < threshold,
    }
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


def predict(checkpoint: str | Path, input_path: str | Path, out_path: str | Path, top_k: int = 3,
            unknown_threshold: float | None = None, batch_size: int = 256, chunk_size: int = 50_000,
            device: str = "cpu", max_length: int | None = 10_000, progress: bool = False,
            tokens_per_batch: int | None = None, precision: str | None = None,
            unknown_score: str | None = None) -> PredictSummary:
    """Predict families for every sequence of ``input_path`` (FASTA, CSV/TSV, Parquet) into ``out_path``.

    ``tokens_per_batch`` and ``precision``: see :func:`protlc.inference.inference_tokens` and
    :func:`protlc.inference.inference_precision` (None: token batches on CUDA, the checkpoint's precision).
    ``unknown_score``: ``max_p``, ``entropy`` or ``energy`` (None: the run's calibrated choice, else max p).

    Raises:
        CheckpointError: not a classifier checkpoint. InputError: bad sequences (file + record named).
        ConfigError: bad ``top_k`` or threshold.
    """
    checkpoint = Path(checkpoint)
    check_not_input(out_path, input_path, checkpoint)
    if top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {top_k}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    device = check_device(device)
    tokens_per_batch = inference_tokens(device, tokens_per_batch)
    loaded = load_checkpoint(checkpoint, task="classify")
    precision = inference_precision(precision, loaded.config)
    score_name, threshold = unknown_rule(checkpoint, unknown_score, unknown_threshold)
    model = loaded.model.to(device)
    n = unknown = 0
    from tqdm.auto import tqdm

    bar = tqdm(desc="predict", unit="seq", disable=not progress)
    try:
        with ChunkWriter(out_path) as writer:
            for chunk in iter_sequence_chunks(input_path, chunk_size, max_length=max_length):
                logits = model_outputs(model, EncodedSequences(chunk[col.SEQUENCE].tolist()), batch_size, device,
                                       precision, tokens_per_batch)
                frame = prediction_frame(chunk[col.SEQUENCE_NAME], softmax(logits), loaded.labels, top_k, threshold,
                                         None if score_name == DEFAULT_SCORE else score(logits, score_name))
                writer.write(frame)
                n += len(frame)
                unknown += int(frame["is_unknown"].sum())
                bar.update(len(frame))
    except BaseException:  # wipe the bar (an open one is printed again at exit): the error line follows
        bar.leave = False
        bar.close()
        raise
    bar.close()
    return PredictSummary(n, unknown, threshold, Path(out_path), score_name)


def unknown_rule(checkpoint: Path, unknown_score: str | None, unknown_threshold: float | None) -> tuple[str, float]:
    """``(score, threshold)`` for ``is_unknown``: the given ones, else the run's calibration, else max p
    with threshold 0 (nothing flagged; -inf for energy).

    Raises:
        ConfigError: an unknown score name, a max-p or entropy threshold outside [0, 1], or a score that the
            run's calibration.json has no threshold for (an older run) without ``--unknown-threshold``.
    """
    if unknown_score is not None and unknown_score not in SCORES:
        raise ConfigError(f"--unknown-score {unknown_score!r}: choose one of {', '.join(SCORES)}")
    calibration = find_calibration(checkpoint)
    name = unknown_score or (calibration[0] if calibration else DEFAULT_SCORE)
    threshold = unknown_threshold
    if threshold is None and calibration is not None:
        threshold = calibration[1].get(name)
        if threshold is None:
            raise ConfigError(f"--unknown-score {name}: the run's calibration.json (older protlc) has a threshold "
                              f"for {DEFAULT_SCORE} only; pass --unknown-threshold")
    if threshold is None:
        threshold = float("-inf") if name == "energy" else 0.0
    if name != "energy" and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--unknown-threshold must be in [0, 1] for --unknown-score {name}, got {threshold}")
    return name, float(threshold)
