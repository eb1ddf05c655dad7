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
