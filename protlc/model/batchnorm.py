"""Masked BatchNorm for padded protein batches: statistics over residues only, zero output at padding.

Shapes: ``B`` sequences, ``C`` channels, ``L`` padded length. Used by :mod:`protlc.model.protcnn`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


class MaskedBatchNorm1d(nn.Module):
    """BatchNorm over ``(B, C, L)`` whose statistics ignore padding; output is zero at padding.

    Training: mean and (biased) variance over the residue positions of the batch, accumulated in
    float32 in two passes: a first mean ``m0`` (the input is zero at padding, so sums over all positions
    are sums over residues), then sums of ``d = x - m0`` and ``d²`` (``d`` in ``x``'s dtype, re-zeroed at
    padding), giving ``mean = m0 + E[d]`` and ``var = E[d²] - E[d]²``. ``E[d]`` is only the rounding
    error of ``m0``, so nothing cancels even when ``|mean| / std`` is large (the one-pass
    ``E[x²] - E[x]²`` loses every digit of the variance at mean 1e4, std 1 in float32), and the output is
    ``(d - E[d]) · scale + bias``. No host sync, no branch on values. Running statistics updated with the
    unbiased variance as :class:`torch.nn.BatchNorm1d` does. Evaluation: running statistics.
    Buffer and parameter names match ``nn.BatchNorm1d``. Deliberately not a subclass, so
    ``SyncBatchNorm`` conversion leaves it alone (statistics are per-process under DDP).

    Like any BatchNorm it needs batches that look like the data: a batch holding one family only
    (strict length sorting when a length identifies a family, e.g. extHomFam's 12-residue ghf33
    repeats) is normalised away in training and misclassified in evaluation. Bucket by length inside
    random pools so families mix.
    """

    def __init__(self, num_features: int, eps: float = BN_EPS, momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` ``(C,)`` of evaluation: ``y = x * scale + shift`` with the running statistics."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Normalise ``x``.

        Args:
            x: ``(B, C, L)`` activations, any float dtype, **zero at padding**.
            mask: ``(B, 1, L)`` float32, 1 at residues, 0 at padding; None when there is no padding.
            count: scalar float32 tensor, ``mask.sum()`` (number of residue positions in the batch).

        Returns:
            ``(B, C, L)`` in ``x``'s dtype, zero at padding.
        """
        if not self.training:
            y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
            return _masked(y, mask)
        acc = torch.promote_types(x.dtype, torch.float32)
        # a constant shift (no gradient needed: mean and var below are exact for any shift)
        first = (x.detach().sum(dim=(0, 2), dtype=acc) / count).to(x.dtype)
        centred = _masked(x - first[:, None], mask)
        offset = centred.sum(dim=(0, 2), dtype=acc) / count  # E[x - first]: the rounding error of `first`
        mean = first.to(acc) + offset
        var = (centred.to(acc).square().sum(dim=(0, 2)) / count - offset.square()).clamp(min=0.0)
        with torch.no_grad():
            unbiased = var * (count / (count - 1).clamp(min=1.0))
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - offset * scale
        y = _masked(torch.addcmul(shift[:, None], centred, scale[:, None]), mask)
        return y.to(x.dtype)


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` zeroed at padding; ``mask`` None stands for a batch without padding (nothing to zero)."""
    return x if mask is None else x * mask.to(x.dtype)
