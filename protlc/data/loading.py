"""From a prepared split to padded batches: encoded sequences, length-bucketed batching, collate.

Batches are dicts of tensors::

    tokens  (B, L) int64   residue token ids, 0 = padding (see protlc.alphabet)
    mask    (B, L) bool    True where there is a residue
    label   (B,)   int64   observed label (only when the split has labels)
    index   (B,)   int64   row index into the split, for bookkeeping (audit, dynamics)

Two batchings (:class:`LengthBucketSampler`):

* fixed size (the default): ``batch_size`` sequences per batch, each batch padded to its own longest
  sequence (``L`` takes any value);
* token budget (``tokens_per_batch``): every sequence's length is rounded up to a multiple of
  ``width_multiple`` (default 64), its *width class*; a batch holds sequences of one class only, as many
  as fit in the budget (``tokens_per_batch // width``, at least one), and is padded to the class width.
  Short sequences make big batches, long ones small batches, a sequence longer than the budget gets a
  batch of its own, and the shapes come from a small fixed set (one full and one partial batch size
  per class), which accelerators and ``torch.compile`` like. The number of batches is the same in
  every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from protlc.alphabet import ALPHABET, PAD_INDEX

WIDTH_MULTIPLE = 64  # token-budget batches are padded to a multiple of this many positions
MAX_WIDTH_PER_ROW = 2048  # fixed-size batches hold at most batch_size * this many padded positions


def padded_width(length, multiple: int = 1):
    """``length`` (an int or an array) rounded up to a multiple of ``multiple``."""
    return -(-length // multiple) * multiple


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

    @classmethod
    def from_token_matrix(cls, tokens: np.ndarray) -> "EncodedSequences":
        """Equal-length sequences already encoded as an ``(n, L)`` matrix of token ids (no strings built)."""
        self = cls.__new__(cls)
        self.lengths = np.full(len(tokens), tokens.shape[1], dtype=np.int64)
        self.offsets = np.arange(len(tokens) + 1, dtype=np.int64) * tokens.shape[1]
        self.buffer = np.ascontiguousarray(tokens, dtype=np.uint8).ravel()
        self.labels = None
        return self

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.batch(rows)

    def batch(self, rows: Sequence[int], width_multiple: int = 1) -> dict[str, torch.Tensor]:
        """The batch of ``rows``, padded to their longest sequence rounded up to ``width_multiple``."""
        rows = np.asarray(rows, dtype=np.int64)
        width = int(padded_width(self.lengths[rows].max(), width_multiple))
        columns = np.arange(width)
        inside = columns < self.lengths[rows][:, None]
        index = np.minimum(self.offsets[rows][:, None] + columns, max(len(self.buffer) - 1, 0))
        tokens = np.where(inside, self.buffer[index] if len(self.buffer) else PAD_INDEX, PAD_INDEX).astype(np.int64)
        tokens_t = torch.from_numpy(tokens)
        batch = {"tokens": tokens_t, "mask": tokens_t != PAD_INDEX, "index": torch.from_numpy(rows)}
        if self.labels is not None:
            batch["label"] = self.labels[rows]
        return batch


class _WidthBatches(torch.utils.data.Dataset):
    """``dataset[rows]`` padded on the right to a multiple of ``width_multiple`` (the loader's view of
    token batches; any further keys of a subclass's batches are kept)."""

    def __init__(self, dataset: EncodedSequences, width_multiple: int):
        self.dataset, self.width_multiple = dataset, width_multiple

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        batch = self.dataset[rows]
        width = batch["tokens"].shape[1]
        extra = int(padded_width(width, self.width_multiple)) - width
        if extra:
            pad = torch.nn.functional.pad
            batch["tokens"], batch["mask"] = pad(batch["tokens"], (0, extra)), pad(batch["mask"], (0, extra))
        return batch


@dataclass
class LengthBucketSampler(torch.utils.data.Sampler):
    """Yields lists of row indices whose sequences have similar lengths, so padding stays small.

    Fixed size (``tokens_per_batch`` None or 0), each epoch: shuffle rows, cut them into pools of
    ``pool_batches`` batches, sort each pool by length, cut it into batches of ``batch_size``, then
    shuffle the order of all batches. With ``shuffle=False`` the rows are simply sorted by length
    (evaluation). A batch never holds more than ``batch_size * max_width_per_row`` padded positions:
    one with long sequences is cut into smaller batches (a 200,000-residue sequence gets a batch of its
    own instead of padding 63 others to its length), so memory stays bounded by that of a batch of
    ``batch_size`` sequences of ``max_width_per_row`` residues. Without such long sequences nothing changes.

    Token budget (``tokens_per_batch`` > 0; ``batch_size`` is not used): rows are grouped by width class
    (length rounded up to ``width_multiple``); each epoch shuffles the rows inside every class, cuts each
    class into batches of ``max(1, tokens_per_batch // width)`` rows and shuffles the order of all
    batches. With ``shuffle=False`` each class is sorted by length instead. Families mix inside a class
    as they do inside a pool, and every epoch has the same number of batches of the same shapes.

    Under DDP each rank takes every ``world_size``-th batch, trimmed so that all ranks run the same
    number of steps. The order depends only on ``(seed, epoch)``: call :meth:`set_epoch` before each epoch.
    """

    lengths: np.ndarray
    batch_size: int
    shuffle: bool = True
    seed: int = 0
    pool_batches: int = 50
    rank: int = 0
    world_size: int = 1
    epoch: int = 0
    tokens_per_batch: int | None = None
    width_multiple: int = WIDTH_MULTIPLE
    max_width_per_row: int = MAX_WIDTH_PER_ROW

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _classes(self) -> list[tuple[int, np.ndarray]]:
        """``(width, rows sorted by length)`` of every width class, narrowest first."""
        order = np.argsort(self.lengths, kind="stable")
        widths = padded_width(self.lengths[order], self.width_multiple)
        starts = np.flatnonzero(np.diff(widths, prepend=-1))
        ends = np.append(starts[1:], len(order))
        return [(int(widths[a]), order[a:b]) for a, b in zip(starts, ends)]

    def _token_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        batches = []
        for width, rows in self._classes():
            if rng is not None:
                rows = rng.permutation(rows)
            size = max(1, self.tokens_per_batch // width)
            batches.extend(rows[i : i + size] for i in range(0, len(rows), size))
        return batches if rng is None else [batches[i] for i in rng.permutation(len(batches))]

    def _capped(self, batch: np.ndarray) -> list[np.ndarray]:
        """``batch`` (rows sorted by length), or its cut into pieces of at most the fixed-size cap of padded
        positions each (a piece is padded to its last, longest row; one row always fits)."""
        cap = self.batch_size * self.max_width_per_row
        lengths = self.lengths[batch]
        if len(batch) * int(lengths[-1]) <= cap:
            return [batch]
        pieces, start = [], 0
        for i in range(1, len(batch)):
            if (i - start + 1) * int(lengths[i]) > cap:
                pieces.append(batch[start:i])
                start = i
        return [*pieces, batch[start:]]

    def _needs_cap(self) -> bool:
        return len(self.lengths) > 0 and int(self.lengths.max()) > self.max_width_per_row

    def _batches(self) -> list[np.ndarray]:
        if self.tokens_per_batch:
            return self._token_batches()
        n = len(self.lengths)
        cut = self._capped if self._needs_cap() else (lambda batch: [batch])
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [piece for i in range(0, n, self.batch_size) for piece in cut(order[i : i + self.batch_size])]
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        pool = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, n, pool):
            chunk = perm[start : start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(piece for i in range(0, len(chunk), self.batch_size)
                           for piece in cut(chunk[i : i + self.batch_size]))
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
        if self.tokens_per_batch:
            n_batches = sum(-(-len(rows) // max(1, self.tokens_per_batch // width)) for width, rows in self._classes())
            return n_batches // self.world_size if self.world_size > 1 else n_batches
        n_batches = -(-len(self.lengths) // self.batch_size)
        if self._needs_cap():  # long sequences cut batches: as many as this epoch's batching has
            n_batches = len(self._batches())
        elif self.shuffle:  # pools may leave one short batch each
            pool = self.batch_size * self.pool_batches
            n_batches = sum(
                -(-min(pool, len(self.lengths) - s) // self.batch_size) for s in range(0, len(self.lengths), pool)
            )
        return n_batches // self.world_size if self.world_size > 1 else n_batches


def padding_fraction(lengths: np.ndarray, batches: Sequence[Sequence[int]], width_multiple: int = 1) -> float:
    """Share of processed positions that are padding, for a given batching of rows (each batch padded to
    its longest sequence rounded up to ``width_multiple``)."""
    total = sum(len(b) * int(padded_width(lengths[list(b)].max(), width_multiple)) for b in batches)
    return 1.0 - float(lengths.sum()) / total if total else 0.0


def make_loader(dataset: EncodedSequences, batch_size: int, shuffle: bool, seed: int = 0,
                num_workers: int = 0, rank: int = 0, world_size: int = 1, tokens_per_batch: int | None = None,
                width_multiple: int = WIDTH_MULTIPLE, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """DataLoader over ``dataset`` with length-bucketed batches (``dataset[rows]`` builds each batch).

    ``tokens_per_batch`` > 0 switches to token-budget batches padded to a multiple of ``width_multiple``
    (see :class:`LengthBucketSampler`); ``pin_memory`` for fast asynchronous copies to a CUDA device.
    """
    sampler = LengthBucketSampler(dataset.lengths, batch_size, shuffle=shuffle, seed=seed, rank=rank,
                                  world_size=world_size, tokens_per_batch=tokens_per_batch or None,
                                  width_multiple=width_multiple)
    source = _WidthBatches(dataset, width_multiple) if tokens_per_batch else dataset
    return torch.utils.data.DataLoader(source, sampler=sampler, batch_size=None, num_workers=num_workers,
                                       persistent_workers=num_workers > 0, pin_memory=pin_memory)
