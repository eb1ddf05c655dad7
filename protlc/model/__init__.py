"""ProtCNN encoder, presets and task heads (docs/method.md §5)."""

from protlc.model.heads import ClassificationHead, FitnessHead, init_parameters_
from protlc.model.protcnn import (
    PRESETS,
    MaskedBatchNorm1d,
    PooledLayers,
    ProtCNNClassifier,
    ProtCNNConfig,
    ProtCNNEncoder,
    ResidualBlock,
    flops_per_residue,
    get_preset,
)

__all__ = [
    "PRESETS",
    "ClassificationHead",
    "FitnessHead",
    "MaskedBatchNorm1d",
    "PooledLayers",
    "ProtCNNClassifier",
    "ProtCNNConfig",
    "ProtCNNEncoder",
    "ResidualBlock",
    "flops_per_residue",
    "get_preset",
    "init_parameters_",
]
