"""Training-split noise, exactly as docs/method.md §3 describes: cropping noise and label noise.

Both are pure functions of arrays and a numpy Generator. Selection is by exact count: noise of rate
r over N training rows hits exactly ``floor(r * N + 0.5)`` rows, chosen uniformly at random without
replacement, so the realised fraction is r up to rounding (not a Bernoulli draw that wanders).

* Cropping: a selected sequence of length n keeps one contiguous window of
  ``w = clip(floor(f * n + 0.5), 1, n)`` residues, f drawn uniformly from ``[min, max]`` of the
  fraction range, the window's start uniform over ``0 .. n - w``. Its ``crop_start``/``crop_end``
  (0-based, end exclusive) are recorded; unselected rows keep ``0 .. n``.
* Label noise, symmetric: the new label is uniform over the other C - 1 classes
  (``(y + k) mod C`` with k uniform in 1..C-1).
* Label noise, pair: every class has one fixed confusable class, ``pair_map[y]``. The map is one
  random cycle through all classes (a derangement drawn from the noise Generator), so no class maps to
  itself and every class is the target of exactly one other class.
* Label noise, confusable: every class's fixed wrong label is its most similar other class by k-mer
  profile (:func:`protlc.data.similarity.confusable_map`, computed by the caller from the training
  domains and passed in as ``targets``); no random numbers go into the map, and the rows are chosen
  exactly as for the other kinds.

The true label is never drawn as its own noise; ``is_noisy`` is exactly ``label != clean_label``.
"""

from __future__ import annotations

import numpy as np

from protlc.errors import ConfigError

LABEL_NOISE_KINDS = ("symmetric", "pair", "confusable")
DEFAULT_CROP_FRACTION = (0.5, 0.9)


def check_rates(label_noise: float, crop_noise: float, crop_fraction: tuple[float, float], kind: str) -> None:
    """Raises ConfigError unless 0 <= label_noise < 1, 0 <= crop_noise <= 1, 0 < min <= max <= 1 and kind is known."""
    if not 0.0 <= label_noise < 1.0:
        raise ConfigError(f"--label-noise {label_noise}: the rate must be in [0, 1)")
    if not 0.0 <= crop_noise <= 1.0:
        raise ConfigError(f"--crop-noise {crop_noise}: the probability must be in [0, 1]")
    low, high = crop_fraction
    if not 0.0 < low <= high <= 1.0:
        raise ConfigError(f"--crop-fraction {low},{high}: need 0 < MIN <= MAX <= 1")
    if kind not in LABEL_NOISE_KINDS:
        raise ConfigError(f"--label-noise-kind {kind!r}: choose one of {', '.join(LABEL_NOISE_KINDS)}")


def parse_crop_fraction(text: str | tuple[float, float] | None) -> tuple[float, float]:
    """Parse ``"0.5,0.9"`` (or a single number for a fixed fraction). Raises ConfigError."""
    if text is None:
        return DEFAULT_CROP_FRACTION
    try:
        values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise ConfigError(f"--crop-fraction {text!r}: expected MIN,MAX like 0.5,0.9") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ConfigError(f"--crop-fraction {text!r}: expected MIN,MAX like 0.5,0.9")
    return values  # type: ignore[return-value]


def exact_count(n: int, rate: float) -> int:
    """Number of rows a rate hits: ``floor(rate * n + 0.5)``."""
    return int(np.floor(rate * n + 0.5))


def choose_rows(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of exactly :func:`exact_count` rows out of ``n``, uniformly without replacement."""
    return np.sort(rng.choice(n, size=exact_count(n, rate), replace=False))


def crop_windows(
    lengths: np.ndarray, probability: float, fraction_range: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random contiguous windows for cropping noise.

    Args:
        lengths: int array ``(N,)`` of sequence lengths (>= 1).
    Returns:
        ``(starts, ends)``, int32 arrays ``(N,)``; rows not cropped get ``(0, length)``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.zeros(lengths.shape[0], dtype=np.int64)
    ends = lengths.copy()
    rows = choose_rows(lengths.shape[0], probability, rng)
    fractions = rng.uniform(fraction_range[0], fraction_range[1], size=rows.size)
    n = lengths[rows]
    width = np.clip(np.floor(fractions * n + 0.5).astype(np.int64), 1, n)
    starts[rows] = rng.integers(0, n - width + 1)
    ends[rows] = starts[rows] + width
    return starts.astype(np.int32), ends.astype(np.int32)


def pair_map(num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """The fixed confusable class of every class: one random cycle, int32 ``(C,)``, never ``map[c] == c``."""
    if num_classes < 2:
        raise ConfigError("pair label noise needs at least 2 families")
    cycle = rng.permutation(num_classes)
    targets = np.empty(num_classes, dtype=np.int32)
    targets[cycle] = np.roll(cycle, -1)
    return targets


def corrupt_labels(
    labels: np.ndarray, num_classes: int, rate: float, kind: str, rng: np.random.Generator,
    targets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Label noise on exactly ``floor(rate * N + 0.5)`` rows.

    Args:
        labels: int array ``(N,)`` of clean labels in ``[0, num_classes)``.
        kind: ``"symmetric"``, ``"pair"`` or ``"confusable"``.
        targets: ``kind="confusable"`` only: the wrong label of every class, int ``(C,)``, ``targets[c] != c``.
    Returns:
        ``(observed, pair_targets)``: int32 ``(N,)`` observed labels, and the class map ``(C,)`` for
        ``kind="pair"`` or ``"confusable"`` (else None).
    Raises:
        ConfigError: unknown kind, label noise with fewer than 2 classes, or a confusable map that is
            missing, of the wrong size or maps a class to itself.
    """
    labels = np.asarray(labels, dtype=np.int32)
    observed = labels.copy()
    if rate == 0:
        return observed, None
    if num_classes < 2:
        raise ConfigError("label noise needs at least 2 families")
    if kind == "confusable":
        targets = None if targets is None else np.asarray(targets, dtype=np.int32)
        if targets is None or targets.shape != (num_classes,) or (targets == np.arange(num_classes)).any():
            raise ConfigError("confusable label noise needs a map of every family to another family")
    else:
        targets = pair_map(num_classes, rng) if kind == "pair" else None
    rows = choose_rows(labels.shape[0], rate, rng)
    if kind == "symmetric":
        shift = rng.integers(1, num_classes, size=rows.size)
        observed[rows] = (labels[rows] + shift) % num_classes
    elif kind in ("pair", "confusable"):
        observed[rows] = targets[labels[rows]]
    else:
        raise ConfigError(f"unknown label noise kind {kind!r}; choose one of {', '.join(LABEL_NOISE_KINDS)}")
    return observed, targets
