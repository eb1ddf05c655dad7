import numpy as np
import pandas as pd
import pytest
import torch

from protlc.alphabet import ALPHABET
from protlc.data.loading import EncodedSequences, LengthBucketSampler, padding_fraction


@pytest.fixture(scope="module")
def tiny_family_rows(exthomfam_tiny32_tsv):
    df = pd.read_csv(exthomfam_tiny32_tsv, sep="\t")
    return df.iloc[:600]


def test_encoded_batch_pads_and_masks(tiny_family_rows):
    seqs = tiny_family_rows["sequence"].tolist()[:5]
    ds = EncodedSequences(seqs, labels=[0, 1, 2, 3, 4])
    batch = ds[[3, 0]]
    width = max(len(seqs[3]), len(seqs[0]))
    assert batch["tokens"].shape == (2, width)
    assert batch["mask"].sum(1).tolist() == [len(seqs[3]), len(seqs[0])]
    assert ALPHABET.decode(batch["tokens"][0]) == seqs[3]
    assert batch["label"].tolist() == [3, 0] and batch["index"].tolist() == [3, 0]
    assert not batch["tokens"][~batch["mask"]].any()


def test_bucket_sampler_covers_every_row_once_and_wastes_little_padding(tiny_family_rows):
    lengths = tiny_family_rows["sequence"].str.len().to_numpy()
    sampler = LengthBucketSampler(lengths, batch_size=16, seed=3)
    batches = list(sampler)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert len(batches) == len(sampler)
    naive = [list(range(i, min(i + 16, len(lengths)))) for i in range(0, len(lengths), 16)]
    assert padding_fraction(lengths, batches) < 0.10 < padding_fraction(lengths, naive)


def test_bucket_sampler_order_depends_only_on_seed_and_epoch(tiny_family_rows):
    lengths = tiny_family_rows["sequence"].str.len().to_numpy()
    a, b = LengthBucketSampler(lengths, 32, seed=1), LengthBucketSampler(lengths, 32, seed=1)
    assert [x for x in a] == [x for x in b]
    b.set_epoch(1)
    assert [x for x in a] != [x for x in b]


def test_bucket_sampler_shards_ranks_evenly_and_disjointly(tiny_family_rows):
    lengths = tiny_family_rows["sequence"].str.len().to_numpy()
    shards = [list(LengthBucketSampler(lengths, 16, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(LengthBucketSampler(lengths, 16, rank=0, world_size=2))
    seen = [set(np.concatenate(s).tolist()) for s in shards]
    assert not seen[0] & seen[1]


def test_loader_yields_tensors(tiny_family_rows):
    from protlc.data.loading import make_loader

    ds = EncodedSequences(tiny_family_rows["sequence"].tolist()[:40], labels=np.arange(40) % 4)
    batch = next(iter(make_loader(ds, 8, shuffle=True)))
    assert batch["tokens"].dtype == torch.long and batch["tokens"].shape[0] == 8


# ---- token-budget batches ----------------------------------------------------------------------

def _lengths_with_a_giant(tiny_family_rows) -> np.ndarray:
    """The real lengths plus one 10,000-residue sequence."""
    return np.append(tiny_family_rows["sequence"].str.len().to_numpy(), 10_000)


@pytest.mark.parametrize("shuffle", [True, False])
def test_token_batches_fill_the_budget_with_one_width_class_each(tiny_family_rows, shuffle):
    from protlc.data.loading import padded_width

    lengths = _lengths_with_a_giant(tiny_family_rows)
    sampler = LengthBucketSampler(lengths, batch_size=16, shuffle=shuffle, seed=2, tokens_per_batch=4096)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))  # every row once
    partial = {}
    for b in batches:
        widths = set(padded_width(lengths[b], 64).tolist())
        assert len(widths) == 1  # one width class per batch
        width = widths.pop()
        full = max(1, 4096 // width)
        assert len(b) <= full and len(b) * width <= max(4096, width)
        if len(b) < full:
            assert width not in partial  # at most the last batch of each class is not full
            partial[width] = len(b)
    assert [b for b in batches if len(lengths) - 1 in b] == [[len(lengths) - 1]]  # the giant is alone
    sizes = {}  # width -> rows of a full batch
    for b in batches:
        width = int(padded_width(lengths[b], 64).max())
        sizes[width] = max(sizes.get(width, 0), len(b))
    in_class = dict(zip(*np.unique(padded_width(lengths, 64), return_counts=True)))
    assert sizes == {w: min(in_class[w], max(1, 4096 // w)) for w in in_class}
    assert sizes[64] == 64 and sizes[128] == 32 and sizes[10_048] == 1  # short: big batches; long: small


def test_token_batches_order_depends_only_on_seed_and_epoch_and_count_never_changes(tiny_family_rows):
    lengths = tiny_family_rows["sequence"].str.len().to_numpy()
    a, b = (LengthBucketSampler(lengths, 16, seed=1, tokens_per_batch=2048) for _ in range(2))
    assert list(a) == list(b)
    epochs = []
    for epoch in range(3):
        b.set_epoch(epoch)
        epochs.append(list(b))
        assert len(epochs[-1]) == len(b) == len(epochs[0])
        assert sorted((len(x), int(lengths[x].max() + 63) // 64) for x in epochs[-1]) == \
            sorted((len(x), int(lengths[x].max() + 63) // 64) for x in epochs[0])  # the same shapes every epoch
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    assert LengthBucketSampler(lengths, 16, shuffle=False, tokens_per_batch=2048)._batches()[0].tolist() == \
        np.argsort(lengths, kind="stable")[: 2048 // 64].tolist()  # evaluation: sorted by length


def test_token_batches_shard_ranks_evenly_and_disjointly(tiny_family_rows):
    lengths = _lengths_with_a_giant(tiny_family_rows)
    shards = [list(LengthBucketSampler(lengths, 16, seed=0, rank=r, world_size=3, tokens_per_batch=2048))
              for r in range(3)]
    assert len(shards[0]) == len(shards[1]) == len(shards[2]) == \
        len(LengthBucketSampler(lengths, 16, rank=0, world_size=3, tokens_per_batch=2048))
    seen = [set(np.concatenate(s).tolist()) for s in shards]
    assert not (seen[0] & seen[1] or seen[1] & seen[2] or seen[0] & seen[2])


def test_token_loader_pads_to_the_width_class(tiny_family_rows):
    from protlc.data.loading import make_loader

    seqs = tiny_family_rows["sequence"].tolist()[:200]
    ds = EncodedSequences(seqs, labels=np.arange(200) % 4)
    loader = make_loader(ds, 8, shuffle=True, tokens_per_batch=1024)
    assert len(loader) == len(loader.sampler)
    for batch in loader:
        rows = batch["index"].numpy()
        assert batch["tokens"].shape[1] % 64 == 0 and batch["tokens"].shape[1] - 64 < ds.lengths[rows].max()
        assert batch["mask"].sum(1).tolist() == ds.lengths[rows].tolist()
        assert not batch["tokens"][~batch["mask"]].any()
        assert batch["label"].tolist() == (rows % 4).tolist()


@pytest.mark.parametrize("shuffle", [True, False])
def test_fixed_size_batches_with_very_long_sequences_stay_within_the_padded_position_cap(tiny_family_rows, shuffle):
    """Real lengths plus one 200,000-residue sequence and a few of 10,000-30,000: no batch of 64 pads 63
    sequences to 200,000 (12.8 M positions); each holds at most 64 * 2048 padded positions."""
    from protlc.data.loading import MAX_WIDTH_PER_ROW

    real = tiny_family_rows["sequence"].str.len().to_numpy()
    lengths = np.concatenate([real, [200_000, 10_000, 12_000, 30_000, 11_000]])
    sampler = LengthBucketSampler(lengths, batch_size=64, shuffle=shuffle, seed=1)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
        assert len(batches) == len(sampler)
        padded = [len(b) * int(lengths[b].max()) for b in batches]
        assert max(len(b) * int(lengths[b].max()) for b in batches if len(b) > 1) <= 64 * MAX_WIDTH_PER_ROW
        assert [len(b) for b in batches if lengths[b].max() == 200_000] == [1]  # a batch of its own
        assert max(padded) == 200_000
    # the cap changes nothing where no sequence is longer than 2,048 residues
    plain = LengthBucketSampler(real, batch_size=64, shuffle=shuffle, seed=1)
    uncapped = LengthBucketSampler(real, batch_size=64, shuffle=shuffle, seed=1, max_width_per_row=10**9)
    assert list(plain) == list(uncapped)
