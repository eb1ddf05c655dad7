"""The Lightning DataModule over encoded splits (Lightning stays inside ``protlc.training``)."""

from __future__ import annotations

import pytorch_lightning as pl

from protlc.data.loading import WIDTH_MULTIPLE, EncodedSequences, make_loader


class FamilyDataModule(pl.LightningDataModule):
    """Train and dev loaders over a prepared dataset (see :mod:`protlc.data.store`).

    The bucket sampler shards batches across DDP ranks itself, so the Trainer must be built with
    ``use_distributed_sampler=False``.

    Args:
        train, dev: encoded splits (``label`` = observed label).
        batch_size: sequences per batch and device.
        seed: shuffling seed (the batch order of epoch ``e`` depends only on ``(seed, e)``).
        tokens_per_batch, eval_tokens_per_batch: token budgets of the train and dev batches (None or 0:
            ``batch_size`` / ``eval_batch_size`` sequences per batch; see
            :class:`~protlc.data.loading.LengthBucketSampler`).
        width_multiple: token-budget batches are padded to a multiple of this.

    Batches come from pinned memory when the Trainer runs on a CUDA device (Lightning then copies them
    without blocking).
    """

    def __init__(self, train: EncodedSequences, dev: EncodedSequences, batch_size: int, seed: int,
                 num_workers: int = 0, eval_batch_size: int | None = None, tokens_per_batch: int | None = None,
                 eval_tokens_per_batch: int | None = None, width_multiple: int = WIDTH_MULTIPLE):
        super().__init__()
        self.train_set, self.dev_set = train, dev
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.eval_batch_size = eval_batch_size or batch_size
        self.tokens_per_batch, self.eval_tokens_per_batch = tokens_per_batch, eval_tokens_per_batch
        self.width_multiple = width_multiple

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _pin_memory(self) -> bool:
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self):
        rank, world = self._rank()
        return make_loader(self.train_set, self.batch_size, shuffle=True, seed=self.seed,
                           num_workers=self.num_workers, rank=rank, world_size=world,
                           tokens_per_batch=self.tokens_per_batch, width_multiple=self.width_multiple,
                           pin_memory=self._pin_memory())

    def val_dataloader(self):
        rank, world = self._rank()
        return make_loader(self.dev_set, self.eval_batch_size, shuffle=False,
                           num_workers=self.num_workers, rank=rank, world_size=world,
                           tokens_per_batch=self.eval_tokens_per_batch, width_multiple=self.width_multiple,
                           pin_memory=self._pin_memory())
