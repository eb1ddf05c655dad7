"""ProtCNN (docs/method.md §5): shapes, padding invariance, sizes, init determinism, compile/autocast, on real Pfam domains."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from protlc.alphabet import ALPHABET
from protlc.errors import ConfigError
from protlc.inference import model_outputs
from protlc.data.loading import EncodedSequences
from protlc.model import (
    PRESETS,
    ClassificationHead,
    FitnessHead,
    MaskedBatchNorm1d,
    ProtCNNClassifier,
    ProtCNNConfig,
    ProtCNNEncoder,
    flops_per_residue,
    get_preset,
)
from protlc.model import protcnn
from protlc.model.protcnn import BN_EPS

TINY = get_preset("tiny")


def batch(seqs, extra_padding=0):
    length = max(map(len, seqs)) + extra_padding
    tokens = torch.zeros(len(seqs), length, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.from_numpy(ALPHABET.encode(s).astype(np.int64))
    return tokens, tokens != 0


def model(num_classes=5, seed=0, config=TINY):
    return ProtCNNClassifier(config, num_classes, torch.Generator().manual_seed(seed))


def trained_like(clf, seed=0):
    """Give every BatchNorm non-trivial statistics and affine parameters, as after training.

    At initialisation (mean 0, var 1, weight 1, bias 0) evaluation-mode BatchNorm maps 0 to 0, which
    would hide padding leaks; trained ones map padding zeros to ``bias - mean * scale``.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(clf.named_parameters()) + list(clf.named_buffers()):
            if ".bn_" in name:
                noise = torch.rand(tensor.shape, generator=gen, dtype=tensor.dtype)
                tensor.copy_(0.5 + noise if name.endswith(("weight", "running_var")) else noise - 0.5)
    return clf


def test_shapes(sequences):
    tokens, mask = batch(sequences)
    clf = model(num_classes=7).eval()
    assert clf(tokens, mask).shape == (8, 7)
    assert clf.encoder(tokens, mask).shape == (8, TINY.filters)
    positions = clf.encoder.embed_positions(tokens, mask)
    assert positions.shape == (8, TINY.filters, tokens.shape[1])
    assert (positions * ~mask[:, None, :]).abs().max().item() == 0.0
    assert FitnessHead(TINY.filters, hidden=8)(clf.encoder(tokens, mask)).shape == (8,)
    assert ClassificationHead(TINY.filters, 3)(torch.zeros(2, TINY.filters)).shape == (2, 3)


def test_eval_predictions_ignore_padding(sequences):
    clf = trained_like(model().double()).eval()
    with torch.no_grad():
        short = clf(*batch(sequences))
        long = clf(*batch(sequences, extra_padding=53))
        alone = torch.cat([clf(*batch([s], extra_padding=7)) for s in sequences])
    torch.testing.assert_close(long, short, rtol=0, atol=1e-12)
    torch.testing.assert_close(alone, short, rtol=0, atol=1e-12)


def test_train_mode_outputs_and_statistics_ignore_padding(sequences):
    a, b = model().double().train(), model().double().train()
    out_a = a(*batch(sequences))
    out_b = b(*batch(sequences, extra_padding=53))
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=1e-10)
    for (name, buf_a), buf_b in zip(a.named_buffers(), b.buffers()):
        torch.testing.assert_close(buf_b, buf_a, rtol=0, atol=1e-12, msg=name)
    # and the statistics moved: a forward in training mode really used batch statistics
    assert not torch.allclose(a.encoder.blocks[0].bn_in.running_mean, torch.zeros(TINY.filters, dtype=torch.float64))


def test_plain_batchnorm_statistics_would_depend_on_padding(sequences):
    """Guards the test above: the padding fraction changes unmasked statistics."""
    clf = model().double().train()
    stats = []
    for extra in (0, 53):
        tokens, mask = batch(sequences, extra)
        h = clf.encoder.conv_in(clf.encoder.residue_features(tokens, mask)) * mask[:, None, :]
        stats.append(h.mean(dim=(0, 2)))
    assert not torch.allclose(stats[0], stats[1])


def test_max_pool_ignores_padding(sequences):
    enc = trained_like(model()).encoder.eval()
    tokens, mask = batch(sequences, extra_padding=5)
    with torch.no_grad():
        positions = enc.embed_positions(tokens, mask)
        pooled = enc(tokens, mask)
    for i, s in enumerate(sequences):
        torch.testing.assert_close(pooled[i], positions[i, :, : len(s)].amax(dim=1))
    # some channel is negative at every residue: an unmasked max would have returned 0 there
    assert (pooled < 0).any()


def test_soft_one_hot_input_for_ambiguous_letters():
    enc = ProtCNNEncoder(TINY)
    tokens, mask = batch(["AXBZ"], extra_padding=1)
    x = enc.residue_features(tokens, mask)[0].T  # (L, 20)
    std = ALPHABET.standard
    assert x[0].tolist() == [1.0 if a == "A" else 0.0 for a in std]
    torch.testing.assert_close(x[1], torch.full((20,), 0.05))
    assert {std[j]: v for j, v in enumerate(x[2].tolist()) if v} == {"D": 0.5, "N": 0.5}
    assert {std[j]: v for j, v in enumerate(x[3].tolist()) if v} == {"E": 0.5, "Q": 0.5}
    assert x[4].abs().sum().item() == 0.0  # padding
    assert not enc.residue_vectors.requires_grad
    assert "residue_vectors" not in enc.state_dict()


def test_ambiguous_real_sequences_give_finite_outputs(sequences):
    clf = trained_like(model()).eval()
    with torch.no_grad():
        assert torch.isfinite(clf(*batch(sequences[-2:]))).all()


def _count(module):
    return sum(p.numel() for p in module.parameters())


def _by_hand(f, blocks, classes):
    fb = f // 2
    stem = 20 * f * 9 + f
    block = 2 * f + f * fb * 9 + 2 * fb + fb * f + f
    return stem + blocks * block, f * classes + classes


@pytest.mark.parametrize("name, classes", [("tiny", 5), ("small", 107), ("paper", 17929)])
def test_parameter_counts(name, classes):
    config = get_preset(name)
    with torch.device("meta"):
        clf = ProtCNNClassifier(config, classes)
    encoder, head = _by_hand(config.filters, len(config.dilations), classes)
    assert (_count(clf.encoder), _count(clf.head)) == (encoder, head)
    if name == "paper":  # docs/method.md §5: ~50 M parameters with the 17,929 Pfam seed families
        assert _count(clf) == 50_210_929
        assert config.receptive_field == 337


def test_flops_per_residue():
    # paper: 2·(20·1100·9 + 5·(1100·550·9 + 550·1100)) = 60.9 MFLOP (docs/method.md §5: ~61)
    assert flops_per_residue(get_preset("paper")) == 60_896_000
    assert flops_per_residue(get_preset("tiny")) == 2 * (20 * 16 * 9 + 2 * (16 * 8 * 9 + 8 * 16))


def test_init_is_determined_by_the_generator_only():
    torch.manual_seed(1)
    a = model(seed=7).state_dict()
    torch.manual_seed(2)
    b = model(seed=7).state_dict()
    c = model(seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["encoder.conv_in.weight"], c["encoder.conv_in.weight"])


def test_config_round_trip_through_weights_only_load():
    config = ProtCNNConfig(filters=24, dilations=[1, 3], dropout=0.1)
    buffer = io.BytesIO()
    torch.save({"model": config.to_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["model"]
    assert ProtCNNConfig.from_dict(loaded) == config
    assert config.dilations == (1, 3) and config.bottleneck_channels == 12


@pytest.mark.parametrize("data, match", [
    ({"filters": 0, "dilations": [1]}, "filters"),
    ({"filters": 8, "dilations": []}, "dilations"),
    ({"filters": 8, "dilations": [1, 0]}, "dilations"),
    ({"filters": 8, "dilations": [1], "kernel_size": 4}, "kernel_size"),
    ({"filters": 8, "dilations": [1], "dropout": 1.0}, "dropout"),
    ({"filters": 8, "dilations": [1], "width": 3}, "unknown key.*width"),
    ({"dilations": [1]}, "missing key.*filters"),
])
def test_config_validation(data, match):
    with pytest.raises(ConfigError, match=match):
        ProtCNNConfig.from_dict(data)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown model preset 'huge'; valid presets: paper, small, tiny"):
        get_preset("huge")
    assert set(PRESETS) == {"paper", "small", "tiny"}
    with pytest.raises(ConfigError, match="num_classes"):
        ProtCNNClassifier(TINY, 1)


def test_bf16_autocast_forward_and_backward(sequences):
    clf = trained_like(model())
    tokens, mask = batch(sequences)
    reference = clf.eval()(tokens, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = clf(tokens, mask)
        padded = clf(*batch(sequences, extra_padding=11))
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), reference, rtol=0.05, atol=0.05)
    torch.testing.assert_close(padded, logits, rtol=0, atol=0)
    clf.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = clf(tokens, mask).float().logsumexp(-1).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in clf.parameters())


def test_traces_as_one_graph(sequences):
    """torch.compile captures the whole model (no graph breaks); aot_eager skips C++ code generation."""
    clf = model().train()
    compiled = torch.compile(clf, backend="aot_eager", fullgraph=True)
    tokens, mask = batch(sequences)
    expected = model().train()(tokens, mask)
    torch.testing.assert_close(compiled(tokens, mask), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_inductor_compile_matches_eager(sequences):
    clf = trained_like(model()).eval()
    tokens, mask = batch(sequences)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(clf)(tokens, mask), clf(tokens, mask), rtol=1e-4, atol=1e-4)


def test_masked_batchnorm_equals_batchnorm_on_unpadded_input():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 11, generator=gen, dtype=torch.float64) * 3 + 2
    ones = torch.ones(4, 1, 11, dtype=torch.float64)
    ours, ref = MaskedBatchNorm1d(6).double(), torch.nn.BatchNorm1d(6).double()
    with torch.no_grad():
        for bn in (ours, ref):
            bn.weight.copy_(torch.linspace(0.5, 2, 6))
            bn.bias.copy_(torch.linspace(-1, 1, 6))
    torch.testing.assert_close(ours(x, ones, ones.sum()), ref(x))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x, ones, ones.sum()), ref(x))
    # with padding: statistics of the residue positions only
    mask = torch.ones(4, 1, 11, dtype=torch.float64)
    mask[1:, :, 7:] = 0
    out = MaskedBatchNorm1d(6).double()(x * mask, mask, mask.sum())
    valid = x.transpose(1, 2)[mask[:, 0].bool()]  # (residues, C)
    expected = (x - valid.mean(0)[:, None]) / torch.sqrt(valid.var(0, unbiased=False)[:, None] + 1e-5) * mask
    torch.testing.assert_close(out, expected)


# A batch without padding skips the masking on the CPU (protcnn._padding_mask) with identical results.
@pytest.mark.parametrize("training", [False, True])
def test_unpadded_batch_matches_the_masked_path(sequences, monkeypatch, training):
    tokens, mask = batch([s[:25] for s in sequences])  # every domain has >= 25 residues: no padding
    assert mask.all()
    fast, slow = (trained_like(model().double()).train(training) for _ in range(2))
    out_fast = fast(tokens, mask)
    with monkeypatch.context() as patch:
        patch.setattr(protcnn, "_padding_mask", lambda m: m.unsqueeze(1).to(torch.float32))
        out_slow = slow(tokens, mask)
    torch.testing.assert_close(out_fast, out_slow, rtol=0, atol=1e-12)
    for (name, a), b in zip(fast.named_buffers(), slow.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=name)
def test_masked_batchnorm_is_accurate_when_the_mean_dwarfs_the_spread():
    """Mean 1e4, std 1 in float32: the one-pass E[x²] - E[x]² loses every digit of the variance (it
    came out 0 or 2.3, and outputs were off by up to 1.6e3); the two-pass form matches float64."""
    gen = torch.Generator().manual_seed(0)
    B, C, L = 8, 6, 64
    lengths = torch.tensor([64, 50, 37, 20, 64, 9, 41, 30])
    mask = (torch.arange(L)[None, None, :] < lengths[:, None, None]).float()  # (B, 1, L)
    x = ((torch.randn(B, C, L, generator=gen, dtype=torch.float64) + 1e4).float() * mask).requires_grad_(True)
    bn = MaskedBatchNorm1d(C)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 2, C))
        bn.bias.copy_(torch.linspace(-1, 1, C))
    upstream = torch.randn(B, C, L, generator=gen)
    out = bn(x, mask, mask.sum())
    (out * upstream).sum().backward()

    x64 = x.detach().double().requires_grad_(True)
    valid = x64.transpose(1, 2)[mask[:, 0].bool()]  # (residues, C): padding never counts
    mean, var = valid.mean(0), valid.var(0, unbiased=False)
    expected = ((x64 - mean[:, None]) * torch.rsqrt(var[:, None] + BN_EPS) * bn.weight.detach().double()[:, None]
                + bn.bias.detach().double()[:, None]) * mask.double()
    (expected * upstream.double()).sum().backward()
    assert (out.detach().double() - expected.detach()).abs().max().item() < 1e-4
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=0, atol=1e-4)
    torch.testing.assert_close(bn.running_var.double(), 0.9 + 0.1 * valid.detach().var(0, unbiased=True),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(bn.running_mean.double(), 0.1 * mean.detach(), rtol=0, atol=1e-3)


# Token-budget batches on the model side: padding to the width classes never changes a prediction
# (the sampler itself: test_loading.py).
@pytest.fixture(scope="module")
def width_dataset(exthomfam_tiny32_tsv) -> EncodedSequences:
    """300 real extHomFam domains (lengths spread over several 64-wide classes) and one 1,500-residue
    concatenation of real domains."""
    seqs = pd.read_csv(exthomfam_tiny32_tsv, sep="\t")["sequence"].iloc[::11].head(300).tolist()
    return EncodedSequences(seqs + ["".join(seqs[:12])[:1500]])


def test_padding_to_the_width_classes_never_changes_a_prediction(width_dataset):
    clf = trained_like(model(num_classes=7)).eval()
    exact = model_outputs(clf, width_dataset, batch_size=16)  # each batch padded to its own longest sequence
    assert exact.shape == (len(width_dataset), 7)
    for tokens, multiple in ((2048, None), (4096, 64), (1024, 128)):
        padded = model_outputs(clf, width_dataset, batch_size=16, tokens_per_batch=tokens, width_multiple=multiple)
        np.testing.assert_allclose(padded, exact, rtol=1e-5, atol=1e-5)
        assert (padded.argmax(1) == exact.argmax(1)).all()
    for i in (3, 150, len(width_dataset) - 1):  # input order: row i is sequence i, computed on its own
        alone = model_outputs(clf, EncodedSequences([ALPHABET.decode(width_dataset[[i]]["tokens"][0])]), batch_size=1)
        np.testing.assert_allclose(alone[0], exact[i], rtol=1e-5, atol=1e-5)


def test_train_mode_statistics_do_not_see_the_extra_padding(width_dataset):
    """Training-mode BatchNorm statistics over a width-class batch equal those of the unpadded batch."""
    rows = list(range(0, 40))
    exact, padded = width_dataset.batch(rows), width_dataset.batch(rows, width_multiple=64)
    assert padded["tokens"].shape[1] % 64 == 0 and padded["tokens"].shape[1] > exact["tokens"].shape[1]
    a, b = (trained_like(model()).double().train() for _ in range(2))
    out_a, out_b = a(exact["tokens"], exact["mask"]), b(padded["tokens"], padded["mask"])
    torch.testing.assert_close(out_a, out_b, rtol=1e-9, atol=1e-9)
    for (name, x), y in zip(a.named_buffers(), b.buffers()):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9, msg=name)
