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
