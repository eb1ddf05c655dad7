"""Batched inference shared by final evaluation, training dynamics, predict, audit and scoring."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from protlc.alphabet import PAD_INDEX
from protlc.data.loading import WIDTH_MULTIPLE, EncodedSequences, LengthBucketSampler
from protlc.errors import ConfigError

# Inference batches on a CUDA device, in padded positions (predict/audit/score --tokens-per-batch default).
GPU_INFERENCE_TOKENS = 65_536
PRECISIONS = ("auto", "32", "bf16-mixed")


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


# Graphs one compiled model may hold: a few batch-size ranges (torch specialises size 1; code generation
# adds thresholds such as the CPU's B x L <= 4096) x modes (training; evaluation under no_grad and under
# inference_mode).
RECOMPILE_LIMIT = 16


def compile_model(model: torch.nn.Module, backend: str = "inductor") -> torch.nn.Module:
    """``torch.compile`` ``model`` in place for length-bucketed batches, and return it.

    Batch size and width are symbolic (``dynamic=True``), so one graph serves every bucket shape,
    fixed-size or token-budget: compiling happens a bounded number of times per run (a few batch-size
    ranges per mode, see :data:`RECOMPILE_LIMIT`), never per width or per batch. Static shapes
    (``dynamic=False``) would compile once per width class and batch size, dozens of graphs, and fall
    back to eager past torch's recompile limit. See :func:`_conv1d_backward_keeps_widths_symbolic` for
    the one inductor setting this needs.
    """
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    if backend == "inductor":
        _conv1d_backward_keeps_widths_symbolic()
    model.compile(dynamic=True, backend=backend)
    return model


def _conv1d_backward_keeps_widths_symbolic() -> None:
    """Make inductor lower the backward of 1-D convolutions straight to ATen's kernel (idempotent).

    Inductor's own lowering of ``convolution_backward`` (torch 2.13) fixes the strides of the gradient
    layout to integers before it finds that it has no Triton template for 1-D convolutions and falls back
    to ATen's kernel anyway; fixing the strides specialises the sequence width, so a training graph would
    be compiled again for every width class. Going to the same ATen kernel directly leaves the width
    symbolic; 2-D convolutions keep inductor's lowering. On a torch without these internals nothing
    changes (training then compiles once per width class, which is still bounded).
    """
    try:
        from torch._inductor import lowering
        from torch._inductor.kernel import conv

        op = torch.ops.aten.convolution_backward.default
        original, fallback = lowering.lowerings[op], conv.aten_convolution_backward_fallback
    except (ImportError, AttributeError, KeyError):
        return
    if getattr(original, "_protlc_conv1d", False):
        return

    def lower(*args, **kwargs):
        weight = args[2] if len(args) > 2 else kwargs["weight"]
        return (fallback if len(weight.get_size()) == 3 else original)(*args, **kwargs)

    lower._protlc_conv1d = True
    lowering.lowerings[op] = lower


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked for; a no-op otherwise."""
    if device.type == "cuda" and str(precision).startswith("bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def inference_tokens(device: torch.device, tokens_per_batch: int | None) -> int | None:
    """The token budget of inference batches for ``--tokens-per-batch`` (None = not given).

    Not given: :data:`GPU_INFERENCE_TOKENS` on CUDA; on other devices None, i.e. ``--batch-size``
    sequences per batch padded to their own longest one (on a CPU every padded position costs as much
    as a residue). 0 switches the budget off.

    Raises:
        ConfigError: a negative budget.
    """
    if tokens_per_batch is None:
        return GPU_INFERENCE_TOKENS if device.type == "cuda" else None
    if tokens_per_batch < 0:
        raise ConfigError(f"--tokens-per-batch must be >= 0 (0 = --batch-size sequences per batch), got {tokens_per_batch}")
    return tokens_per_batch or None


def inference_precision(precision: str | None, checkpoint_config: dict) -> str:
    """``--precision``: ``auto`` (or None) is the precision the checkpoint was trained with (bf16 runs
    predict in bf16 on CUDA); on the CPU every precision computes in float32.

    Raises:
        ConfigError: not one of :data:`PRECISIONS`.
    """
    if precision in (None, "auto"):
        return str((checkpoint_config.get("trainer") or {}).get("precision", "32"))
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@torch.no_grad()
def model_outputs(model: torch.nn.Module, dataset: EncodedSequences, batch_size: int = 256,
                  device: torch.device | str | None = None, precision: str = "32",
                  tokens_per_batch: int | None = None, width_multiple: int | None = None) -> np.ndarray:
    """Run ``model(tokens, mask)`` over ``dataset`` in eval mode, batched by length.

    Batches hold ``batch_size`` sequences, each padded to its longest one, or with ``tokens_per_batch``
    > 0 up to that many padded positions of one width class (lengths rounded up to ``width_multiple``,
    default :data:`~protlc.data.loading.WIDTH_MULTIPLE`; see
    :class:`~protlc.data.loading.LengthBucketSampler`).
    On CUDA, tokens travel from pinned memory without blocking, the mask is made on the device and each
    batch's outputs come back while the next batch runs, so the host never waits for the device
    inside the loop.

    Returns:
        float32 array ``(N, ...)`` of outputs in the dataset's row order (logits for a classifier,
        shape ``(N,)`` for a fitness model). The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokens_per_batch = tokens_per_batch or None
    if tokens_per_batch is None:  # fixed-size batches: each padded to its own longest sequence
        width_multiple = 1
    elif width_multiple is None:
        width_multiple = WIDTH_MULTIPLE
    cuda = device.type == "cuda"
    sampler = LengthBucketSampler(dataset.lengths, batch_size, shuffle=False, tokens_per_batch=tokens_per_batch,
                                  width_multiple=width_multiple)
    was_training = model.training
    model.eval()
    out = None
    pending = None  # (rows, outputs on the host, event after their copy)

    def store(rows, host, event):
        nonlocal out
        if event is not None:
            event.synchronize()
        y = host.numpy()
        if out is None:
            out = np.empty((len(dataset),) + y.shape[1:], dtype=np.float32)
        out[rows] = y

    try:
        for rows in sampler:
            tokens = dataset.batch(rows, width_multiple)["tokens"]
            tokens = tokens.pin_memory().to(device, non_blocking=True) if cuda else tokens.to(device)
            with autocast_for(device, precision):
                y = model(tokens, tokens != PAD_INDEX).float()
            event = None
            if cuda:  # into pinned host memory, without waiting
                y = y.to("cpu", non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            else:
                y = y.cpu()
            if pending is not None:
                store(*pending)
            pending = (rows, y, event)
        if pending is not None:
            store(*pending)
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
                  precision: str = "32", tokens_per_batch: int | None = None,
                  width_multiple: int | None = None) -> np.ndarray:
    """Class probabilities ``(N, C)`` of a classifier over ``dataset`` (batching as :func:`model_outputs`)."""
    return softmax(model_outputs(model, dataset, batch_size, device, precision, tokens_per_batch, width_multiple))
