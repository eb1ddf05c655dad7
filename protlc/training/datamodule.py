"""The Lightning DataModule over encoded splits (Lightning stays inside ``protlc.training``)."""

from __future__ import annotations

import pytorch_lightning as pl

from protlc.data.loading import EncodedSequences, make_loader


class FamilyDataModule(pl.LightningDataModule):
    """Train and dev loaders over a prepared dataset (see :mod:`protlc.data.store`).

    The bucket sampler shards batches across DDP ranks itself, so the Trainer must be built with
    ``use_distributed_sampler=False``.

    Args:
        train, dev: encoded splits (``label`` = observed label).
        batch_size: sequences per batch and device.
        seed: shuffling seed (the batch order of epoch ``e`` depends only on ``(seed, e)``).
    """

    def __init__(self, train: EncodedSequences, dev: EncodedSequences, batch_size: int, seed: int,
                 num_workers: int = 0, eval_batch_size: int | None = None):
        super().__init__()
        self.train_set, self.dev_set = train, dev
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.eval_batch_size = eval_batch_size or batch_size

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self):
        rank, world = self._rank()
        return make_loader(self.train_set, self.batch_size, shuffle=True, seed=self.seed,
                           num_workers=self.num_workers, rank=rank, world_size=world)

    def val_dataloader(self):
        rank, world = self._rank()
        return make_loader(self.dev_set, self.eval_batch_size, shuffle=False,
                           num_workers=self.num_workers, rank=rank, world_size=world)
