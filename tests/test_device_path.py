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


@pytest.mark.filterwarnings("ignore:.*LeafSpec")
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


# ---- torch.compile over bucketed shapes ---------------------------------------------------------

def _token_batches(exthomfam_tiny32_tsv, step: int, tokens: int = 2048) -> list[dict]:
    """Token-budget training batches of real extHomFam domains: several width classes and batch sizes."""
    import pandas as pd

    from protlc.data.loading import make_loader, EncodedSequences

    seqs = pd.read_csv(exthomfam_tiny32_tsv, sep="\t")["sequence"].iloc[::step].tolist()
    return list(make_loader(EncodedSequences(seqs), 16, shuffle=True, tokens_per_batch=tokens))


def _compile_and_compare(batches: list[dict], backend: str, evaluate: bool = True) -> int:
    """Train steps then evaluation of a compiled tiny model next to an eager twin; returns the graphs compiled."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from protlc.inference import compile_model

    torch._dynamo.reset()
    counters.clear()
    compiled, eager = (ProtCNNClassifier(get_preset("tiny"), 5).train() for _ in range(2))
    compile_model(compiled, backend=backend)
    for batch in batches:
        out, expected = compiled(batch["tokens"], batch["mask"]), eager(batch["tokens"], batch["mask"])
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
        out.square().sum().backward()
        expected.square().sum().backward()
    for a, b in zip(compiled.parameters(), eager.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-3)
    compiled.eval(), eager.eval()
    with torch.no_grad():
        for batch in batches if evaluate else []:
            torch.testing.assert_close(compiled(batch["tokens"], batch["mask"]), eager(batch["tokens"], batch["mask"]),
                                       rtol=1e-4, atol=1e-4)
    graphs = counters["stats"]["unique_graphs"]
    torch._dynamo.reset()
    return graphs


def _one_per_shape(batches: list[dict]) -> list[dict]:
    seen, kept = set(), []
    for batch in batches:
        if tuple(batch["tokens"].shape) not in seen:
            seen.add(tuple(batch["tokens"].shape))
            kept.append(batch)
    return kept


def test_compiled_training_does_not_recompile_per_batch_shape(exthomfam_tiny32_tsv):
    """Dynamo's graph capture (no code generation, so it stays fast) over token-budget training batches of
    5 width classes and 2 to 32 sequences: at most 2 graphs, not one per shape, and the eager numbers."""
    batches = [b for b in _one_per_shape(_token_batches(exthomfam_tiny32_tsv, step=9)) if len(b["tokens"]) >= 2]
    shapes = {tuple(b["tokens"].shape) for b in batches}
    assert len({w for _, w in shapes}) >= 5 and len(shapes) >= 9
    assert _compile_and_compare(batches, backend="eager", evaluate=False) <= 2


@pytest.mark.slow
def test_compiled_model_does_not_recompile_per_batch_shape_in_any_mode(exthomfam_tiny32_tsv):
    """The same through AOT autograd, with batches of one sequence too, then evaluation: a few graphs
    (batch-size ranges x modes)."""
    batches = _one_per_shape(_token_batches(exthomfam_tiny32_tsv, step=9))
    assert min(len(b["tokens"]) for b in batches) == 1
    assert _compile_and_compare(batches, backend="aot_eager") <= 6


@pytest.mark.slow
def test_inductor_compiled_training_matches_eager_across_width_classes(exthomfam_tiny32_tsv):
    """The real compiler (C++ code generation on the CPU, ~20 s per graph): the same logits and gradients as
    eager, and the width stays symbolic in training graphs too (protlc.inference.compile_model)."""
    batches = [b for b in _token_batches(exthomfam_tiny32_tsv, step=9) if len(b["tokens"]) >= 2]
    assert len({b["tokens"].shape[1] for b in batches}) >= 4
    assert _compile_and_compare(batches, backend="inductor") <= 6


@pytest.mark.slow
def test_protlc_train_compile_with_token_batches(tmp_path):
    """``protlc train --compile`` with token-budget batches on the CPU: training, validation, dynamics and
    the final evaluation through the compiled model, with a bounded number of graphs."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from protlc.data.prepare import PrepareOptions, prepare_dataset
    from protlc.inference import RECOMPILE_LIMIT
    from protlc.training.config import load_config
    from protlc.training.run import train

    data = Path(__file__).resolve().parents[1] / "data" / "exthomfam_16fam.tsv"
    prepare_dataset([data], tmp_path / "ds", PrepareOptions(label_noise=0.3, seed=0), progress=False)
    overrides = {"model.preset": "tiny", "trainer.max_epochs": 1, "trainer.compile": True,
                 "data.tokens_per_batch": 2048, "eval.tokens_per_batch": 8192, "dynamics.every_n_steps": 10,
                 "trainer.progress_bar": False}
    torch._dynamo.reset()
    counters.clear()
    metrics = train(tmp_path / "ds", tmp_path / "run", load_config([], [f"{k}={v}" for k, v in overrides.items()]))
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    assert 0 < counters["stats"]["unique_graphs"] <= RECOMPILE_LIMIT
    torch._dynamo.reset()
