"""Batched inference shared by final evaluation, training dynamics, predict, audit and scoring."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from protlc.data.loading import EncodedSequences, LengthBucketSampler
from protlc.errors import ConfigError


def check_device(name: str, workers: int = 1) -> torch.device:
    """The torch device for ``--device NAME`` (cpu, cuda, cuda:1, mps ...), checked before any work.

    ``workers`` > 1 with CUDA needs that many GPUs (one worker each on cuda:0..workers-1).

    Raises:
        ConfigError: not a device name, or a GPU that this machine or torch build does not have.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {name!r}: not a device name (cpu, cuda, cuda:1, mps ...)") from None
    if device.type == "cuda":
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        needed = max(workers, (device.index or 0) + 1)
        if visible < needed:
            raise ConfigError(f"--device {name}: {needed} CUDA device(s) needed, {visible} visible to this torch "
                              "build; use --device cpu")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: protlc runs on cpu, cuda or mps")
    return device


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked for; a no-op otherwise."""
    if device.type == "cuda" and precision.startswith("bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def model_outputs(model: torch.nn.Module, dataset: EncodedSequences, batch_size: int = 256,
                  device: torch.device | str | None = None, precision: str = "32") -> np.ndarray:
    """Run ``model(tokens, mask)`` over ``dataset`` in eval mode, batched by length.

    Returns:
        float32 array ``(N, ...)`` of outputs in the dataset's row order (logits for a classifier,
        shape ``(N,)`` for a fitness model). The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = None
    try:
        for rows in LengthBucketSampler(dataset.lengths, batch_size, shuffle=False):
            batch = dataset[rows]
            with autocast_for(device, precision):
                y = model(batch["tokens"].to(device, non_blocking=True), batch["mask"].to(device, non_blocking=True))
            y = y.float().cpu().numpy()
            if out is None:
                out = np.empty((len(dataset),) + y.shape[1:], dtype=np.float32)
            out[rows] = y
    finally:
        model.train(was_training)
    if out is None:
        out = np.empty((0,), dtype=np.float32)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(model, dataset: EncodedSequences, batch_size: int = 256, device=None,
                  precision: str = "32") -> np.ndarray:
    """Class probabilities ``(N, C)`` of a classifier over ``dataset``."""
    return softmax(model_outputs(model, dataset, batch_size, device, precision))
