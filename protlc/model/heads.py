"""Task heads on top of the pooled ProtCNN embedding, and generator-driven weight initialisation.

Both heads take the encoder's pooled features ``(B, F)``. Every trainable layer of the model package is
(re)initialised through :func:`init_parameters_` so that one explicit :class:`torch.Generator` fixes
the whole initial state (the global RNG is never read for it).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def init_parameters_(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw every Conv1d/Linear weight and bias of ``module`` in place from ``generator``.

    Uses PyTorch's default scheme (Kaiming-uniform with ``a = sqrt(5)`` for weights, uniform
    ``±1/sqrt(fan_in)`` for biases), so the distribution is the familiar one; only the source of
    randomness changes. Other parameters (BatchNorm affine) are left to their own deterministic resets.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                fan_in = layer.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


class ClassificationHead(nn.Module):
    """Linear map from pooled features to class logits.

    Args:
        in_features: F, width of the pooled embedding.
        num_classes: C, number of families.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` ``(B, F)`` -> logits ``(B, C)``."""
        return self.linear(features)


class FitnessHead(nn.Module):
    """Small MLP from pooled features to one fitness score per sequence.

    Args:
        in_features: F, width of the pooled embedding.
        hidden: width of the hidden layer.
        dropout: dropout probability on the hidden layer (0 disables it).
    """

    def __init__(self, in_features: int, hidden: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` ``(B, F)`` -> scores ``(B,)``."""
        return self.mlp(features).squeeze(-1)
