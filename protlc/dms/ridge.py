"""The linear baseline: ridge regression on the one-hot encoding of full variant sequences.

With an intercept (centred features) the one-hot columns of a position that never varies in training
are constant and drop out, so the model is fitted exactly on the columns of *variable* positions:
for every training-mutated position ``p`` one column per observed letter (``*`` included, as in
nn4dms' 21-letter encoding) plus the wild-type letter's column. This is the same estimator as ridge on
the full ``L x 21`` one-hot, at a fraction of the size.

It is solved without ever materialising the dense design matrix. With ``S`` the sparse ``(n, F_s)``
indicator of observed substitutions and ``A`` the ``(F_s, F)`` map that sends substitution ``(p, a)``
to ``+1`` on column ``(p, a)`` and ``-1`` on column ``(p, wt_p)``, the centred one-hot design is
``X_c = (S - 1 mu^T) A``. Hence ``X_c^T X_c = A^T (S^T S - n mu mu^T) A`` (an ``F x F`` Gram matrix) and
one eigendecomposition gives the ridge solution ``w = V (Lambda + alpha)^-1 V^T X_c^T y_c`` for every
``alpha`` of the grid. ``alpha`` is chosen by tune-split MSE; Pearson and Spearman come from
:mod:`scipy.stats`. Above :data:`MAX_DENSE_FEATURES` columns each ``alpha`` is solved iteratively (LSQR).

``substitution_types=True`` adds one column per observed substitution *type* (wild-type letter ->
mutant letter, e.g. ``L->P`` anywhere in the protein), the same ridge penalty on all columns: a learned
substitution matrix shared by all positions, which the plain one-hot cannot express (each position's
letters are fitted separately). It only enters the fitness head's additive start
(``head.additive=ridge``); the reported baseline stays the plain one-hot ridge. The model stays additive
over substitutions, and a substitution never seen in training still gets its type's weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, lsqr

from protlc.dms.splits import Split
from protlc.dms.tables import sequence_matrix
from protlc.errors import ConfigError, InputError
from protlc.metrics import correlation

DEFAULT_ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-2.0, 5.01, 0.5))
MAX_DENSE_FEATURES = 8000
METRIC_PREFIX = "ridge/"


@dataclass(frozen=True)
class RidgeResult:
    """Outcome of :func:`ridge_baseline`; ``test_predictions`` follow ``split.test`` order."""

    alpha: float
    tune_mse: float
    tune_pearson: float | None  # None: undefined (constant predictions or scores)
    test_pearson: float | None
    test_spearman: float | None
    num_features: int
    test_predictions: np.ndarray = field(repr=False)
    model: "OneHotRidge" = field(repr=False, compare=False)

    def metrics(self, prefix: str = METRIC_PREFIX) -> dict[str, float | None]:
        """Flat metrics for ``final_metrics.json`` (``ridge/test/pearson``, ``ridge/test/spearman``, ...)."""
        return {f"{prefix}test/pearson": self.test_pearson,
                f"{prefix}test/spearman": self.test_spearman,
                f"{prefix}tune/pearson": self.tune_pearson,
                f"{prefix}tune/mse": self.tune_mse,
                f"{prefix}alpha": self.alpha,
                f"{prefix}num_features": float(self.num_features)}


class OneHotRidge:
    """Ridge on the one-hot of variable positions, fitted once for a whole grid of ``alpha``.

    ``fit`` takes the ``(n, L)`` uint8 sequence matrix of the training variants (see
    :func:`protlc.dms.tables.sequence_matrix`) and their scores ``(n,)``; ``predict`` returns ``(m,)``.
    ``substitution_types`` adds the shared substitution-type columns (module docstring).
    """

    def __init__(self, wt: str, substitution_types: bool = False):
        self.wt_bytes = np.frombuffer(wt.encode("ascii"), dtype=np.uint8)
        self.substitution_types = substitution_types

    def _substitutions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row index and code ``position * 256 + letter byte`` of every residue differing from the wild type."""
        rows, cols = np.nonzero(matrix != self.wt_bytes)
        return rows, cols.astype(np.int64) * 256 + matrix[rows, cols]

    def fit(self, matrix: np.ndarray, scores: np.ndarray) -> "OneHotRidge":
        if matrix.shape[1] != len(self.wt_bytes):
            raise InputError(f"ridge: sequences have length {matrix.shape[1]}, the wild type {len(self.wt_bytes)}")
        n = matrix.shape[0]
        rows, codes = self._substitutions(matrix)
        self.vocab = np.unique(codes)  # substitution columns (p, a), sorted by position
        if len(self.vocab) == 0:
            raise InputError("ridge: no training variant differs from the wild type")
        self.positions = np.unique(self.vocab // 256)
        n_sub, n_pos = len(self.vocab), len(self.positions)
        S = sp.csr_matrix((np.ones(len(codes)), (rows, np.searchsorted(self.vocab, codes))), shape=(n, n_sub))
        # A: substitution (p, a) -> +1 on its column, -1 on p's wild-type column (+1 on its type's column)
        sub = np.arange(n_sub)
        values, a_rows, a_cols = [np.ones(n_sub), -np.ones(n_sub)], [sub, sub], [sub, n_sub + np.searchsorted(
            self.positions, self.vocab // 256)]
        self.types = np.zeros(0, dtype=np.int64)
        if self.substitution_types:
            vocab_types = self._type_codes(self.vocab // 256, self.vocab % 256)
            self.types = np.unique(vocab_types)
            values.append(np.ones(n_sub))
            a_rows.append(sub)
            a_cols.append(n_sub + n_pos + np.searchsorted(self.types, vocab_types))
        self.num_features = n_sub + n_pos + len(self.types)
        A = sp.csr_matrix((np.concatenate(values), (np.concatenate(a_rows), np.concatenate(a_cols))),
                          shape=(n_sub, self.num_features))
        self.mean_score = float(np.mean(scores))
        centred = np.asarray(scores, dtype=np.float64) - self.mean_score
        mu = np.asarray(S.mean(axis=0)).ravel()
        self._rhs = A.T @ (S.T @ centred)
        if self.num_features <= MAX_DENSE_FEATURES:
            gram_sub = (S.T @ S).toarray() - n * np.outer(mu, mu)
            gram = A.T @ (A.T @ gram_sub).T
            self._eigvals, self._eigvecs = np.linalg.eigh(gram)
            self._projected = self._eigvecs.T @ self._rhs
        else:
            self._operator = LinearOperator(
                (n, self.num_features), dtype=np.float64,
                matvec=lambda w: S @ (A @ w) - mu @ (A @ w),
                rmatvec=lambda r: A.T @ (S.T @ r - mu * r.sum()))
            self._centred = centred
        self._train_matrix = matrix
        return self

    def _type_codes(self, positions: np.ndarray, letters: np.ndarray) -> np.ndarray:
        """``wild-type letter * 256 + mutant letter`` of substitutions at ``positions``."""
        return self.wt_bytes[positions].astype(np.int64) * 256 + letters

    def coefficients(self, alpha: float) -> np.ndarray:
        """Weights ``(F,)``: substitution columns, one wild-type column per variable position, then the
        substitution-type columns (none without ``substitution_types``)."""
        if alpha <= 0:
            raise ConfigError(f"ridge alpha must be positive, got {alpha}")
        if hasattr(self, "_eigvecs"):
            return self._eigvecs @ (self._projected / (np.clip(self._eigvals, 0.0, None) + alpha))
        return lsqr(self._operator, self._centred, damp=float(np.sqrt(alpha)), atol=1e-10, btol=1e-10)[0]

    def _raw(self, matrix: np.ndarray, table: np.ndarray, type_weights: np.ndarray) -> np.ndarray:
        """Sum over variable positions of the weight of each row's letter there, plus the weights of the
        types of all its substitutions (types not seen in training weigh zero)."""
        letters = matrix[:, self.positions]
        raw = table[np.arange(len(self.positions)), letters].sum(axis=1)
        if len(self.types):
            rows, cols = np.nonzero(matrix != self.wt_bytes)
            codes = self._type_codes(cols, matrix[rows, cols])
            index = np.minimum(np.searchsorted(self.types, codes), len(self.types) - 1)
            known = self.types[index] == codes
            raw = raw + np.bincount(rows[known], weights=type_weights[index[known]], minlength=len(matrix))
        return raw

    def _weight_table(self, weights: np.ndarray) -> np.ndarray:
        n_sub, n_pos = len(self.vocab), len(self.positions)
        table = np.zeros((n_pos, 256))
        table[np.searchsorted(self.positions, self.vocab // 256), self.vocab % 256] = weights[:n_sub]
        table[np.arange(n_pos), self.wt_bytes[self.positions]] = weights[n_sub:n_sub + n_pos]
        return table

    def predict(self, matrix: np.ndarray, alpha: float) -> np.ndarray:
        """Predicted scores ``(m,)``; letters never seen at a position in training weigh zero there."""
        weights = self.coefficients(alpha)
        table, type_weights = self._weight_table(weights), weights[self.num_features - len(self.types):]
        offset = self.mean_score - self._raw(self._train_matrix, table, type_weights).mean()
        return self._raw(matrix, table, type_weights) + offset


def ridge_baseline(wt: str, sequences: Sequence[str], scores: Sequence[float], split: Split,
                   alphas: Sequence[float] = DEFAULT_ALPHAS, substitution_types: bool = False) -> RidgeResult:
    """Fit ridge on ``split.train``, pick ``alpha`` by tune MSE, report test Pearson and Spearman.

    Args:
        sequences: mutated sequences, all as long as ``wt`` (substitution variants).
        scores: measured fitness, ``(n,)``.
        substitution_types: add the shared substitution-type columns (see :class:`OneHotRidge`).

    Raises:
        InputError: sequences of another length than the wild type, or no mutated training variant.
        ConfigError: an empty alpha grid.
    """
    if not alphas:
        raise ConfigError("ridge: the alpha grid is empty")
    lengths = {len(s) for s in sequences}
    if lengths != {len(wt)}:
        raise InputError(f"ridge: all sequences must have the wild type's length {len(wt)} (found {sorted(lengths)[:5]})")
    matrix = sequence_matrix(list(sequences), len(wt))
    y = np.asarray(scores, dtype=np.float64)
    model = OneHotRidge(wt, substitution_types).fit(matrix[split.train], y[split.train])
    tune_x, tune_y = matrix[split.tune], y[split.tune]
    tune_mse = {a: float(np.mean((model.predict(tune_x, a) - tune_y) ** 2)) for a in alphas}
    best = min(alphas, key=tune_mse.__getitem__)
    test_pred = model.predict(matrix[split.test], best)
    test_y = y[split.test]
    return RidgeResult(alpha=float(best), tune_mse=tune_mse[best],
                       tune_pearson=correlation(model.predict(tune_x, best), tune_y),
                       test_pearson=correlation(test_pred, test_y),
                       test_spearman=correlation(test_pred, test_y, "spearman"),
                       num_features=model.num_features, test_predictions=test_pred, model=model)
