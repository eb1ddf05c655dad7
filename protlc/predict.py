"""Streaming family prediction with an "unknown" flag, and the label audit (detect => ignore or correct).

Prediction output columns (one row per input sequence, input order kept):
``sequence_name, predicted_family, predicted_accession, probability, confidence, is_unknown,
top1_family, top1_probability, ..., topK_family, topK_probability`` where ``probability`` is the
predicted family's softmax probability and ``confidence`` is 1 - H(p)/H(u).

Unknown ("know the unknown"): a sequence is flagged when its top probability is below the
threshold. The default threshold is calibrated on the dev split at the end of ``protlc train``:
the 1st percentile of the dev sequences' top probability, so that 99% of in-distribution sequences
pass (``RUN_DIR/calibration.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from protlc import columns as col
from protlc.calibration import find_calibrated_threshold
from protlc.data.chunks import ChunkWriter, check_not_input, iter_sequence_chunks
from protlc.data.loading import EncodedSequences
from protlc.errors import ConfigError
from protlc.inference import check_device, inference_precision, inference_tokens, predict_proba
from protlc.metrics import entropy
from protlc.model.checkpoint import load_checkpoint
from protlc.progress import progress_bar

def prediction_frame(names, probs: np.ndarray, labels: list[dict], top_k: int, threshold: float) -> pd.DataFrame:
    """Turn ``(N, C)`` probabilities into the prediction table described in the module docstring."""
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
        "is_unknown": probs[np.arange(len(probs)), best] < threshold,
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


def predict(checkpoint: str | Path, input_path: str | Path, out_path: str | Path, top_k: int = 3,
            unknown_threshold: float | None = None, batch_size: int = 256, chunk_size: int = 50_000,
            device: str = "cpu", max_length: int | None = 10_000, progress: bool | None = False,
            tokens_per_batch: int | None = None, precision: str | None = None) -> PredictSummary:
    """Predict families for every sequence of ``input_path`` (FASTA, CSV/TSV, Parquet) into ``out_path``.

    ``progress``: a bar on stderr (None: when stderr is a terminal, see :mod:`protlc.progress`).
    ``tokens_per_batch`` and ``precision``: see :func:`protlc.inference.inference_tokens` and
    :func:`protlc.inference.inference_precision` (None: token batches on CUDA, the checkpoint's precision).

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
    threshold = unknown_threshold if unknown_threshold is not None else find_calibrated_threshold(checkpoint)
    if threshold is None:
        threshold = 0.0
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--unknown-threshold must be in [0, 1], got {threshold}")
    model = loaded.model.to(device)
    n = unknown = 0
    with progress_bar(progress, desc="predict", unit="seq") as bar, ChunkWriter(out_path) as writer:
        for chunk in iter_sequence_chunks(input_path, chunk_size, max_length=max_length):
            probs = predict_proba(model, EncodedSequences(chunk[col.SEQUENCE].tolist()), batch_size, device,
                                  precision, tokens_per_batch)
            frame = prediction_frame(chunk[col.SEQUENCE_NAME], probs, loaded.labels, top_k, threshold)
            writer.write(frame)
            n += len(frame)
            unknown += int(frame["is_unknown"].sum())
            bar.update(len(frame))
    return PredictSummary(n, unknown, threshold, Path(out_path))
