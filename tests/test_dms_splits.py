"""DMS splits: the published nn4dms index files and the three seeded splits, on real tables (the
repository's subsets in tests/data/nn4dms)."""

from __future__ import annotations

import numpy as np
import pytest

from protlc.dms.splits import mutational_split, positional_split, published_split, random_split
from protlc.dms.tables import NUM_MUTATIONS, POSITIONS
from protlc.errors import ConfigError, InputError

NN4DMS_SIZES = {  # (rows, train, tune, test) of the nn4dms main split restricted to the tests/data subsets
    "avgfp": (541, 437, 50, 54),
    "bgl3": (267, 212, 25, 30),
    "pab1": (1022, 816, 103, 103),
}


def _assert_partition(split, n):
    joined = np.concatenate([split.train, split.tune, split.test])
    assert len(np.unique(joined)) == len(joined) == n
    assert joined.min() == 0 and joined.max() == n - 1


@pytest.mark.parametrize("name", sorted(NN4DMS_SIZES))
def test_published_main_splits_are_disjoint_and_cover_the_table(nn4dms, name):
    rows, *sizes = NN4DMS_SIZES[name]
    split = published_split(nn4dms / name / "splits_main", n_rows=rows)
    assert list(split.sizes().values()) == sizes
    _assert_partition(split, rows)
    assert split.test[:3].tolist() == sorted(np.loadtxt(nn4dms / name / "splits_main" / "stest.txt", dtype=int))[:3]


def test_published_split_rejects_bad_index_files(nn4dms, tmp_path):
    source = nn4dms / "pab1" / "splits_main"
    for name in ("train.txt", "tune.txt", "stest.txt"):
        (tmp_path / name).write_text((source / name).read_text())
    with pytest.raises(InputError, match="outside the table's 1000 rows"):
        published_split(tmp_path, n_rows=1000)
    (tmp_path / "tune.txt").write_text((source / "stest.txt").read_text().split("\n", 1)[0] + "\n")
    with pytest.raises(InputError, match="is in both tune.txt and stest.txt"):
        published_split(tmp_path)
    (tmp_path / "tune.txt").write_text("12\nabc\n")
    with pytest.raises(InputError, match=r"tune.txt, line 2: 'abc' is not a row index"):
        published_split(tmp_path)
    (tmp_path / "tune.txt").write_text("")
    with pytest.raises(InputError, match="the tune part is empty"):
        published_split(tmp_path)
    (tmp_path / "stest.txt").unlink()
    with pytest.raises(InputError, match="missing split file"):
        published_split(tmp_path)


def test_random_split_sizes_and_seeds(pab1):
    n = len(pab1)
    split = random_split(n, seed=7)
    _assert_partition(split, n)
    assert n == 1022 and split.sizes() == {"train": n - 102 - 92, "tune": 92, "test": 102}
    assert np.array_equal(random_split(n, seed=7).test, split.test)
    assert not np.array_equal(random_split(n, seed=8).test, split.test)
    assert np.array_equal(random_split(n, seed=np.random.default_rng(7)).test, split.test)
    with pytest.raises(ConfigError, match="summing to 1"):
        random_split(n, fractions=(0.8, 0.1, 0.2))
    with pytest.raises(ConfigError, match="test part is empty"):
        random_split(3, fractions=(0.8, 0.1, 0.1))


def test_mutational_split_extrapolates_to_more_mutations(pab1):
    counts = pab1[NUM_MUTATIONS].to_numpy()
    split = mutational_split(counts, k=1, seed=0)
    _assert_partition(split, len(pab1))
    assert counts[split.train].max() == 1 and counts[split.tune].max() == 1
    assert counts[split.test].min() == 2
    assert split.sizes()["test"] == 990 and split.sizes()["tune"] == round(0.1 * 32)
    with pytest.raises(ConfigError, match="test part is empty"):
        mutational_split(counts, k=2, seed=0)


def test_positional_split_holds_out_positions(pab1):
    positions = pab1[POSITIONS].tolist()
    split = positional_split(positions, seed=3, fraction=0.2)
    _assert_partition(split, len(pab1))
    seen = {p for i in np.concatenate([split.train, split.tune]) for p in positions[i]}
    held = set(range(75)) - seen
    assert len(held) == 15
    assert all(set(positions[i]) & held for i in split.test)
    other = positional_split(positions, seed=4, fraction=0.2)
    assert not np.array_equal(other.test, split.test)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        positional_split(positions, seed=3, fraction=1.0)


def _touched(positions, rows):
    return {p for i in rows for p in positions[i]}


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_positional_extrapolating_tune_holds_out_its_own_positions(pab1, seed):
    positions = pab1[POSITIONS].tolist()
    split = positional_split(positions, seed=seed, fraction=0.2, tune_fraction=0.1, tune_mode="extrapolate")
    _assert_partition(split, len(pab1))
    train_positions, tune_positions = _touched(positions, split.train), _touched(positions, split.tune)
    test_only = _touched(positions, split.test) - train_positions - tune_positions
    assert len(test_only) == 15  # test's held-out positions are as with the random tune (same seed, drawn first)
    assert not test_only & tune_positions
    tune_only = tune_positions - train_positions
    assert tune_only and all(set(positions[i]) & tune_only for i in split.tune)  # every tune variant extrapolates
    # tune is about tune_fraction of the pool (the set of positions grows one position at a time)
    pool = len(split.train) + len(split.tune)
    assert abs(len(split.tune) - 0.1 * pool) <= 0.05 * pool
    random_tune = positional_split(positions, seed=seed, fraction=0.2, tune_fraction=0.1)
    assert np.array_equal(random_tune.test, split.test)
    again = positional_split(positions, seed=seed, fraction=0.2, tune_fraction=0.1, tune_mode="extrapolate")
    assert all(np.array_equal(a, b) for a, b in zip(again.parts().values(), split.parts().values()))


def test_positional_extrapolating_tune_depends_on_the_seed_and_fraction(pab1):
    positions = pab1[POSITIONS].tolist()
    split = positional_split(positions, seed=2, tune_mode="extrapolate")
    assert not np.array_equal(positional_split(positions, seed=3, tune_mode="extrapolate").tune, split.tune)
    larger = positional_split(positions, seed=2, tune_fraction=0.3, tune_mode="extrapolate")
    assert len(larger.tune) > len(split.tune) and np.array_equal(larger.test, split.test)


def test_mutational_extrapolating_tune_takes_the_most_mutated(nn4dms):
    from protlc.dms.tables import load_dms_table

    counts = load_dms_table(nn4dms / "avgfp" / "avgfp.tsv")[NUM_MUTATIONS].to_numpy()
    split = mutational_split(counts, k=3, seed=0, tune_fraction=0.1, tune_mode="extrapolate")
    _assert_partition(split, len(counts))
    pool = np.flatnonzero(counts <= 3)
    assert split.sizes()["tune"] == round(0.1 * len(pool))
    assert counts[split.tune].min() >= counts[split.train].max()  # no train variant has more mutations
    assert (counts[split.tune] == 3).all() and (counts[split.train] == 3).any()  # the subset has enough triples
    assert np.array_equal(split.test, np.flatnonzero(counts > 3))
    random_tune = mutational_split(counts, k=3, seed=0, tune_fraction=0.1)
    assert counts[split.tune].mean() > counts[random_tune.tune].mean()
    again = mutational_split(counts, k=3, seed=0, tune_fraction=0.1, tune_mode="extrapolate")
    assert np.array_equal(again.tune, split.tune)
    assert not np.array_equal(mutational_split(counts, k=3, seed=1, tune_mode="extrapolate").tune, split.tune)


def test_mutational_extrapolating_tune_falls_back_to_fewer_mutations():
    counts = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 3])  # pool (k=2) of 10 rows, only one double
    split = mutational_split(counts, k=2, seed=0, tune_fraction=0.3, tune_mode="extrapolate")
    assert 9 in split.tune and len(split.tune) == 3 and set(counts[split.tune]) == {1, 2}
    assert 0 in split.train and split.test.tolist() == [10, 11]


def test_tune_mode_errors(pab1):
    with pytest.raises(ConfigError, match="tune mode must be one of random, extrapolate, got 'outward'"):
        mutational_split(pab1[NUM_MUTATIONS].to_numpy(), k=1, tune_mode="outward")
    with pytest.raises(ConfigError, match="tune mode must be one of"):
        positional_split(pab1[POSITIONS].tolist(), tune_mode="Extrapolate")
    with pytest.raises(ConfigError, match="the tune part is empty"):  # every position held out for test
        positional_split([[], [0], [1]], fraction=0.9, tune_mode="extrapolate")


@pytest.mark.parametrize("seed", range(4))
def test_positional_extrapolating_tune_size_is_the_closest_to_the_fraction(seed):
    # the wild type and 10 singles at each of 10 positions: test holds 1 position (10 variants) out, and of the
    # 91 left a tune of 9.1 is closest to one more position (10 variants), not two (20)
    positions = [[]] + [[p] for p in range(10) for _ in range(10)]
    split = positional_split(positions, seed=seed, fraction=0.1, tune_fraction=0.1, tune_mode="extrapolate")
    assert split.sizes() == {"train": 81, "tune": 10, "test": 10}
    assert 0 in split.train
    tune_positions = _touched(positions, split.tune)
    assert len(tune_positions) == 1 and not tune_positions & _touched(positions, split.test)
    wider = positional_split(positions, seed=seed, fraction=0.1, tune_fraction=0.17, tune_mode="extrapolate")
    assert wider.sizes()["tune"] == 20  # 15.5 is closer to 20 than to 10
