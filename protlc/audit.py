"""``protlc audit``: the training labels the trained model disputes (detect ⇒ ignore or correct).

For every training example the model's own knowledge p̂ = softmax(z / T) gives the ProSelfLC
corrected target q̃ = (1 - ε) y + ε p̂ with ε = g(Γ) · l(p̂) at the end of training (docs/method.md §1; the
run's B, τ and T when it used ProSelfLC, else B = 12, τ = 0.5, T = 1). An example is flagged when
argmax q̃ differs from its observed label; flagged rows are ranked by the model's confidence in its
suggested label (max p̂). With the dataset's noise provenance, precision and recall of the flagged set
against the injected label noise are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from protlc import columns as col
from protlc.data import store
from protlc.data.chunks import ChunkWriter, check_not_input
from protlc.data.loading import EncodedSequences
from protlc.errors import ConfigError
from protlc.losses import corrected_target, global_trust, local_trust, sharpened
from protlc.model.checkpoint import load_checkpoint
from protlc.inference import check_device, inference_precision, inference_tokens, model_outputs


@dataclass
class AuditSummary:
    examined: int
    flagged: int
    out: Path
    precision: float | None = None  # against the injected noise (when the dataset records it)
    recall: float | None = None


def disputed_labels(logits: np.ndarray, observed: np.ndarray, temperature: float = 1.0, B: float = 12.0,
                    tau: float = 0.5, trust_temperature: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Suggested label, confidence and ε of every example from the final-step corrected target.

    ε = g(Γ) · l(softmax(z / T_l)) with T_l = ``trust_temperature`` (None: ``temperature``), as in training
    (a burn-in does not change g(Γ)).

    Args:
        logits: ``(N, C)`` final-model logits; observed: ``(N,)`` observed labels.

    Returns:
        ``suggested (N,)`` = argmax q̃, ``confidence (N,)`` = max p̂, ``epsilon (N,)``.
    """
    z = torch.from_numpy(logits)
    p_hat = sharpened(z, temperature)
    p_trust = p_hat if trust_temperature is None else sharpened(z, trust_temperature)
    eps = global_trust(1, 1, B, tau) * local_trust(p_trust)
    y = torch.nn.functional.one_hot(torch.as_tensor(np.array(observed), dtype=torch.long), z.shape[1]).float()
    q = corrected_target(y, p_hat, eps)
    return q.argmax(1).numpy(), p_hat.max(1).values.numpy(), eps.numpy()


def audit(checkpoint: str | Path, out_path: str | Path, dataset_dir: str | Path | None = None,
          split: str = "train", batch_size: int = 256, device: str = "cpu", tokens_per_batch: int | None = None,
          precision: str | None = None) -> AuditSummary:
    """Write the disputed examples of ``split`` to ``out_path`` (CSV/TSV/Parquet), most confident first.

    ``tokens_per_batch`` and ``precision`` as in :func:`protlc.predict.predict`.

    Raises:
        CheckpointError: not a classifier checkpoint. InputError: dataset missing.
        ConfigError: unknown split, or the dataset's labels differ from the checkpoint's.
    """
    if split not in col.SPLITS:
        raise ConfigError(f"--split {split!r}: choose one of {', '.join(col.SPLITS)}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    device = check_device(device)
    tokens_per_batch = inference_tokens(device, tokens_per_batch)
    loaded = load_checkpoint(checkpoint, task="classify")
    precision = inference_precision(precision, loaded.config)
    dataset_dir = Path(dataset_dir or loaded.config.get("dataset") or "")
    check_not_input(out_path, checkpoint, store.split_path(dataset_dir, split))
    df = store.read_split(dataset_dir, split)
    labels = store.read_labels(dataset_dir)
    if [lab["family_id"] for lab in labels] != [lab["family_id"] for lab in loaded.labels]:
        raise ConfigError(f"{dataset_dir}: its label vocabulary differs from the checkpoint's; audit the dataset the model was trained on")
    loss = loaded.config.get("loss", {})
    params = {k: loss[k] for k in ("B", "tau", "temperature", "trust_temperature")
              if k in loss and loss.get("name", "").startswith("proselflc")}
    logits = model_outputs(loaded.model.to(device), EncodedSequences(df[col.SEQUENCE].tolist()), batch_size, device,
                           precision, tokens_per_batch)
    observed = df[col.LABEL].to_numpy()
    suggested, confidence, eps = disputed_labels(logits, observed, **params)
    flagged = np.flatnonzero(suggested != observed)
    flagged = flagged[np.argsort(-confidence[flagged], kind="stable")]
    family = np.array([lab["family_id"] for lab in labels], dtype=object)
    table = pd.DataFrame({
        col.SEQUENCE_NAME: df[col.SEQUENCE_NAME].to_numpy()[flagged],
        "observed_family": family[observed[flagged]],
        "suggested_family": family[suggested[flagged]],
        "confidence": confidence[flagged],
        "epsilon": eps[flagged],
        "row": flagged,
    })
    summary = AuditSummary(len(df), len(flagged), Path(out_path))
    if col.IS_NOISY in df and df[col.IS_NOISY].any():
        noisy = df[col.IS_NOISY].to_numpy(bool)
        table[col.IS_NOISY] = noisy[flagged]
        table["clean_family"] = family[df[col.CLEAN_LABEL].to_numpy()[flagged]]
        hits = int(noisy[flagged].sum())
        summary.precision = hits / len(flagged) if len(flagged) else float("nan")
        summary.recall = hits / int(noisy.sum())
    with ChunkWriter(out_path) as writer:
        writer.write(table)
    return summary
