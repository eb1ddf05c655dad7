"""Train/tune/test splits of a DMS table: published nn4dms index files, random, mutational and positional.

Every split returns a :class:`Split` of sorted 0-based row-index arrays (int64) and raises
:class:`~protlc.errors.InputError` or :class:`~protlc.errors.ConfigError` when a part would be empty.
Each random split draws only from the ``numpy.random.Generator`` built from its own ``seed`` (an int or a
Generator), never from global state.

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


def _split_pool(pool: np.ndarray, tune_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, tune) partition of ``pool`` with ``round(tune_fraction * len)`` tune rows."""
    shuffled = rng.permutation(pool)
    n_tune = int(round(tune_fraction * len(pool)))
    return shuffled[n_tune:], shuffled[:n_tune]


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be between 0 and 1 (exclusive), got {value}")


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
                     tune_fraction: float = 0.1) -> Split:
    """Mutational extrapolation: train and tune hold variants with at most ``k`` mutations (tune a random
    ``tune_fraction`` of them), test every variant with more than ``k``.

    Raises:
        ConfigError: an empty part (e.g. no variant has more than ``k`` mutations).
    """
    _check_fraction(tune_fraction, "tune_fraction")
    counts = np.asarray(num_mutations)
    pool = np.flatnonzero(counts <= k)
    train, tune = _split_pool(pool, tune_fraction, np.random.default_rng(seed))
    return finish_split(train, tune, np.flatnonzero(counts > k), f"mutational split at k={k}")


def positional_split(positions_per_variant: Sequence[Sequence[int]], seed: int | np.random.Generator = 0,
                     fraction: float = 0.2, tune_fraction: float = 0.1) -> Split:
    """Positional extrapolation: hold out a random ``fraction`` of the mutated positions; test = variants
    touching any held-out position; train/tune = a random partition of the rest (which includes the
    wild type), so no training variant is mutated at a test position.

    Raises:
        ConfigError: fractions out of range or an empty part.
    """
    _check_fraction(fraction, "positional fraction")
    _check_fraction(tune_fraction, "tune_fraction")
    rng = np.random.default_rng(seed)
    lengths = np.fromiter((len(p) for p in positions_per_variant), dtype=np.int64)
    flat = np.fromiter((q for p in positions_per_variant for q in p), dtype=np.int64, count=int(lengths.sum()))
    mutated = np.unique(flat)
    n_held = int(round(fraction * len(mutated)))
    held = rng.choice(mutated, size=n_held, replace=False) if n_held else np.empty(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    touches = np.zeros(len(lengths), dtype=bool)
    touches[owner[np.isin(flat, held)]] = True
    train, tune = _split_pool(np.flatnonzero(~touches), tune_fraction, rng)
    return finish_split(train, tune, np.flatnonzero(touches),
                   f"positional split holding out {n_held} of {len(mutated)} positions")
