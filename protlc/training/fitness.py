"""Training of the DMS fitness model (docs/method.md §6): :class:`FitnessModule`, MSE on standardised scores.

The networks (positional and pooled heads, the additive term, :class:`protlc.model.fitness.FitnessModel`)
live in :mod:`protlc.model.fitness`; checkpoints are read back by :mod:`protlc.model.checkpoint`.
"""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics

from protlc.errors import ConfigError
from protlc.model.checkpoint import stamp, submodule_state
from protlc.model.fitness import FitnessModel

TASK = "fitness"
MONITORS = {"tune/mse": "min", "tune/pearson": "max"}


class FitnessModule(pl.LightningModule):
    """MSE training of :class:`FitnessModel`, Adam, tune-split metrics for early stopping.

    Args:
        model_config: encoder sizes (``ProtCNNConfig.to_dict()``).
        head: head settings.
        wild_type: the wild-type sequence (kept so ``protlc score`` needs no ``--wt``).
        notation, offset: how the training table numbered its mutants.
        config: the resolved DMS config (plain data).
        labels: label vocabulary of the Pfam classifier the encoder came from (``[]`` from scratch).
        score_mean, score_std: training-split statistics used to standardise the target.
    """

    task = TASK

    def __init__(self, model_config: dict, head: dict, wild_type: str, notation: str, offset: int, config: dict,
                 labels: list | None = None, score_mean: float = 0.0, score_std: float = 1.0):
        super().__init__()
        labels = list(labels or [])  # saved as a plain list (save_hyperparameters reads the locals)
        self.save_hyperparameters()
        init = torch.Generator().manual_seed(int(config["seed"]))
        self.model = FitnessModel(model_config, head, len(wild_type), len(labels), generator=init)
        self.model.score_mean.fill_(float(score_mean))
        self.model.score_std.fill_(float(score_std))
        with warnings.catch_warnings():  # Spearman keeps the tune split's predictions: a few MB at most
            warnings.filterwarnings("ignore", message=".*will save all targets and predictions.*")
            self.tune_metrics = torchmetrics.MetricCollection({
                "mse": torchmetrics.MeanSquaredError(),
                "pearson": torchmetrics.PearsonCorrCoef(),
                "spearman": torchmetrics.SpearmanCorrCoef(),
            }, prefix="tune/")

    def start_from_additive(self, effects: torch.Tensor, wild_type_score: float) -> None:
        """Start the additive term at a fitted additive model (the network keeps its initial weights).

        (Zeroing the network's output layers instead, so that the model would start exactly at the
        additive fit, leaves its inner layers without gradient: measured on Pab1, the training loss then
        stays at the additive fit's level for epochs.)

        Args:
            effects: ``(L, ALPHABET.size)`` score change of each residue at each position relative to the
                wild type (0 for the wild-type residue), in score units.
            wild_type_score: the additive model's prediction for the wild type.
        """
        model = self.model
        with torch.no_grad():
            model.additive.weight.copy_(effects / model.score_std)
            model.additive.bias.fill_(float((wild_type_score - model.score_mean) / model.score_std))

    def start_from_epistasis(self, fit) -> None:
        """Start the table, the latent bias and the monotone map at a global-epistasis fit
        (:class:`protlc.dms.epistasis.EpistasisResult`, fitted in this model's standardised units); the
        network's gate stays 0, so the model starts at exactly the fit's predictions."""
        model = self.model
        with torch.no_grad():
            model.additive.weight.copy_(fit.effects)
            model.additive.bias.fill_(float(fit.bias))
        model.output.load_state_dict(fit.output)

    def load_pretrained(self, classifier_state: dict) -> None:
        """Copy a Pfam classifier's weights (its ``model.`` state) into the encoder and the frozen family copy."""
        self.model.encoder.load_state_dict(submodule_state(classifier_state, "encoder."))
        self.model.family.load_state_dict(classifier_state)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(tokens, mask)

    def training_step(self, batch, batch_idx):
        target = (batch["score"] - self.model.score_mean) / self.model.score_std
        loss = F.mse_loss(self.model.standardized(batch["tokens"], batch["mask"]).float(), target)
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(target))
        return loss

    def validation_step(self, batch, batch_idx):
        prediction = self(batch["tokens"], batch["mask"]).float()
        self.tune_metrics.update(prediction, batch["score"])

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.tune_metrics.compute(), sync_dist=True)
        self.tune_metrics.reset()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        stamp(checkpoint, self.task)

    def configure_optimizers(self):
        """Adam; the learning rate is multiplied by ``optim.plateau_factor`` whenever the early-stopping
        metric has not improved for ``optim.plateau_patience`` epochs (factor 1 keeps it constant)."""
        optim = self.hparams.config["optim"]
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=optim["lr"], weight_decay=optim["weight_decay"])
        if float(optim["plateau_factor"]) >= 1.0:
            return optimizer
        monitor = self.hparams.config["early_stopping"]["monitor"]
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=check_monitor(monitor), factor=float(optim["plateau_factor"]),
            patience=int(optim["plateau_patience"]))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": monitor,
                                                         "interval": "epoch"}}


def check_monitor(monitor: str) -> str:
    """The Lightning ``mode`` (min/max) of an early-stopping metric.

    Raises:
        ConfigError: not one of :data:`MONITORS`.
    """
    if monitor not in MONITORS:
        raise ConfigError(f"early_stopping.monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")
    return MONITORS[monitor]


def export_checkpoint(module: FitnessModule, path) -> None:
    """Write ``module`` as a minimal fitness checkpoint (state dict, hparams, task stamp) without a Trainer.

    For benchmarks and tools that need a checkpoint of a model that was built, not trained, here;
    :func:`protlc.model.checkpoint.load_checkpoint` reads it like a Lightning one.
    """
    from protlc.atomic import atomic_path

    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    stamp(checkpoint, module.task)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
