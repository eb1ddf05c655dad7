"""Per-family stratified train/dev/test split with its own numpy Generator.

Rule for a family of n members with fractions (f_train, f_dev, f_test):

* ``n_test = floor(n * f_test + 0.5)`` and ``n_dev = floor(n * f_dev + 0.5)`` (round half up);
* train keeps the rest, and at least one member: while ``n_dev + n_test >= n``, dev gives one up
  first, then test.

So with the default 0.8,0.1,0.1 a family needs 5 members to appear in dev and test; smaller families
(1 to 4 members) go to train only. Which members go where is a uniformly random choice within each
family. The whole split is one function of (family labels in input order, fractions, Generator).
"""

from __future__ import annotations

import numpy as np

from protlc.errors import ConfigError

TRAIN, DEV, TEST = 0, 1, 2  # split codes, in the order of protlc.columns.SPLITS
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def parse_fractions(text: str | tuple[float, ...] | None) -> tuple[float, float, float]:
    """Parse ``"0.8,0.1,0.1"`` (or a tuple) into three positive fractions summing to 1.

    Raises:
        ConfigError: not three numbers, a fraction <= 0, or a sum other than 1.
    """
    if text is None:
        return DEFAULT_FRACTIONS
    try:
        values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise ConfigError(f"--split {text!r}: expected three numbers like 0.8,0.1,0.1") from None
    if len(values) != 3:
        raise ConfigError(f"--split {text!r}: expected three fractions train,dev,test like 0.8,0.1,0.1")
    if min(values) <= 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"--split {text!r}: the three fractions must be > 0 and sum to 1")
    return values  # type: ignore[return-value]


def family_split_sizes(sizes: np.ndarray, fractions: tuple[float, float, float]) -> np.ndarray:
    """Members per split for families of the given sizes.

    Args:
        sizes: int array ``(F,)`` of family sizes (>= 1).
    Returns:
        int64 array ``(F, 3)``: train, dev, test counts per family (rows sum to ``sizes``).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    n_dev = np.floor(sizes * fractions[1] + 0.5).astype(np.int64)
    n_test = np.floor(sizes * fractions[2] + 0.5).astype(np.int64)
    excess = np.maximum(n_dev + n_test - (sizes - 1), 0)  # train must keep one member
    from_dev = np.minimum(excess, n_dev)
    n_dev -= from_dev
    n_test -= excess - from_dev
    return np.stack([sizes - n_dev - n_test, n_dev, n_test], axis=1)


def stratified_split(labels: np.ndarray, fractions: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Assign every row to train/dev/test, per family.

    Args:
        labels: int array ``(N,)`` of family indices (any non-negative ints).
        fractions: train, dev, test fractions (see :func:`parse_fractions`).
        rng: the split's own Generator.
    Returns:
        int8 array ``(N,)`` of split codes :data:`TRAIN`, :data:`DEV`, :data:`TEST`.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    # rows grouped by family, in random order within each family
    order = rng.permutation(n)
    order = order[np.argsort(labels[order], kind="stable")]
    grouped = labels[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if n else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, n])
    counts = family_split_sizes(sizes, fractions)
    rank = np.arange(n) - np.repeat(starts, sizes)  # position of each row within its family
    n_test = np.repeat(counts[:, 2], sizes)
    n_dev = np.repeat(counts[:, 1], sizes)
    codes_grouped = np.where(rank < n_test, TEST, np.where(rank < n_test + n_dev, DEV, TRAIN)).astype(np.int8)
    codes = np.empty(n, dtype=np.int8)
    codes[order] = codes_grouped
    return codes
