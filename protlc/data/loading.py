"""From a prepared split to padded batches: encoded sequences, length-bucketed batching, collate.

Batches are dicts of tensors::

    tokens  (B, L) int64   residue token ids, 0 = padding (see protlc.alphabet)
    mask    (B, L) bool    True where there is a residue
    label   (B,)   int64   observed label (only when the split has labels)
    index   (B,)   int64   row index into the split, for bookkeeping (audit, dynamics)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from protlc.alphabet import ALPHABET, PAD_INDEX


class EncodedSequences(torch.utils.data.Dataset):
    """Sequences encoded once into one flat uint8 buffer; indexing by a list of rows gives a batch.

    Args:
        sequences: validated protein sequences.
        labels: optional observed label per sequence.
    """

    def __init__(self, sequences: Sequence[str], labels: Sequence[int] | None = None):
        self.lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.buffer = ALPHABET.encode("".join(sequences)) if len(sequences) else np.zeros(0, np.uint8)
        self.labels = None if labels is None else torch.as_tensor(np.array(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        rows = np.asarray(rows, dtype=np.int64)
        width = int(self.lengths[rows].max())
        tokens = np.full((len(rows), width), PAD_INDEX, dtype=np.int64)
        for i, r in enumerate(rows):
            start, end = self.offsets[r], self.offsets[r + 1]
            tokens[i, : end - start] = self.buffer[start:end]
        tokens_t = torch.from_numpy(tokens)
        batch = {"tokens": tokens_t, "mask": tokens_t != PAD_INDEX, "index": torch.from_numpy(rows)}
        if self.labels is not None:
            batch["label"] = self.labels[rows]
        return batch


@dataclass
class LengthBucketSampler(torch.utils.data.Sampler):
    """Yields lists of row indices whose sequences have similar lengths, so padding stays small.

    Each epoch: shuffle rows, cut them into pools of ``pool_batches`` batches, sort each pool by
    length, cut it into batches, then shuffle the order of all batches. With ``shuffle=False`` the
    rows are simply sorted by length (evaluation). Under DDP each rank takes every
    ``world_size``-th batch, trimmed so that all ranks run the same number of steps.

    The order depends only on ``(seed, epoch)``: call :meth:`set_epoch` before each epoch.
    """

    lengths: np.ndarray
    batch_size: int
    shuffle: bool = True
    seed: int = 0
    pool_batches: int = 50
    rank: int = 0
    world_size: int = 1
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        pool = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, n, pool):
            chunk = perm[start : start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        # A generator, so the order is drawn at the first batch, after any set_epoch() that
        # Lightning makes between creating the iterator and using it (as when resuming).
        batches = self._batches()
        if self.world_size > 1:
            per_rank = len(batches) // self.world_size
            batches = batches[self.rank :: self.world_size][:per_rank]
        for b in batches:
            yield b.tolist()

    def __len__(self) -> int:
        n_batches = -(-len(self.lengths) // self.batch_size)
        if self.shuffle:  # pools may leave one short batch each
            pool = self.batch_size * self.pool_batches
            n_batches = sum(
                -(-min(pool, len(self.lengths) - s) // self.batch_size) for s in range(0, len(self.lengths), pool)
            )
        return n_batches // self.world_size if self.world_size > 1 else n_batches


def padding_fraction(lengths: np.ndarray, batches: Sequence[Sequence[int]]) -> float:
    """Share of processed positions that are padding, for a given batching of rows."""
    total = sum(len(b) * int(lengths[list(b)].max()) for b in batches)
    return 1.0 - float(lengths.sum()) / total if total else 0.0


def make_loader(dataset: EncodedSequences, batch_size: int, shuffle: bool, seed: int = 0,
                num_workers: int = 0, rank: int = 0, world_size: int = 1) -> torch.utils.data.DataLoader:
    """DataLoader over ``dataset`` with length-bucketed batches (``dataset[rows]`` builds each batch)."""
    sampler = LengthBucketSampler(dataset.lengths, batch_size, shuffle=shuffle, seed=seed,
                                  rank=rank, world_size=world_size)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                                       persistent_workers=num_workers > 0)
