"""Streaming family prediction with an "unknown" flag, and the label audit (detect => ignore or correct).

Prediction output columns (one row per input sequence, input order kept):
``sequence_name, predicted_family, predicted_accession, probability, confidence, is_unknown,
top1_family, top1_probability, ..., topK_family, topK_probability`` where ``probability`` is the
predicted family's softmax probability and ``confidence`` is 1 - H(p)/H(u). With a homology
reference (:mod:`protlc.homology`) three more columns follow ``is_unknown``: ``homology_family`` (the
best phmmer hit's family, empty without a hit), ``homology_evalue`` and ``source`` (``homology`` when
that hit decided the prediction, else ``network``).

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
from protlc.data.store import read_labels, read_table
from protlc.errors import ConfigError
from protlc.homology import DEFAULT_EVALUE, DEFAULT_PER_FAMILY, Hits, Reference, fuse, reference_rows
from protlc.inference import check_device, inference_precision, inference_tokens, predict_proba
from protlc.metrics import entropy
from protlc.model.checkpoint import load_checkpoint
from protlc.progress import progress_bar

def prediction_frame(names, probs: np.ndarray, labels: list[dict], top_k: int, threshold: float,
                     hits: Hits | None = None, evalue_cutoff: float = DEFAULT_EVALUE) -> pd.DataFrame:
    """Turn ``(N, C)`` probabilities (and the best homology hits) into the prediction table described in the
    module docstring."""
    k = min(top_k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    family = np.array([lab["family_id"] for lab in labels], dtype=object)
    accession = np.array([lab.get("family_accession") for lab in labels], dtype=object)
    best = top[:, 0]
    decided = np.zeros(len(best), dtype=bool)
    if hits is not None:
        best, decided = fuse(best, hits, evalue_cutoff)
    frame = {
        col.SEQUENCE_NAME: list(names),
        "predicted_family": family[best],
        "predicted_accession": accession[best],
        "probability": probs[np.arange(len(probs)), best],
        "confidence": 1.0 - entropy(probs) / np.log(probs.shape[1]),
        "is_unknown": (probs[np.arange(len(probs)), best] < threshold) & ~decided,
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


def predict(checkpoint: str | Path, input_path: str | Path, out_path: str | Path, top_k: int = 3,
            unknown_threshold: float | None = None, batch_size: int = 256, chunk_size: int = 50_000,
            device: str = "cpu", max_length: int | None = 10_000, progress: bool | None = False,
            tokens_per_batch: int | None = None, precision: str | None = None,
            homology_reference: str | Path | None = None, homology_per_family: int | None = DEFAULT_PER_FAMILY,
            homology_evalue: float = DEFAULT_EVALUE, threads: int = 1) -> PredictSummary:
    """Predict families for every sequence of ``input_path`` (FASTA, CSV/TSV, Parquet) into ``out_path``.

    ``progress``: a bar on stderr (None: when stderr is a terminal, see :mod:`protlc.progress`).
    ``homology_reference``: a prepared dataset whose training split (at most ``homology_per_family`` seeded
    domains per family; None: all) is searched with phmmer (``threads`` threads); a best hit with an
    E-value at most ``homology_evalue`` decides the family (:func:`protlc.homology.fuse`).
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
    reference = None
    if homology_reference is not None:
        reference = load_reference(homology_reference, loaded.labels, homology_per_family)
    model = loaded.model.to(device)
    n = unknown = 0
    with progress_bar(progress, desc="predict", unit="seq") as bar, ChunkWriter(out_path) as writer:
        for chunk in iter_sequence_chunks(input_path, chunk_size, max_length=max_length):
            probs = predict_proba(model, EncodedSequences(chunk[col.SEQUENCE].tolist()), batch_size, device,
                                  precision, tokens_per_batch)
            hits = reference.search(chunk[col.SEQUENCE].tolist(), threads) if reference is not None else None
            frame = prediction_frame(chunk[col.SEQUENCE_NAME], probs, loaded.labels, top_k, threshold, hits,
                                     homology_evalue)
            writer.write(frame)
            n += len(frame)
            unknown += int(frame["is_unknown"].sum())
            bar.update(len(frame))
    return PredictSummary(n, unknown, threshold, Path(out_path))


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
