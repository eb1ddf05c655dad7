"""Family classification as a thin LightningModule around the plain ProtCNN classifier.

One step function serves train, dev and test; the robust loss comes from the registry in
:mod:`protlc.losses`, and the global trust schedule uses the optimizer step ``t`` (1-based) and the
run's total optimizer steps ``Γ`` (``trainer.estimated_stepping_batches``).
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torchmetrics

from protlc.losses import build_loss
from protlc.model import ProtCNNClassifier, ProtCNNConfig
from protlc.model.checkpoint import stamp
from protlc.training.augment import augment_batch, is_active, step_generator


class ClassifierModule(pl.LightningModule):
    """Wraps :class:`ProtCNNClassifier` with a robust loss, Adam, warm-up + exponential decay.

    Args:
        model_config: ``ProtCNNConfig.to_dict()`` (plain data, stored in the checkpoint).
        labels: label vocabulary, a list of ``{"family_id": ..., "family_accession": ...}``.
        config: the resolved training config (plain data, stored in the checkpoint).
    """

    task = "classify"

    def __init__(self, model_config: dict, labels: list[dict], config: dict):
        super().__init__()
        self.save_hyperparameters()
        self.num_classes = len(labels)
        init = torch.Generator().manual_seed(int(config["seed"]))
        self.model = ProtCNNClassifier(ProtCNNConfig.from_dict(model_config), self.num_classes, generator=init)
        loss_params = {k: v for k, v in config["loss"].items() if k != "name"}
        self.loss_fn = build_loss(config["loss"]["name"], self.num_classes, **loss_params)
        metric_args = {"num_classes": self.num_classes}
        # ModuleDict keys may not shadow nn.Module attributes such as `train`.
        self.accuracy = torch.nn.ModuleDict({
            f"{stage}_acc": torchmetrics.classification.MulticlassAccuracy(average="micro", **metric_args)
            for stage in ("train", "dev")
        })
        self.dev_ece = torchmetrics.classification.MulticlassCalibrationError(n_bins=15, **metric_args)
        self.augment = dict(config.get("augment") or {})

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(tokens, mask)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        tokens, mask = batch["tokens"], batch["mask"]
        if stage == "train" and is_active(self.augment):
            generator = step_generator(tokens.device, self.hparams.config["seed"], self.global_step)
            tokens, mask = augment_batch(tokens, mask, self.augment, generator)
        logits = self(tokens, mask)
        labels = batch["label"]
        if stage == "train":
            out = self.loss_fn(logits.float(), labels, step=self.global_step + 1,
                               total_steps=max(1, int(self.trainer.estimated_stepping_batches)))
            loss = out.loss
            if out.epsilon is not None:
                self.log("train/epsilon", out.epsilon.mean(), on_step=True, on_epoch=False)
            if out.global_trust is not None:
                self.log("train/global_trust", float(out.global_trust), on_step=True, on_epoch=False)
                self.log("train/local_trust", out.local_trust.mean(), on_step=True, on_epoch=False)
            if out.weights is not None:
                self.log("train/emphasis_variance", out.weights.var(unbiased=False), on_step=True, on_epoch=False)
        else:  # dev loss is plain CCE against the (clean) dev labels
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        batch_size = len(labels)
        accuracy = self.accuracy[f"{stage}_acc"]
        accuracy(logits, labels)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=batch_size,
                 sync_dist=stage != "train")
        self.log(f"{stage}/accuracy", accuracy, on_step=False, on_epoch=True, batch_size=batch_size)
        if stage == "dev":
            self.dev_ece(logits.float().softmax(-1), labels)
            self.log("dev/ece", self.dev_ece, on_step=False, on_epoch=True, batch_size=batch_size)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "dev")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        stamp(checkpoint, self.task)

    def configure_optimizers(self):
        optim_cfg = self.hparams.config["optim"]
        # fused: one kernel per step on CUDA instead of several per parameter group (same update)
        optimizer = torch.optim.Adam(self.parameters(), lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"],
                                     fused=True if self.device.type == "cuda" else None)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = lr_schedule(total, optim_cfg["warmup_steps"], optim_cfg["final_lr_fraction"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def lr_schedule(total_steps: int, warmup_steps: int, final_fraction: float):
    """Linear warm-up over ``warmup_steps``, then exponential decay reaching ``final_fraction`` at the end."""
    warmup = max(0, min(warmup_steps, total_steps - 1))
    decay_steps = max(1, total_steps - warmup)
    log_rate = math.log(final_fraction) / decay_steps

    def factor(step: int) -> float:  # step is 0-based here (LambdaLR convention)
        if step < warmup:
            return (step + 1) / warmup
        return math.exp(log_rate * (step - warmup))

    return factor
