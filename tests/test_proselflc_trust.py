"""ProSelfLC(-AT) must not hand the target to an untrained learner (issue 20, docs/method.md §1).

On the novel-families workflow (97 known extHomFam families, `small` preset, 4 epochs) ProSelfLC-AT
collapsed to chance (test accuracy 0.01-0.04, confidence 0.96): the local trust is measured on the
T = 0.2-sharpened prediction p̂, which looks confident for any model (l ≈ 0.2 for an untrained one,
l ≈ 1 once self-targets start feeding back), so ε ≈ g(t) and the argmax of a ~12 %-accurate model took
over the targets. These tests pin down the two remedies: ``trust_temperature=1`` (l on the learner's own
p; preset configs/losses/proselflc_at_short.yaml) and the burn-in, which keeps ε at exactly 0.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import yaml
import pytest
import torch

from protlc.data.loading import EncodedSequences
from protlc.inference import model_outputs
from protlc.losses import build_loss, burn_in_steps, global_trust, local_trust, progressive_trust, sharpened
from protlc.model import ProtCNNClassifier
from protlc.model.protcnn import get_preset
from protlc.errors import ConfigError


def test_burn_in_keeps_trust_at_zero_then_runs_the_schedule_over_the_rest():
    total = 100
    assert burn_in_steps(total, 0.0) == 0 and burn_in_steps(total, 0.25) == 25 and burn_in_steps(total, 0.999) == 99
    assert [progressive_trust(t, total, burn_in=0.0) for t in (1, 50, 100)] == [global_trust(t, total) for t in (1, 50, 100)]
    assert all(progressive_trust(t, total, burn_in=0.25) == 0.0 for t in range(1, 26))
    # after the burn-in, g restarts at its tiny first value (no jump) and reaches the same end value
    assert progressive_trust(26, total, burn_in=0.25) == pytest.approx(global_trust(1, 75))
    assert progressive_trust(26, total, burn_in=0.25) < 0.003
    assert progressive_trust(100, total, burn_in=0.25) == pytest.approx(global_trust(100, 100))
    values = [progressive_trust(t, total, burn_in=0.25) for t in range(26, 101)]
    assert all(b > a for a, b in zip(values, values[1:]))
    with pytest.raises(ConfigError, match="burn_in"):
        build_loss("proselflc_at", 3, burn_in=1.0)
    with pytest.raises(ConfigError, match="trust_temperature"):
        build_loss("proselflc_at", 3, trust_temperature=0.0)


def test_burn_in_is_plain_cce_even_for_a_confident_wrong_prediction():
    logits = torch.tensor([[6.0, 0.0, 0.0]], requires_grad=True)
    out = build_loss("proselflc_at", 3, burn_in=0.5)(logits, torch.tensor([1]), 50, 100)
    assert out.global_trust == 0.0 and out.epsilon.item() == 0.0
    out.loss.backward()
    z = logits.detach().clone().requires_grad_(True)
    build_loss("cce", 3)(z, torch.tensor([1]), 50, 100).loss.backward()
    torch.testing.assert_close(logits.grad, z.grad)


@pytest.fixture(scope="module")
def untrained_logits(embedded_dir):
    """Logits of an untrained `small` ProtCNN for 2 real domains of each of the 107 extHomFam families."""
    df = pd.read_csv(embedded_dir / "exthomfam_tiny32.tsv", sep="\t")
    families = sorted(df["family_id"].unique())
    rows = df.groupby("family_id", sort=True).head(2)
    labels = torch.tensor(rows["family_id"].map({f: i for i, f in enumerate(families)}).to_numpy())
    model = ProtCNNClassifier(get_preset("small"), len(families), generator=torch.Generator().manual_seed(0)).eval()
    logits = torch.from_numpy(model_outputs(model, EncodedSequences(rows["sequence"].tolist()), 256, "cpu"))
    return logits, labels


def test_proselflc_at_short_does_not_trust_the_near_uniform_prediction_of_an_untrained_model(untrained_logits, embedded_dir):
    logits, labels = untrained_logits
    C = logits.shape[1]
    p = torch.softmax(logits, -1)
    assert local_trust(p).mean() < 0.02  # the learner knows nothing: p is near uniform
    # the sharpened p̂ = softmax(z/0.2) still looks confident: the SPEC-literal l(p̂) would hand it ε ≈ 0.1-0.2
    assert local_trust(sharpened(logits, 0.2)).mean() > 0.1
    short = yaml.safe_load((embedded_dir.parent / "configs" / "losses" / "proselflc_at_short.yaml").read_text())["loss"]
    short = {k: v for k, v in short.items() if k != "name"}
    assert short["trust_temperature"] == 1.0
    for step in (1, 50, 100):  # even at t = Γ, where g(Γ) = 0.9975
        out = build_loss("proselflc_at", C, **short)(logits, labels, step, 100)
        assert out.epsilon.max() < 0.05
        # the self-target's pull on any one class stays far below the 1/C each class gets from its labels
        self_mass = (out.epsilon[:, None] * sharpened(logits, 0.2)).mean(0)
        assert self_mass.max() < 0.5 / C
    literal = build_loss("proselflc_at", C)(logits, labels, 100, 100)  # the default: l(p̂)
    literal_mass = (literal.epsilon[:, None] * sharpened(logits, 0.2)).mean(0)
    assert literal_mass.max() > 1.0 / C  # what let one class absorb every target in the workflow
    assert math.isclose(literal.epsilon.mean().item(), global_trust(100, 100) * local_trust(sharpened(logits, 0.2)).mean().item(),
                        rel_tol=1e-5)


def test_training_logs_zero_trust_during_burn_in(noisy_dataset, tmp_path, tiny_config):
    from protlc.training.run import train

    run = tmp_path / "run"
    train(noisy_dataset, run, tiny_config(**{"loss.name": "proselflc_at", "loss.burn_in": 0.5}))
    metrics = pd.read_csv(run / "metrics.csv")
    logged = metrics.dropna(subset=["train/global_trust"])
    total = json.loads((run / "final_metrics.json").read_text())["optimizer_steps"]
    burn = burn_in_steps(total, 0.5)
    # Lightning logs step s (0-based) as the loss of optimizer step t = s + 1
    during = logged[logged["step"] + 1 <= burn]
    after = logged[logged["step"] + 1 > burn]
    assert len(during) and len(after)
    assert (during["train/global_trust"] == 0).all() and (during["train/epsilon"] == 0).all()
    assert (after["train/global_trust"] > 0).all()
    assert {"train/local_trust"} <= set(metrics.columns)
