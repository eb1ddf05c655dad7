"""Global epistasis: an additive latent trait through a learned monotone map (docs/method.md §6).

``fitness(x) = g(b + sum over x's substitutions (p, a) of beta[p, a] + tau[wt_p -> a])`` with ``g`` a
:class:`protlc.model.fitness.MonotoneOutput` and ``tau`` one weight per substitution *type* (wild-type
letter -> mutant letter, shared by all positions, as in :class:`protlc.dms.ridge.OneHotRidge`'s
substitution types), fitted on the training split by full-batch Adam on the mean squared error of the
standardised scores plus ``l2 * (|beta|^2 + |tau|^2) / n``. The state with the lowest tune MSE over the
steps and over the ``l2`` grid is kept (the test split plays no part). A substitution never seen in
training gets its type's weight (zero for a type never seen). The model stays additive on the latent
scale, so it is one per-position residue table (``effects``) plus ``b``. The fit has no random element: the same data give the
same result. It is the start of ``head.additive: epistasis`` and, on its own, a baseline reported as
``additive_start/...`` when that head is chosen.

Measured on the nn4dms main splits (test Pearson; one-hot ridge in brackets): avGFP 0.975 (0.825),
Pab1 0.933 (0.905), Bgl3 0.613 (0.587); without the type weights 0.973, 0.928, 0.577. It wins most where
the measured fitness saturates (avGFP's bright and dark states).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from protlc.alphabet import ALPHABET, STANDARD, STOP
from protlc.dms.splits import Split
from protlc.dms.tables import sequence_matrix
from protlc.errors import InputError
from protlc.metrics import correlation
from protlc.model.fitness import EPISTASIS_SIGMOIDS, MonotoneOutput

DEFAULT_L2S = (10.0, 100.0, 1000.0)
MAX_STEPS = 1500
EVAL_EVERY = 10
PATIENCE_STEPS = 300
LEARNING_RATE = 0.02


@dataclass(frozen=True)
class EpistasisResult:
    """The fitted model, in the standardised units of the training scores (``(score - mean) / std``).

    ``effects`` ``(L, ALPHABET.size)``: each residue's latent effect at each position (0 for the wild type
    and for letters not seen there in training); ``bias``: the wild type's latent value; ``output``: the
    state dict of the fitted :class:`MonotoneOutput`. Metrics are in score units.
    """

    effects: torch.Tensor
    bias: float
    output: dict
    l2: float
    steps: int
    tune_mse: float
    tune_pearson: float | None
    test_pearson: float | None
    test_spearman: float | None
    test_predictions: np.ndarray = field(repr=False)

    def metrics(self, prefix: str) -> dict:
        return {f"{prefix}test/pearson": self.test_pearson, f"{prefix}test/spearman": self.test_spearman,
                f"{prefix}tune/pearson": self.tune_pearson, f"{prefix}tune/mse": self.tune_mse,
                f"{prefix}l2": self.l2, f"{prefix}steps": float(self.steps),
                f"{prefix}num_features": float(int((self.effects != 0).sum()))}


def _codes(matrix: np.ndarray, wt_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, substitution code ``position * 256 + letter`` and type code ``wild-type letter * 256 + letter``
    of every residue that differs from the wild type."""
    rows, cols = np.nonzero(matrix != wt_bytes)
    letters = matrix[rows, cols].astype(np.int64)
    return rows, cols.astype(np.int64) * 256 + letters, wt_bytes[cols].astype(np.int64) * 256 + letters


def _columns(codes: np.ndarray, vocab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(known, column)``: which codes are in the sorted ``vocab``, and their column there."""
    index = np.minimum(np.searchsorted(vocab, codes), len(vocab) - 1)
    return vocab[index] == codes, index


def _design(matrix: np.ndarray, wt_bytes: np.ndarray, substitutions: np.ndarray, types: np.ndarray) -> torch.Tensor:
    """Sparse ``(n, S + T)`` indicator of each row's substitutions and substitution types seen in training."""
    rows, codes, type_codes = _codes(matrix, wt_bytes)
    known, column = _columns(codes, substitutions)
    known_type, type_column = _columns(type_codes, types)
    r = np.concatenate([rows[known], rows[known_type]])
    c = np.concatenate([column[known], len(substitutions) + type_column[known_type]])
    indices = torch.from_numpy(np.vstack([r, c]).astype(np.int64))
    return torch.sparse_coo_tensor(indices, torch.ones(len(r)), (len(matrix), len(substitutions) + len(types)),
                                   check_invariants=True).coalesce()


def _effects_table(wt: str, weights: torch.Tensor, substitutions: np.ndarray, types: np.ndarray) -> torch.Tensor:
    """``(L, ALPHABET.size)`` latent effect of every single substitution: its own weight (if seen in training)
    plus its type's weight (if that type was seen), 0 for the wild-type residues."""
    letters = STANDARD + STOP
    wt_bytes = np.frombuffer(wt.encode("ascii"), dtype=np.uint8)
    positions = np.repeat(np.arange(len(wt)), len(letters))
    flat = np.tile(np.frombuffer(letters.encode("ascii"), dtype=np.uint8), len(wt)).astype(np.int64)
    mutated = flat != wt_bytes[positions]
    codes, type_codes = positions * 256 + flat, wt_bytes[positions].astype(np.int64) * 256 + flat
    known, column = _columns(codes, substitutions)
    known_type, type_column = _columns(type_codes, types)
    weights = weights.double().numpy()
    values = np.where(mutated & known, weights[column], 0.0) + np.where(
        mutated & known_type, weights[len(substitutions) + type_column], 0.0)
    effects = torch.zeros(len(wt), ALPHABET.size)
    tokens = torch.from_numpy(ALPHABET.encode(letters).astype(np.int64))
    effects[:, tokens] = torch.from_numpy(values.reshape(len(wt), len(letters))).float()
    return effects


def _initial_output(y: np.ndarray, sigmoids: int) -> MonotoneOutput:
    """A map spanning the training scores: floor at their 1st percentile, steps up to their 99th."""
    output = MonotoneOutput(sigmoids)
    low, high = np.quantile(y, [0.01, 0.99])
    step = max(float(high - low), 1e-3) / sigmoids
    with torch.no_grad():
        output.offset.fill_(float(low))
        output.weight.fill_(float(np.log(np.expm1(step))))  # softplus^-1(step)
    return output


def _initial_bias(output: MonotoneOutput, target: float) -> float:
    """The latent value whose mapped score is closest to ``target`` (the start of every variant)."""
    grid = torch.linspace(-6.0, 6.0, 1201)
    with torch.no_grad():
        return float(grid[(output(grid) - target).abs().argmin()])


def _fit_one(parts: dict, l2: float, sigmoids: int, start_target: float) -> tuple[float, int, dict]:
    """Full-batch fit for one ``l2``: ``(best tune MSE (standardised), its step, its state)``."""
    (x_train, y_train), (x_tune, y_tune) = parts["train"], parts["tune"]
    output = _initial_output(y_train.numpy(), sigmoids)
    beta = torch.zeros(x_train.shape[1], requires_grad=True)
    bias = torch.tensor(_initial_bias(output, start_target), requires_grad=True)
    optimizer = torch.optim.Adam([beta, bias, *output.parameters()], lr=LEARNING_RATE)

    def predict(x: torch.Tensor) -> torch.Tensor:
        return output(torch.sparse.mm(x, beta[:, None]).squeeze(1) + bias)

    best = (float("inf"), 0, None)
    for step in range(MAX_STEPS + 1):
        if step:
            optimizer.zero_grad()
            loss = ((predict(x_train) - y_train) ** 2).mean() + l2 * (beta ** 2).sum() / len(y_train)
            loss.backward()
            optimizer.step()
        if step % EVAL_EVERY and step != MAX_STEPS:
            continue
        with torch.no_grad():
            mse = float(((predict(x_tune) - y_tune) ** 2).mean())
        if best[2] is None or mse < best[0]:  # (step 0, the start, always counts: a NaN never replaces it)
            state = {"beta": beta.detach().clone(), "bias": bias.item(),
                     "output": {k: v.detach().clone() for k, v in output.state_dict().items()}}
            best = (mse, step, state)
        elif step - best[1] >= PATIENCE_STEPS:
            break
    return best


def fit_global_epistasis(wt: str, sequences: Sequence[str], scores: Sequence[float], split: Split,
                         l2s: Sequence[float] = DEFAULT_L2S, sigmoids: int = EPISTASIS_SIGMOIDS) -> EpistasisResult:
    """Fit the global-epistasis model on ``split.train``, choose ``l2`` and the step on tune MSE, report test.

    Args:
        sequences: variant sequences, all as long as ``wt``; scores: ``(n,)`` measured fitness.

    Raises:
        InputError: sequences of another length than the wild type, or no mutated training variant.
    """
    if {len(s) for s in sequences} != {len(wt)}:
        raise InputError(f"global epistasis: all sequences must have the wild type's length {len(wt)}")
    matrix = sequence_matrix(list(sequences), len(wt))
    wt_bytes = np.frombuffer(wt.encode("ascii"), dtype=np.uint8)
    y = np.asarray(scores, dtype=np.float64)
    train_y = y[split.train]
    mean, std = float(train_y.mean()), float(train_y.std() or 1.0)
    _, train_codes, train_types = _codes(matrix[split.train], wt_bytes)
    if len(train_codes) == 0:
        raise InputError("global epistasis: no training variant differs from the wild type")
    substitutions, types = np.unique(train_codes), np.unique(train_types)
    parts = {name: (_design(matrix[rows], wt_bytes, substitutions, types),
                    torch.tensor((y[rows] - mean) / std, dtype=torch.float32))
             for name, rows in split.parts().items()}
    few = (matrix[split.train] != wt_bytes).sum(axis=1) <= 1  # the wild type and singles: where variants start
    start_target = float(np.median((train_y[few] if few.any() else train_y) - mean) / std)
    fits = {l2: _fit_one(parts, float(l2), sigmoids, start_target) for l2 in l2s}
    l2 = min(fits, key=lambda k: fits[k][0])
    _, steps, state = fits[l2]
    effects = _effects_table(wt, state["beta"], substitutions, types)
    output = MonotoneOutput(sigmoids)
    output.load_state_dict(state["output"])

    def predict(name: str) -> np.ndarray:
        with torch.no_grad():
            latent = torch.sparse.mm(parts[name][0], state["beta"][:, None]).squeeze(1) + state["bias"]
            return mean + std * output(latent).double().numpy()

    tune_prediction, test_prediction = predict("tune"), predict("test")
    return EpistasisResult(effects, state["bias"], state["output"], float(l2), int(steps),
                           float(np.mean((tune_prediction - y[split.tune]) ** 2)),
                           correlation(tune_prediction, y[split.tune]),
                           correlation(test_prediction, y[split.test]),
                           correlation(test_prediction, y[split.test], "spearman"), test_prediction)
