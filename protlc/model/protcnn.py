"""ProtCNN (docs/method.md §5): a dilated residual CNN over soft one-hot residues, masked so padding never counts.

Shapes: ``B`` sequences, ``L`` padded length, ``F`` filters, ``C`` classes. Inputs are token ids from
:mod:`protlc.alphabet` (``(B, L)``, 0 = padding) and a residue mask (``(B, L)`` bool, True = residue).

Padding invariance (predictions do not change when more padding is added) holds because

* every convolution's output is re-zeroed at padding, and so is every BatchNorm's, so each
  convolution reads zeros there and the residual stream is zero at padding after every block;
* BatchNorm is :class:`MaskedBatchNorm1d`: training-mode statistics are taken over residue positions
  only, and its output is re-masked (a plain BatchNorm would both count padding in its statistics
  and write ``bias - mean * scale`` into the padding that the next dilated convolution reads);
* max-pooling sets padding to ``-inf`` first.

On the CPU a batch without padding (e.g. equal-length DMS variants) skips all of this masking, which
would multiply by ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from protlc.alphabet import ALPHABET, PAD_INDEX
from protlc.errors import ConfigError
from protlc.model.batchnorm import BN_EPS, BN_MOMENTUM, MaskedBatchNorm1d, _masked  # noqa: F401 (re-exported)
from protlc.model.heads import ClassificationHead, init_parameters_
from protlc.validate import is_int

DEFAULT_INIT_SEED = 0


@dataclass(frozen=True)
class ProtCNNConfig:
    """Sizes of a ProtCNN encoder; plain values only so it can travel inside a checkpoint.

    Attributes:
        filters: F, channels of the residual stream.
        dilations: one residual block per entry, its dilation rate.
        kernel_size: width of the input and dilated convolutions (odd, so "same" padding is exact).
        bottleneck_factor: the dilated convolution has ``round(F * bottleneck_factor)`` channels.
        dropout: dropout probability on the pooled embedding (0 disables it).

    Raises:
        ConfigError: a value is out of range or of the wrong type.
    """

    filters: int
    dilations: tuple[int, ...]
    kernel_size: int = 9
    bottleneck_factor: float = 0.5
    dropout: float = 0.0

    def __post_init__(self) -> None:
        dilations = self.dilations
        if isinstance(dilations, (list, tuple)):
            object.__setattr__(self, "dilations", tuple(dilations))
        if not is_int(self.filters) or self.filters < 1:
            raise ConfigError(f"model: filters must be a positive integer, got {self.filters!r}")
        if not self.dilations or not all(is_int(d) and d >= 1 for d in self.dilations):
            raise ConfigError(
                f"model: dilations must be a non-empty list of positive integers, got {dilations!r}"
            )
        if not is_int(self.kernel_size) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"model: kernel_size must be a positive odd integer, got {self.kernel_size!r}")
        if not _is_number(self.bottleneck_factor) or not 0.0 < self.bottleneck_factor <= 1.0:
            raise ConfigError(
                f"model: bottleneck_factor must be in (0, 1], got {self.bottleneck_factor!r}"
            )
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model: dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def bottleneck_channels(self) -> int:
        """Channels of each block's dilated convolution (``F/2`` for the published model)."""
        return max(1, round(self.filters * self.bottleneck_factor))

    @property
    def receptive_field(self) -> int:
        """Residues that can influence one output position (337 for the published model)."""
        return 1 + (self.kernel_size - 1) * (1 + sum(self.dilations))

    def to_dict(self) -> dict:
        """Plain-primitive form (ints, floats, a list) for checkpoints and YAML."""
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> ProtCNNConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: unknown or missing keys, or invalid values.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"model: expected a mapping of model sizes, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"model: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(names)}")
        missing = [n for n in ("filters", "dilations") if n not in data]
        if missing:
            raise ConfigError(f"model: missing key(s) {', '.join(missing)}")
        return cls(**data)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


PRESETS: dict[str, ProtCNNConfig] = {
    # Bileschi et al. 2022: F = 1100, five blocks, receptive field 337.
    "paper": ProtCNNConfig(filters=1100, dilations=(1, 1, 3, 9, 27)),
    # CPU-sized: 0.27 M encoder parameters, 0.54 MFLOP/residue, receptive field 113 (a median domain);
    # ~270 sequences/s training on one CPU thread. F=64 is 2.6x faster but learns slower; F=192 is 2x slower.
    "small": ProtCNNConfig(filters=128, dilations=(1, 3, 9)),
    # For unit tests only.
    "tiny": ProtCNNConfig(filters=16, dilations=(1, 2)),
}


def get_preset(name: str) -> ProtCNNConfig:
    """The named model size.

    Raises:
        ConfigError: ``name`` is not in :data:`PRESETS`.
    """
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown model preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}"
        ) from None


def flops_per_residue(config: ProtCNNConfig) -> int:
    """Forward FLOPs (2 x multiply-adds) per residue position of the convolution stack.

    Counts the input convolution and every block's dilated and 1x1 convolutions; BatchNorm, ReLU,
    pooling and the head (a per-sequence cost of ``2 * F * C``) are left out. A training step costs
    about 3x this (forward + backward). Padding positions cost the same as residues on the hardware.
    """
    f, fb, k = config.filters, config.bottleneck_channels, config.kernel_size
    macs = ALPHABET.num_channels * f * k + len(config.dilations) * (f * fb * k + fb * f)
    return 2 * macs


def _has_padding(mask: torch.Tensor) -> bool:
    """False only for a ``(B, L)`` mask on the CPU that is all True (outside torch.compile tracing).

    Masking a batch without padding multiplies every activation by one: a full pass over the
    activations per convolution and BatchNorm for nothing (equal-length DMS variants never have
    padding). The check reads the mask back to the host, so elsewhere it answers True without looking.
    """
    return mask.device.type != "cpu" or torch.compiler.is_compiling() or not bool(mask.all())


def _padding_mask(mask: torch.Tensor) -> torch.Tensor | None:
    """``(B, 1, L)`` float32 mask of a ``(B, L)`` bool mask, or None when the batch has no padding."""
    return mask.unsqueeze(1).to(torch.float32) if _has_padding(mask) else None


class ResidualBlock(nn.Module):
    """BN -> ReLU -> dilated Conv1d (F -> Fb, k, d) -> BN -> ReLU -> Conv1d 1x1 (Fb -> F), plus skip.

    The dilated convolution has no bias (the BatchNorm after it absorbs one). Both convolutions'
    outputs are re-zeroed at padding.
    """

    def __init__(self, channels: int, bottleneck: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.bn_in = MaskedBatchNorm1d(channels)
        self.conv_dilated = nn.Conv1d(
            channels, bottleneck, kernel_size, dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2, bias=False,
        )
        self.bn_mid = MaskedBatchNorm1d(bottleneck)
        self.conv_out = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, F, L)`` zero at padding -> ``(B, F, L)`` zero at padding (args as the BN's)."""
        h = F.relu(self.bn_in(x, mask, count))
        h = F.relu(self.bn_mid(_masked(self.conv_dilated(h), mask), mask, count))
        return x + _masked(self.conv_out(h), mask)

    def forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` in evaluation of a batch without padding, with ``bn_mid`` folded into the dilated
        convolution and ``bn_in`` applied as one multiply-add: two passes over the activations fewer (the
        same values up to float rounding)."""
        scale, shift = self.bn_in.affine()
        h = torch.addcmul(shift[:, None], x, scale[:, None]).relu_()
        scale, shift = self.bn_mid.affine()
        conv = self.conv_dilated
        h = F.conv1d(h, conv.weight * scale[:, None, None], shift, padding=conv.padding, dilation=conv.dilation)
        return x + self.conv_out(h.relu_())


class ProtCNNEncoder(nn.Module):
    """Residues -> one ``F``-dimensional embedding per sequence.

    Args:
        config: model sizes.
        generator: source of the initial weights; None means a generator seeded with 0, so two
            encoders built from the same config start identical unless a generator says otherwise.
    """

    def __init__(self, config: ProtCNNConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        k = config.kernel_size
        # Fixed (non-trainable) input embedding: row t is the soft one-hot vector of token t.
        self.register_buffer(
            "residue_vectors", torch.from_numpy(ALPHABET.soft_one_hot()), persistent=False
        )
        self.conv_in = nn.Conv1d(ALPHABET.num_channels, config.filters, k, padding=(k - 1) // 2)
        self.blocks = nn.ModuleList(
            ResidualBlock(config.filters, config.bottleneck_channels, k, d) for d in config.dilations
        )
        self.dropout = nn.Dropout(config.dropout)
        # Evaluation of batches without padding on the CPU may take shortcuts: conv_in by table look-up
        # (:meth:`input_by_lookup`) and BatchNorm folded into the blocks' convolutions
        # (:meth:`ResidualBlock.forward_folded`). Off by default, switched on by fitness scoring; the same
        # values up to float rounding, and a sequence gets the same features in any batch of two or more.
        self.fast_inference = False
        init_parameters_(self, _generator(generator))

    @property
    def out_features(self) -> int:
        return self.config.filters

    def residue_features(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Soft one-hot input ``(B, 20, L)`` float32: X uniform, B/Z/J split, zero where ``mask`` is False."""
        x = F.embedding(tokens.long(), self.residue_vectors).transpose(1, 2)
        return x * mask.unsqueeze(1).to(x.dtype)

    def input_by_lookup(self, tokens: torch.Tensor) -> torch.Tensor:
        """``conv_in(residue_features(tokens))`` ``(B, F, L)`` of a batch without padding, by table look-up.

        The input at each position is the vector of one token, so tap ``j`` of the convolution adds
        ``weight[:, :, j] @ vector(token at l + j - k // 2)``: a ``(tokens, F)`` table per tap. Taps are
        taken in pairs, one ``(tokens², F)`` table per pair indexed by both tokens, so k = 9 taps are 5
        gathers and 4 additions instead of a convolution over the one-hot input (about 5x fewer operations
        at 20 channels). The zero padding at both ends is the padding token, whose vector is zero. Every
        position is summed in the same order whatever the batch, so a sequence gets the same features in
        any batch.
        """
        k = self.conv_in.kernel_size[0]
        half = (k - 1) // 2
        length = tokens.shape[1]
        table = torch.einsum("tc,fck->ktf", self.residue_vectors, self.conv_in.weight).contiguous()  # (k, tokens, F)
        size = table.shape[1]
        padded = F.pad(tokens.long(), (half, half + 1), value=PAD_INDEX)  # one more: the last pair's partner
        out = self.conv_in.bias.expand(tokens.numel(), -1).clone()  # (B * L, F), summed into in place
        for j in range(0, k, 2):
            window = padded[:, j:j + length]
            if j + 1 < k:
                pair = (table[j][:, None] + table[j + 1][None, :]).reshape(size * size, -1)
                out += pair.index_select(0, (window * size + padded[:, j + 1:j + 1 + length]).reshape(-1))
            else:
                out += table[j].index_select(0, window.reshape(-1))
        return out.view(*tokens.shape, -1).transpose(1, 2).contiguous()

    def embed_positions(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-position features.

        Args:
            tokens: ``(B, L)`` integer token ids (0 = padding).
            mask: ``(B, L)`` bool, True at residues; every row needs at least one True.

        Returns:
            ``(B, F, L)``, zero at padding (before any dropout).
        """
        mask_f = _padding_mask(mask)
        count = mask.sum(dtype=torch.float32)
        if self.fast_inference and mask_f is None and not self.training:
            h = self.input_by_lookup(tokens)
            for block in self.blocks:
                h = block.forward_folded(h)
            return h
        h = _masked(self.conv_in(self.residue_features(tokens, mask)), mask_f)
        for block in self.blocks:
            h = block(h, mask_f, count)
        return h

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``tokens``/``mask`` ``(B, L)`` -> embedding ``(B, F)``: max over residue positions only."""
        return self.dropout(_max_pool(self.embed_positions(tokens, mask), mask))

    def pooled_layers(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Every layer's features max-pooled over residues: ``(B, 1 + blocks, F)``, the input convolution's
        first, the last equal to :meth:`forward`'s embedding (in eval mode). The nearest unknown scores
        compare all of them (:func:`protlc.unknown.layer_embedding`): early layers see short motifs, the
        last one what tells the training families apart."""
        mask_f = _padding_mask(mask)
        count = mask.sum(dtype=torch.float32)
        h = _masked(self.conv_in(self.residue_features(tokens, mask)), mask_f)
        pooled = [_max_pool(h, mask)]
        for block in self.blocks:
            h = block(h, mask_f, count)
            pooled.append(_max_pool(h, mask))
        return torch.stack(pooled, dim=1)


class PooledLayers(nn.Module):
    """``encoder.pooled_layers`` as a module's forward, for batched inference helpers that call ``model(tokens,
    mask)``."""

    def __init__(self, encoder: ProtCNNEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder.pooled_layers(tokens, mask)


def _max_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, F, L)`` features -> ``(B, F)``, the max over residue positions only."""
    if _has_padding(mask):
        h = h.masked_fill(~mask.unsqueeze(1), float("-inf"))
    return h.amax(dim=2)


class ProtCNNClassifier(nn.Module):
    """ProtCNN encoder + linear classification head.

    Args:
        config: model sizes.
        num_classes: C, number of families (>= 2).
        generator: source of the initial weights (see :class:`ProtCNNEncoder`).

    Raises:
        ConfigError: ``num_classes`` < 2.
    """

    def __init__(
        self, config: ProtCNNConfig, num_classes: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if not is_int(num_classes) or num_classes < 2:
            raise ConfigError(f"model: num_classes must be an integer >= 2, got {num_classes!r}")
        generator = _generator(generator)
        self.config = config
        self.num_classes = num_classes
        self.encoder = ProtCNNEncoder(config, generator)
        self.head = ClassificationHead(config.filters, num_classes)
        init_parameters_(self.head, generator)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``tokens``/``mask`` ``(B, L)`` -> logits ``(B, C)``."""
        return self.head(self.encoder(tokens, mask))


def _generator(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(DEFAULT_INIT_SEED)
