"""Per-family stratified split: the tiny-family rule, stratification, its own Generator."""

from __future__ import annotations

import numpy as np
import pytest

from protlc.data import readers
from protlc.data.splits import DEV, TEST, TRAIN, family_split_sizes, parse_fractions, stratified_split
from protlc.errors import ConfigError


def family_labels(path) -> np.ndarray:
    """Family index per record of a real file, in file order."""
    families = [r.family_id for r in readers.iter_records(path)]
    _, labels = np.unique(families, return_inverse=True)
    return labels


def test_parse_fractions():
    assert parse_fractions(None) == (0.8, 0.1, 0.1)
    assert parse_fractions("0.6,0.2,0.2") == (0.6, 0.2, 0.2)
    for bad in ("0.8,0.2", "0.9,0.1,0", "0.5,0.3,0.3", "a,b,c", "0.8,-0.1,0.3"):
        with pytest.raises(ConfigError, match="--split"):
            parse_fractions(bad)


def test_tiny_family_rule():
    sizes = np.arange(1, 21)
    counts = family_split_sizes(sizes, (0.8, 0.1, 0.1))
    assert (counts.sum(axis=1) == sizes).all() and (counts[:, 0] >= 1).all()
    # 1-4 members: train only; 5-14: one dev, one test; 15-20: two each (round half up)
    assert counts[:4, 1:].sum() == 0
    assert (counts[4:14, 1:] == 1).all()
    assert (counts[14:, 1:] == 2).all()
    # large dev/test fractions: train keeps one member, dev gives up members first
    assert family_split_sizes(np.array([1, 2, 3]), (0.2, 0.4, 0.4)).tolist() == [[1, 0, 0], [1, 0, 1], [1, 1, 1]]


def test_split_is_stratified_per_family(embedded_dir):
    labels = family_labels(embedded_dir / "exthomfam_tiny32.tsv")  # 107 families x 32
    codes = stratified_split(labels, (0.8, 0.1, 0.1), np.random.default_rng(0))
    for family in range(labels.max() + 1):
        mine = codes[labels == family]
        assert [(mine == c).sum() for c in (TRAIN, DEV, TEST)] == [26, 3, 3]  # round(3.2) = 3


def test_split_is_reproducible_and_seeded(embedded_dir):
    labels = family_labels(embedded_dir / "exthomfam_16fam.tsv")
    np.random.seed(1)
    first = stratified_split(labels, (0.8, 0.1, 0.1), np.random.default_rng(7))
    np.random.seed(2)  # the global RNG plays no part
    again = stratified_split(labels, (0.8, 0.1, 0.1), np.random.default_rng(7))
    other = stratified_split(labels, (0.8, 0.1, 0.1), np.random.default_rng(8))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.dtype == np.int8


def test_split_members_are_uniformly_chosen(embedded_dir):
    labels = family_labels(embedded_dir / "exthomfam_16fam.tsv")
    hits = np.zeros(labels.size)
    for seed in range(300):
        hits += stratified_split(labels, (0.8, 0.1, 0.1), np.random.default_rng(seed)) == TEST
    # each row is in test with probability p = 3/32: over 300 draws, binomial counts (variance 300 p (1-p) = 25.5);
    # a split that favoured some rows would inflate the variance across rows
    p = 3 / 32
    assert abs(hits.mean() - 300 * p) < 1e-9
    assert 18 < hits.var() < 34


def test_empty_input():
    assert stratified_split(np.zeros(0, dtype=int), (0.8, 0.1, 0.1), np.random.default_rng(0)).size == 0
