"""The accelerator path, checked on the CPU: no read-back from the device inside a training step, and
torch.compile over the bucketed shapes (no recompiling per batch, the same logits as eager)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from protlc.losses import build_loss, loss_names
from protlc.model import ProtCNNClassifier, get_preset
from protlc.model.fitness import FitnessModel


def _meta_batch(batch: int = 4, width: int = 64):
    tokens = torch.zeros(batch, width, dtype=torch.long, device="meta")
    return tokens, torch.ones(batch, width, dtype=torch.bool, device="meta")


@pytest.mark.parametrize("loss", loss_names())
def test_training_step_never_reads_a_value_back_from_the_device(loss):
    """Forward, every loss and backward run on the meta device, where any ``.item()``, ``bool(tensor)`` or
    other read of a value fails: so on a GPU the step never waits for the device."""
    model = ProtCNNClassifier(get_preset("tiny"), 5).to("meta").train()
    tokens, mask = _meta_batch()
    labels = torch.zeros(4, dtype=torch.long, device="meta")
    out = build_loss(loss, 5)(model(tokens, mask).float(), labels, step=3, total_steps=10)
    out.loss.backward()
    assert out.loss.shape == () and all(p.grad is not None for p in model.parameters())
    with pytest.raises(RuntimeError, match="meta"):  # the check itself works
        bool(mask.all())


@pytest.mark.parametrize("head", [{"kind": "positional", "additive": "ridge"}, {"kind": "pooled"}])
def test_fitness_step_never_reads_a_value_back_from_the_device(head):
    model = FitnessModel(get_preset("tiny").to_dict(), head, length=64, num_families=3).to("meta").train()
    tokens, mask = _meta_batch()
    loss = (model.standardized(tokens, mask) - torch.zeros(4, device="meta")).square().mean()
    loss.backward()
    assert model.family_probabilities(tokens, mask).shape == (4, 3)


def test_lightning_training_step_reads_nothing_back(monkeypatch, tmp_path):
    """Each ClassifierModule.training_step (forward, robust loss, metrics, logging) of a short real fit, and
    the throughput callback after it, make no Python-level read of a tensor value (``.item()``, ``bool``,
    ``int``, ``float``, ``.tolist()``).
    The CPU-only shortcut for batches without padding (protcnn._has_padding) is replaced by what it
    answers on a GPU."""
    import pandas as pd
    import pytorch_lightning as pl

    from protlc.data.loading import EncodedSequences
    from protlc.model import protcnn
    from protlc.training.callbacks import ThroughputCallback
    from protlc.training.classify import ClassifierModule
    from protlc.training.config import load_config
    from protlc.training.datamodule import FamilyDataModule

    df = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "exthomfam_16fam.tsv", sep="\t").iloc[::4]
    codes, families = pd.factorize(df["family_id"])
    data = EncodedSequences(df["sequence"].tolist(), codes)
    labels = [{"family_id": f, "family_accession": None} for f in families]
    config = load_config([], ["loss.name=proselflc_at"])
    module = ClassifierModule(get_preset("tiny").to_dict(), labels, config)
    monkeypatch.setattr(protcnn, "_has_padding", lambda mask: True)
    reads, inside = [], [False]
    for name in ("__bool__", "item", "tolist", "__int__", "__float__", "__index__"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            if inside[0]:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)

    def watch(obj, method: str) -> None:
        call = getattr(obj, method)

        def watched(*args, **kwargs):
            inside[0] = True
            try:
                return call(*args, **kwargs)
            finally:
                inside[0] = False

        setattr(obj, method, watched)

    throughput = ThroughputCallback()
    watch(module, "training_step")
    watch(throughput, "on_train_batch_end")
    trainer = pl.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                         limit_val_batches=0, default_root_dir=tmp_path, callbacks=[throughput])
    trainer.fit(module, datamodule=FamilyDataModule(data, data, 16, seed=0, tokens_per_batch=1024))
    assert trainer.global_step == 4 and reads == []
    assert throughput.figures()["time/train_residues_per_second"] > 0
