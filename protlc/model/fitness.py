"""DMS fitness networks (docs/method.md §6): a regression head on the ProtCNN encoder.

Shapes: ``B`` variants, ``L`` residues (every variant of one wild type has the wild type's length),
``F`` encoder filters, ``K`` head channels, ``C`` families.

Two heads (``head.kind``):

* ``positional`` (default): per-position encoder features ``(B, F, L)`` -> 1x1 convolution to ``K``
  channels -> ReLU -> flatten ``(B, K*L)`` -> an MLP plus a linear skip -> ``(B,)``. It keeps *where* a
  substitution is, which a max-pooled embedding loses; it needs every sequence to have the length ``L``
  it was built for (true of substitution libraries; anything else is refused).
* ``pooled``: the max-pooled embedding ``(B, F)`` -> :class:`protlc.model.FitnessHead` (any length).

``head.additive: ridge`` (positional head only) adds :class:`AdditiveTerm`, a per-position residue table
(a linear model on the one-hot) that starts at a ridge fit of the training split, with the shared
substitution-type columns of :class:`protlc.dms.ridge.OneHotRidge` (a substitution matrix common to all
positions, which the table can hold because the model stays additive); the table and the network are
then trained jointly. Why: with many positions and few observations per substitution
(Bgl3: 501 positions, ~8 observations per substitution) the network alone learns the additive part
slowly, because each table-like weight only receives a gradient in the few batches that hold its
substitution (measured on the Bgl3 main split: tune Pearson 0.557 after 40 epochs, ridge 0.577; with
the additive start 0.576 from the first epoch).

``head.additive: epistasis`` ("global epistasis") passes the sum of the table and the network's output
(scaled by a gate that starts at 0) through :class:`MonotoneOutput`, a learned monotone non-decreasing
map; the table and the map start at a full-batch fit of the additive model through the map
(:func:`protlc.dms.epistasis.fit_global_epistasis`) and stay fixed while the network trains. Why: a
measured fitness is often a saturating function of an additive latent trait (fluorescence is bright or
dark whatever the exact stability), so effects add on the latent scale, not on the measured one, and the
model then carries from few mutations to many (avGFP, nn4dms main split: test Pearson 0.975, ridge 0.825).

The model predicts in score units: the head's output is de-standardised with the training split's
score mean and standard deviation (buffers, so they travel in the state dict); training minimises the
MSE of the standardised scores.

Transfer (``--init``): the encoder starts from a Pfam classifier's encoder, and a frozen copy of that
whole classifier (``model.family``) rides along so that ``protlc score`` can report the predicted family
and its probability for every variant. The fine-tuned encoder is not used for the family, because its
features drift away from the ones the classification head was trained on.

Checkpoints hold only tensors and plain values (hparams: ``model_config``, ``head``, ``wild_type``,
``notation``, ``offset``, ``labels``, ``config``), so :func:`build_fitness_model` can rebuild the model
from a ``torch.load(weights_only=True)`` result; an ensemble checkpoint (``head.additive: auto``'s
``ensemble`` choice) adds ``ensemble_heads``, the head settings of its members, and ``ensemble_weights``, their
blend weights (none: the mean), and rebuilds as a
:class:`FitnessEnsemble`. Training lives in :mod:`protlc.training.fitness`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from protlc.alphabet import ALPHABET
from protlc.errors import CheckpointError, ConfigError
from protlc.model.heads import FitnessHead, init_parameters_
from protlc.model.protcnn import ProtCNNClassifier, ProtCNNConfig, ProtCNNEncoder

HEAD_KINDS = ("positional", "pooled")
HEAD_DEFAULTS = {"kind": "positional", "channels": 8, "hidden": 128, "dropout": 0.1, "additive": "none"}
ADDITIVE_KINDS = ("none", "ridge", "epistasis")
EPISTASIS_SIGMOIDS = 3  # sigmoids in MonotoneOutput


class PositionalFitnessHead(nn.Module):
    """Per-position features ``(B, F, L)`` -> fitness ``(B,)`` for sequences of exactly ``length`` residues.

    Args:
        in_features: F.
        length: L, the wild type's length.
        channels: K, channels kept per position by the 1x1 convolution.
        hidden: width of the MLP's hidden layer.
        dropout: dropout on the flattened features and on the hidden layer.
    """

    def __init__(self, in_features: int, length: int, channels: int = 8, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.length = length
        self.reduce = nn.Conv1d(in_features, channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(channels * length, hidden)
        self.out = nn.Linear(hidden, 1)
        self.skip = nn.Linear(channels * length, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` ``(B, F, L)`` (zero at padding) -> ``(B,)``.

        Raises:
            ValueError: ``L`` differs from the length the head was built for.
        """
        if features.shape[-1] != self.length:
            raise ValueError(f"the positional fitness head takes sequences of {self.length} residues, "
                             f"got {features.shape[-1]}")
        z = self.dropout(F.relu(self.reduce(features)).flatten(1))
        return (self.out(self.dropout(F.relu(self.hidden(z)))) + self.skip(z)).squeeze(-1)


class AdditiveTerm(nn.Module):
    """A per-position, per-residue table: ``sum_p weight[p, token_p] + bias`` (a linear model on the one-hot).

    Args:
        length: L; every sequence must have exactly this many residues.
    """

    def __init__(self, length: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(length, ALPHABET.size))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` tokens/mask -> ``(B,)``."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return (self.weight[positions, tokens.long()] * mask).sum(dim=1) + self.bias


class MonotoneOutput(nn.Module):
    """``g(z) = a + softplus(c) z + sum_k softplus(w_k) sigmoid(exp(s_k) (z - t_k))``: monotone non-decreasing in z.

    A linear part plus ``sigmoids`` learned steps, so it can be a line (an additive model), a saturating
    curve with a floor and a ceiling, or anything monotone in between. Works elementwise on any shape.
    """

    def __init__(self, sigmoids: int = EPISTASIS_SIGMOIDS):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(()))
        self.slope = nn.Parameter(torch.tensor(-4.0))  # softplus(-4) = 0.018: nearly flat at first
        self.weight = nn.Parameter(torch.zeros(sigmoids))
        self.log_steepness = nn.Parameter(torch.zeros(sigmoids))
        self.center = nn.Parameter(torch.linspace(-1.0, 1.0, sigmoids) if sigmoids > 1 else torch.zeros(1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        steps = torch.sigmoid(self.log_steepness.exp() * (z[..., None] - self.center))
        return self.offset + F.softplus(self.slope) * z + (F.softplus(self.weight) * steps).sum(-1)


class FitnessModel(nn.Module):
    """ProtCNN encoder + fitness head (+ an optional frozen Pfam classifier for the family).

    Args:
        model_config: ``ProtCNNConfig.to_dict()``.
        head: head settings (see :data:`HEAD_DEFAULTS`).
        length: the wild type's length (used by the positional head).
        num_families: C of the frozen family classifier; 0 for none.
        generator: source of the initial weights.

    Raises:
        ConfigError: unknown head kind or bad sizes.
    """

    def __init__(self, model_config: dict, head: dict, length: int, num_families: int = 0,
                 generator: torch.Generator | None = None):
        super().__init__()
        head = {**HEAD_DEFAULTS, **head}
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        config = ProtCNNConfig.from_dict(dict(model_config))
        self.encoder = ProtCNNEncoder(config, generator)
        self.kind = head["kind"]
        if self.kind == "positional":
            self.head = PositionalFitnessHead(config.filters, length, int(head["channels"]), int(head["hidden"]),
                                              float(head["dropout"]))
        elif self.kind == "pooled":
            self.head = FitnessHead(config.filters, int(head["hidden"]), float(head["dropout"]))
        else:
            raise ConfigError(f"head.kind must be one of {', '.join(HEAD_KINDS)}, got {self.kind!r}")
        init_parameters_(self.head, generator)
        if head["additive"] not in ADDITIVE_KINDS:
            raise ConfigError(f"head.additive must be one of {', '.join(ADDITIVE_KINDS)}, got {head['additive']!r}")
        if head["additive"] != "none" and self.kind != "positional":
            raise ConfigError("head.additive needs the positional head (a fixed sequence length)")
        self.additive = AdditiveTerm(length) if head["additive"] != "none" else None
        self.output = MonotoneOutput() if head["additive"] == "epistasis" else None
        if self.output is not None:
            # the fitted table and map stay fixed; the network adds what they miss on the latent scale,
            # joining from 0 (measured on avGFP: training them jointly at the network's learning rate
            # moved them off the fit and tune MSE rose by 10-30% over the first epochs)
            self.additive.requires_grad_(False)
            self.output.requires_grad_(False)
            self.network_gate = nn.Parameter(torch.zeros(()))
        self.register_buffer("score_mean", torch.zeros(()))
        self.register_buffer("score_std", torch.ones(()))
        self.family = ProtCNNClassifier(config, num_families) if num_families else None
        if self.family is not None:
            self.family.requires_grad_(False)

    @property
    def fixed_length(self) -> int | None:
        """The only sequence length the head accepts, or None for any length."""
        return self.head.length if self.kind == "positional" else None

    def train(self, mode: bool = True) -> "FitnessModel":
        super().train(mode)
        if self.family is not None:  # frozen: its BatchNorm statistics must not move either
            self.family.eval()
        return self

    def standardized(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` tokens/mask -> standardised fitness ``(B,)`` (the training target's units)."""
        if self.kind == "pooled":
            return self.head(self.encoder(tokens, mask))
        out = self.head(self.encoder.embed_positions(tokens, mask))
        if self.output is not None:
            return self.output(self.additive(tokens, mask) + self.network_gate * out)
        return out if self.additive is None else out + self.additive(tokens, mask)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` tokens/mask -> fitness ``(B,)`` in score units."""
        return self.score_mean + self.score_std * self.standardized(tokens, mask)

    def family_probabilities(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` family probabilities from the frozen Pfam classifier.

        Raises:
            ConfigError: the model was trained from scratch (no family classifier).
        """
        if self.family is None:
            raise ConfigError("this fitness model has no family classifier (it was not trained with --init)")
        return self.family(tokens, mask).float().softmax(-1)


class FitnessEnsemble(nn.Module):
    """The blended prediction, in score units, of several :class:`FitnessModel` of one wild type: sum_i w_i *
    member_i, with ``weights`` w (None: the mean). The ``ensemble`` choice of ``head.additive: auto`` (its
    candidates blended with least-squares weights fitted on tune), or ``score --ensemble`` (a mean). Scores
    like one model: ``fixed_length``, ``family`` and ``family_probabilities`` are the first member's.

    Raises:
        ConfigError: no members, members that take different lengths, or weights that are not one finite
            number >= 0 per member.
    """

    def __init__(self, members: list[FitnessModel], weights: list[float] | None = None):
        super().__init__()
        if not members or len({m.fixed_length for m in members}) != 1:
            raise ConfigError("a fitness ensemble needs one or more members of one sequence length")
        if weights is not None and (len(weights) != len(members) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                for w in weights)):
            raise ConfigError(f"{ENSEMBLE_WEIGHTS} must hold one finite number >= 0 per member, got {weights!r}")
        self.members = nn.ModuleList(members)
        self.weights = None if weights is None else [float(w) for w in weights]

    @property
    def fixed_length(self) -> int | None:
        return self.members[0].fixed_length

    @property
    def family(self) -> ProtCNNClassifier | None:
        return self.members[0].family

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` tokens/mask -> blended fitness ``(B,)`` of the members, in score units."""
        predictions = [member(tokens, mask) for member in self.members]
        if self.weights is None:
            return torch.stack(predictions).mean(dim=0)
        return sum(w * p for w, p in zip(self.weights, predictions))

    def family_probabilities(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.members[0].family_probabilities(tokens, mask)


ENSEMBLE_HEADS = "ensemble_heads"  # hparams of an ensemble checkpoint: the head settings of each member
ENSEMBLE_WEIGHTS = "ensemble_weights"  # and, for a weighted blend, each member's weight
MAX_ENSEMBLE = 16


def check_fitness_hparams(hparams: dict) -> None:
    """Raises CheckpointError when a checkpoint's hyper-parameters hold no fitness regression head."""
    if "head" not in hparams or "model_config" not in hparams or "wild_type" not in hparams:
        raise CheckpointError("the checkpoint has no fitness regression head (train one with protlc train-dms)")


def fitness_model(hparams: dict) -> FitnessModel | FitnessEnsemble:
    """A fresh :class:`FitnessModel` (or :class:`FitnessEnsemble`, when the hyper-parameters list
    :data:`ENSEMBLE_HEADS`) of the sizes a fitness checkpoint's ``hyper_parameters`` give.

    Raises:
        ConfigError: bad sizes, or an ensemble of more than :data:`MAX_ENSEMBLE` members.
    """
    length, families = len(hparams["wild_type"]), len(hparams.get("labels") or [])
    heads = hparams.get(ENSEMBLE_HEADS)
    if heads is None:
        return FitnessModel(hparams["model_config"], hparams["head"], length, families)
    if not isinstance(heads, list) or not 1 <= len(heads) <= MAX_ENSEMBLE or not all(isinstance(h, dict) for h in heads):
        raise ConfigError(f"{ENSEMBLE_HEADS} must list 1 to {MAX_ENSEMBLE} head settings")
    return FitnessEnsemble([FitnessModel(hparams["model_config"], head, length, families) for head in heads],
                           hparams.get(ENSEMBLE_WEIGHTS))


def build_fitness_model(hparams: dict, state_dict: dict) -> FitnessModel | FitnessEnsemble:
    """Rebuild the :class:`FitnessModel` of a fitness checkpoint (``load_checkpoint`` checks the sizes
    against the tensors first).

    Args:
        hparams: the checkpoint's ``hyper_parameters``.
        state_dict: the checkpoint's ``state_dict`` (keys ``model.…``).

    Raises:
        CheckpointError: no regression head in the checkpoint, or weights that do not fit it.
    """
    check_fitness_hparams(hparams)
    try:
        model = fitness_model(hparams)
        model.load_state_dict(_submodule_state(state_dict, "model."))
    except (RuntimeError, ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"the fitness checkpoint does not match its model ({str(exc).splitlines()[0][:200]})") from None
    return model.eval()


def _submodule_state(state_dict: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
