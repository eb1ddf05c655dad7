"""Train/tune/test splits of a DMS table: published nn4dms index files, random, mutational and positional.

Every split returns a :class:`Split` of sorted 0-based row-index arrays (int64) and raises
:class:`~protlc.errors.InputError` or :class:`~protlc.errors.ConfigError` when a part would be empty.
Each random split draws only from the ``numpy.random.Generator`` built from its own ``seed`` (an int or a
Generator), never from global state.

The tune part of the mutational and positional splits comes from their training pool in one of
:data:`TUNE_MODES`: ``random`` (a random ``tune_fraction`` of the pool, drawn from the training distribution)
or ``extrapolate`` (a part of the pool that lies beyond the rest, as test lies beyond train and tune:
the pool variants with the most mutations, or the pool variants touching a second set of held-out positions).

nn4dms main splits (verified on the shared data: the three files are disjoint and cover every row):
avGFP 43,758 / 4,863 / 5,403 of 54,024; Bgl3 21,588 / 2,399 / 2,666 of 26,653; Pab1 33,089 / 3,677 /
4,086 of 40,852 (train / tune / test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from protlc.errors import ConfigError, InputError

PART_NAMES = ("train", "tune", "test")
NN4DMS_FILES = {"train": "train.txt", "tune": "tune.txt", "test": "stest.txt"}
DEFAULT_FRACTIONS = (0.81, 0.09, 0.10)
TUNE_MODES = ("random", "extrapolate")


@dataclass(frozen=True)
class Split:
    """Row indices (int64, sorted) of the three parts."""

    train: np.ndarray
    tune: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {name: int(len(getattr(self, name))) for name in PART_NAMES}

    def parts(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in PART_NAMES}


def finish_split(train, tune, test, what: str, error: type[Exception] = ConfigError) -> Split:
    """The split of these row indices (sorted int64); ``error`` names ``what`` when a part is empty."""
    split = Split(*(np.sort(np.asarray(part, dtype=np.int64)) for part in (train, tune, test)))
    empty = [name for name, size in split.sizes().items() if size == 0]
    if empty:
        raise error(f"{what}: the {' and '.join(empty)} part is empty (sizes {split.sizes()}); "
                          "adjust the split settings or use more data")
    return split


def published_split(index_dir: str | Path, n_rows: int | None = None) -> Split:
    """Read nn4dms ``train.txt``, ``tune.txt``, ``stest.txt`` (one 0-based row index per line, header excluded).

    Args:
        n_rows: rows of the table; when given, every index must be below it.

    Raises:
        InputError: missing file, a line that is not an index, an index out of range, or a row in two parts.
    """
    index_dir = Path(index_dir)
    parts = {}
    for name, filename in NN4DMS_FILES.items():
        path = index_dir / filename
        if not path.is_file():
            raise InputError(f"{path}: missing split file (expected {', '.join(NN4DMS_FILES.values())} in {index_dir})")
        lines = path.read_text().split()
        try:
            indices = np.array([int(x) for x in lines], dtype=np.int64)
        except ValueError:
            line = next(i for i, x in enumerate(lines, 1) if not x.lstrip("-").isdigit())
            raise InputError(f"{path}, line {line}: {lines[line - 1]!r} is not a row index") from None
        out_of_range = indices[(indices < 0) | ((indices >= n_rows) if n_rows is not None else False)]
        if len(out_of_range):
            raise InputError(f"{path}: row index {int(out_of_range[0])} is outside the table's {n_rows} rows "
                             "(indices are 0-based, header excluded)")
        if len(np.unique(indices)) != len(indices):
            raise InputError(f"{path}: a row index is listed twice")
        parts[name] = indices
    for a, b in (("train", "tune"), ("train", "test"), ("tune", "test")):
        shared = np.intersect1d(parts[a], parts[b])
        if len(shared):
            raise InputError(f"{index_dir}: row {int(shared[0])} is in both {NN4DMS_FILES[a]} and {NN4DMS_FILES[b]} "
                             f"({len(shared)} shared rows)")
    return finish_split(parts["train"], parts["tune"], parts["test"], str(index_dir), InputError)


def _tune_size(pool: np.ndarray, tune_fraction: float) -> int:
    """Rows of the tune part of ``pool``: ``round(tune_fraction * len(pool))``."""
    return int(round(tune_fraction * len(pool)))


def _split_pool(pool: np.ndarray, tune_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, tune) partition of ``pool`` with ``round(tune_fraction * len)`` tune rows."""
    shuffled = rng.permutation(pool)
    n_tune = _tune_size(pool, tune_fraction)
    return shuffled[n_tune:], shuffled[:n_tune]


def _most_mutated_tune(pool: np.ndarray, counts: np.ndarray, tune_fraction: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, tune) of ``pool`` whose ``round(tune_fraction * len)`` tune rows are the pool's most mutated
    variants (``counts`` per pool row), ties broken at random."""
    shuffled = rng.permutation(len(pool))
    order = shuffled[np.argsort(-counts[shuffled], kind="stable")]
    n_tune = _tune_size(pool, tune_fraction)
    return pool[order[n_tune:]], pool[order[:n_tune]]


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be between 0 and 1 (exclusive), got {value}")


def _check_tune_mode(tune_mode: str) -> None:
    if tune_mode not in TUNE_MODES:
        raise ConfigError(f"split tune mode must be one of {', '.join(TUNE_MODES)}, got {tune_mode!r}")


def random_split(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 seed: int | np.random.Generator = 0) -> Split:
    """Random train/tune/test split of ``n`` rows; test and tune get ``round(fraction * n)`` rows each.

    Raises:
        ConfigError: fractions not three positive numbers summing to 1, or an empty part.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must be three positive numbers summing to 1, got {tuple(fractions)}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(fractions[2] * n))
    n_tune = int(round(fractions[1] * n))
    return finish_split(order[n_test + n_tune:], order[n_test:n_test + n_tune], order[:n_test], f"random split of {n} rows")


def mutational_split(num_mutations: Sequence[int], k: int, seed: int | np.random.Generator = 0,
                     tune_fraction: float = 0.1, tune_mode: str = "random") -> Split:
    """Mutational extrapolation: train and tune hold variants with at most ``k`` mutations, test every
    variant with more than ``k``. Tune is ``round(tune_fraction * pool)`` of the pool: random ones
    (``tune_mode="random"``), or with ``"extrapolate"`` the most mutated ones (the k-mutation variants first,
    ties broken at random), the pool's variants nearest to test in mutation count.

    Raises:
        ConfigError: bad fraction or tune mode, an empty part (e.g. no variant has more than ``k`` mutations).
    """
    _check_fraction(tune_fraction, "tune_fraction")
    _check_tune_mode(tune_mode)
    counts = np.asarray(num_mutations)
    pool = np.flatnonzero(counts <= k)
    rng = np.random.default_rng(seed)
    if tune_mode == "extrapolate":
        train, tune = _most_mutated_tune(pool, counts[pool], tune_fraction, rng)
    else:
        train, tune = _split_pool(pool, tune_fraction, rng)
    return finish_split(train, tune, np.flatnonzero(counts > k), f"mutational split at k={k} (tune {tune_mode})")


class _PositionIndex:
    """Which positions each variant touches, flattened: ``flat`` (positions) and ``owner`` (their variant)."""

    def __init__(self, positions_per_variant: Sequence[Sequence[int]]):
        lengths = np.fromiter((len(p) for p in positions_per_variant), dtype=np.int64)
        self.n = len(lengths)
        self.flat = np.fromiter((q for p in positions_per_variant for q in p), dtype=np.int64,
                                count=int(lengths.sum()))
        self.owner = np.repeat(np.arange(self.n), lengths)

    def touching(self, positions: np.ndarray) -> np.ndarray:
        """Boolean mask of the variants mutated at any of ``positions``."""
        touches = np.zeros(self.n, dtype=bool)
        touches[self.owner[np.isin(self.flat, positions)]] = True
        return touches

    def first_rank(self, order: np.ndarray) -> np.ndarray:
        """Per variant, the lowest rank in ``order`` (non-negative positions) among its positions;
        ``len(order)`` for a variant with no position in ``order`` (e.g. the wild type)."""
        rank_of = np.full(int(max(self.flat.max(initial=0), order.max(initial=0))) + 1, len(order), dtype=np.int64)
        rank_of[order] = np.arange(len(order))
        first = np.full(self.n, len(order), dtype=np.int64)
        np.minimum.at(first, self.owner, rank_of[self.flat])
        return first


def _held_out_positions_tune(index: _PositionIndex, pool: np.ndarray, test_positions: np.ndarray,
                             tune_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """(train, tune, number of tune positions): tune = the pool variants touching a seeded set of positions
    disjoint from ``test_positions``, the set grown in a random order until tune is closest to
    ``tune_fraction`` of the pool (at least one position); train = the pool variants touching none of them."""
    candidates = np.setdiff1d(np.unique(index.flat), test_positions)
    if len(candidates) == 0:
        return pool, pool[:0], 0
    order = rng.permutation(candidates)
    first = index.first_rank(order)[pool]
    # tune size when the first m positions of the order are held out, m = 1 .. len(order)
    sizes = np.cumsum(np.bincount(first, minlength=len(order) + 1))[:len(order)]
    n_positions = int(np.argmin(np.abs(sizes - tune_fraction * len(pool)))) + 1
    in_tune = first < n_positions
    return pool[~in_tune], pool[in_tune], n_positions


def positional_split(positions_per_variant: Sequence[Sequence[int]], seed: int | np.random.Generator = 0,
                     fraction: float = 0.2, tune_fraction: float = 0.1, tune_mode: str = "random") -> Split:
    """Positional extrapolation: hold out a random ``fraction`` of the mutated positions; test = variants
    touching any held-out position; train/tune = the rest (which includes the wild type), so no training
    variant is mutated at a test position. Tune is a random ``tune_fraction`` of the rest
    (``tune_mode="random"``), or with ``"extrapolate"`` the variants touching a second seeded set of held-out
    positions (disjoint from test's, sized so tune is about ``tune_fraction`` of the rest), so that no
    training variant is mutated at a tune position either.

    Raises:
        ConfigError: fractions or tune mode out of range, or an empty part.
    """
    _check_fraction(fraction, "positional fraction")
    _check_fraction(tune_fraction, "tune_fraction")
    _check_tune_mode(tune_mode)
    rng = np.random.default_rng(seed)
    index = _PositionIndex(positions_per_variant)
    mutated = np.unique(index.flat)
    n_held = int(round(fraction * len(mutated)))
    held = rng.choice(mutated, size=n_held, replace=False) if n_held else np.empty(0, dtype=np.int64)
    touches = index.touching(held)
    pool = np.flatnonzero(~touches)
    if tune_mode == "extrapolate":
        train, tune, n_tune_positions = _held_out_positions_tune(index, pool, held, tune_fraction, rng)
        tune_what = f"tune holding out {n_tune_positions} other positions"
    else:
        train, tune = _split_pool(pool, tune_fraction, rng)
        tune_what = "tune random"
    return finish_split(train, tune, np.flatnonzero(touches),
                        f"positional split holding out {n_held} of {len(mutated)} positions ({tune_what})")
