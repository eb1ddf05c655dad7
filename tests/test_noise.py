"""Noise exactly as docs/method.md §3: exact-count selection, symmetric/pair label noise, crop windows."""

from __future__ import annotations

import numpy as np
import pytest

from protlc.data import readers
from protlc.data.noise import (
    check_rates, choose_rows, corrupt_labels, crop_windows, exact_count, pair_map, parse_crop_fraction,
)
from protlc.errors import ConfigError


@pytest.fixture(scope="module")
def tiny(embedded_dir):
    records = list(readers.iter_records(embedded_dir / "exthomfam_tiny32.tsv"))
    _, labels = np.unique([r.family_id for r in records], return_inverse=True)
    lengths = np.array([len(r.sequence) for r in records])
    return labels.astype(np.int32), lengths, [r.sequence for r in records]


def test_exact_count_selection():
    assert exact_count(3424, 0.4) == 1370 and exact_count(10, 0.25) == 3 and exact_count(10, 0.0) == 0
    rows = choose_rows(3424, 0.4, np.random.default_rng(0))
    assert rows.size == 1370 and np.unique(rows).size == 1370 and np.all(np.diff(rows) > 0)


@pytest.mark.parametrize("rate", [0.1, 0.4, 0.8])
def test_symmetric_noise(tiny, rate):
    labels, _, _ = tiny
    observed, targets = corrupt_labels(labels, 107, rate, "symmetric", np.random.default_rng(3))
    noisy = observed != labels
    assert targets is None and observed.dtype == np.int32
    assert noisy.sum() == exact_count(labels.size, rate)  # never drawn as its own noise
    assert observed.min() >= 0 and observed.max() < 107


def test_symmetric_noise_is_uniform_over_other_classes():
    labels = np.zeros(60000, dtype=np.int32)
    observed, _ = corrupt_labels(labels, 5, 0.5, "symmetric", np.random.default_rng(0))
    counts = np.bincount(observed[observed != 0], minlength=5)
    assert counts[0] == 0
    assert np.allclose(counts[1:] / counts[1:].sum(), 0.25, atol=0.01)


def test_pair_noise_uses_a_fixed_derangement(tiny):
    labels, _, _ = tiny
    observed, targets = corrupt_labels(labels, 107, 0.4, "pair", np.random.default_rng(5))
    noisy = observed != labels
    assert noisy.sum() == exact_count(labels.size, 0.4)
    assert np.array_equal(observed[noisy], targets[labels[noisy]])
    assert (targets != np.arange(107)).all() and np.unique(targets).size == 107
    # one cycle through all classes
    seen, c = set(), 0
    while c not in seen:
        seen.add(c)
        c = targets[c]
    assert len(seen) == 107
    assert np.array_equal(pair_map(107, np.random.default_rng(5)), targets)
    with pytest.raises(ConfigError, match="at least 2"):
        pair_map(1, np.random.default_rng(0))


def test_noise_is_reproducible(tiny):
    labels, lengths, _ = tiny
    a = corrupt_labels(labels, 107, 0.4, "symmetric", np.random.default_rng(11))[0]
    b = corrupt_labels(labels, 107, 0.4, "symmetric", np.random.default_rng(11))[0]
    c = corrupt_labels(labels, 107, 0.4, "symmetric", np.random.default_rng(12))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert all(np.array_equal(x, y) for x, y in zip(crop_windows(lengths, 0.5, (0.5, 0.9), np.random.default_rng(1)),
                                                  crop_windows(lengths, 0.5, (0.5, 0.9), np.random.default_rng(1))))


def test_crop_windows(tiny):
    _, lengths, sequences = tiny
    starts, ends = crop_windows(lengths, 0.5, (0.5, 0.9), np.random.default_rng(2))
    cropped = (starts > 0) | (ends < lengths)
    assert starts.dtype == np.int32 and ends.dtype == np.int32
    assert cropped.sum() == exact_count(lengths.size, 0.5)
    assert (starts >= 0).all() and (ends <= lengths).all() and (ends > starts).all()
    kept = (ends - starts)[cropped] / lengths[cropped]
    assert kept.min() >= 0.5 - 0.5 / lengths.min() and kept.max() <= 0.9 + 0.5 / lengths.min()
    assert 0.65 < kept.mean() < 0.75
    # uncropped rows keep the whole sequence
    assert (starts[~cropped] == 0).all() and (ends[~cropped] == lengths[~cropped]).all()
    # start positions spread over the whole allowed range, not just the front
    assert (starts[cropped] > 0).mean() > 0.8


def test_crop_everything_and_nothing(tiny):
    _, lengths, _ = tiny
    starts, ends = crop_windows(lengths, 1.0, (0.5, 0.5), np.random.default_rng(0))
    assert np.allclose((ends - starts) / lengths, 0.5, atol=0.5 / lengths.min() + 1e-9)
    starts, ends = crop_windows(lengths, 0.0, (0.5, 0.9), np.random.default_rng(0))
    assert (starts == 0).all() and (ends == lengths).all()


@pytest.mark.parametrize("args, message", [
    ((1.0, 0.0, (0.5, 0.9), "symmetric"), "--label-noise 1.0"),
    ((-0.1, 0.0, (0.5, 0.9), "symmetric"), "--label-noise -0.1"),
    ((0.2, 1.5, (0.5, 0.9), "symmetric"), "--crop-noise 1.5"),
    ((0.2, 0.5, (0.0, 0.9), "symmetric"), "--crop-fraction"),
    ((0.2, 0.5, (0.9, 0.5), "symmetric"), "--crop-fraction"),
    ((0.2, 0.5, (0.5, 0.9), "asymmetric"), "--label-noise-kind"),
])
def test_rate_checks(args, message):
    with pytest.raises(ConfigError, match=message):
        check_rates(*args)


def test_parse_crop_fraction():
    assert parse_crop_fraction("0.3,0.7") == (0.3, 0.7)
    assert parse_crop_fraction("0.6") == (0.6, 0.6)
    with pytest.raises(ConfigError):
        parse_crop_fraction("half")


def test_label_noise_needs_two_classes():
    with pytest.raises(ConfigError, match="at least 2"):
        corrupt_labels(np.zeros(10, dtype=np.int32), 1, 0.2, "symmetric", np.random.default_rng(0))
    observed, _ = corrupt_labels(np.zeros(10, dtype=np.int32), 1, 0.0, "symmetric", np.random.default_rng(0))
    assert (observed == 0).all()
