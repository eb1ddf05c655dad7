"""Losses of docs/method.md §1-2 against values worked out by hand for a 3-class example.

The running example: logits z = [2, 1, 0], so p = softmax(z) = e^z / (e^2 + e + 1)
= [0.665240956, 0.244728471, 0.090030573] and log p = z - 2.407605964.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protlc.errors import ConfigError
from protlc.losses import (
    build_loss,
    corrected_target,
    dm_weights,
    emphasis_mode,
    global_trust,
    local_trust,
    loss_names,
)

Z = [2.0, 1.0, 0.0]
P = [0.6652409557748218, 0.24472847105479764, 0.09003057317038046]
TOL = dict(rtol=0, atol=1e-6)


def _logits(rows=(Z,), requires_grad=False):
    return torch.tensor(rows, dtype=torch.float32, requires_grad=requires_grad)


def _close(actual, expected, atol=1e-6):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float32),
                               torch.tensor(expected, dtype=torch.float32), rtol=0, atol=atol)


# ---- trust schedule ---------------------------------------------------------------------------

def test_global_trust_hand_values():
    assert global_trust(5, 10) == pytest.approx(0.5)  # t/Γ = τ
    assert global_trust(10, 10) == pytest.approx(1 / (1 + math.exp(-6)))  # 0.997527
    assert global_trust(10, 10) == pytest.approx(0.9975273768, abs=1e-9)
    assert global_trust(1, 4) == pytest.approx(0.0474258732, abs=1e-9)  # 1/(1+e^3)
    assert global_trust(1, 1000) < 0.003  # correction starts tiny, with no hard switch
    assert global_trust(1, 1000) > 0.0


def test_global_trust_rises_with_t_and_never_overflows():
    values = [global_trust(t, 100) for t in range(1, 101)]
    assert all(b > a for a, b in zip(values, values[1:]))
    assert global_trust(1, 10, B=5000.0) == 0.0 and global_trust(10, 10, B=5000.0) == 1.0  # no OverflowError


def test_epsilon_rises_with_step():
    loss = build_loss("proselflc", 3)
    eps = [loss(_logits(), torch.tensor([0]), t, 10).epsilon.item() for t in range(1, 11)]
    assert all(b > a for a, b in zip(eps, eps[1:]))
    assert eps[4] == pytest.approx(0.5 * 0.2423208893, abs=1e-6)


@pytest.mark.parametrize("step, total", [(0, 10), (1, 0)])
def test_global_trust_rejects_bad_steps(step, total):
    with pytest.raises(ConfigError, match="step"):
        global_trust(step, total)


def test_local_trust_hand_values():
    p = torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], P])
    # 1; 0; 1 - log2/log3; 1 - H(P)/log3 with H(P) = 0.832393 (0·log0 counted as 0)
    _close(local_trust(p), [1.0, 0.0, 0.3690702464, 0.2423208893])


# ---- targets and loss values ------------------------------------------------------------------

# (name, label, step, total, expected target, expected ε, expected loss); targets worked out by hand:
# LS: 0.875·y + 0.125/3. CP (T=0.4): p̂ = softmax(z/0.4) = [0.918423, 0.075389, 0.006188], q̃ = 0.75 y - 0.25 p̂.
# Boot-soft (T=0.2): p̂ = softmax(z/0.2) = [0.993262, 0.006693, 0.000045], q̃ = 0.75 y + 0.25 p̂.
# ProSelfLC (T=1, t/Γ=0.5): ε = 0.5 · 0.242321. ProSelfLC-AT (T=0.2, t=Γ): ε = 0.997527 · l(p̂) = 0.960596;
# with trust_temperature=1 (local trust on the learner's p): ε = 0.997527 · l(p) = 0.241722,
# q̃ = 0.758278 y + 0.241722 p̂.
# loss = -Σ q̃ log p with log p = z - 2.407606.
CASES = [
    ("cce", 0, 1, 10, [1.0, 0.0, 0.0], None, 0.4076059644),
    ("ls", 0, 1, 10, [0.9166666667, 0.0416666667, 0.0416666667], 0.125, 0.5326059644),
    ("cp", 0, 1, 10, [0.5203942583, -0.0188471870, -0.0015470713], 0.25, 0.1818616526),
    ("bootsoft", 1, 1, 10, [0.2483155892, 0.7516731373, 0.0000112735], 0.25, 1.1593016487),
    ("proselflc", 0, 5, 10, [0.9594404453, 0.0296514104, 0.0109081443], 0.1211604447, 0.4590736634),
    ("proselflc_at", 1, 10, 10, [0.9541235817, 0.0458331011, 0.0000433171], 0.9605957330, 0.4535256998),
]
TRUST_T1_AT = (1, 10, 10, [0.2400931418, 0.7598959804, 0.0000109002], 0.2417217791, 1.1675237417)


@pytest.mark.parametrize("name, label, step, total, target, eps, value", CASES, ids=[c[0] for c in CASES])
def test_target_and_loss_match_hand_values(name, label, step, total, target, eps, value):
    out = build_loss(name, 3)(_logits(), torch.tensor([label]), step, total)
    assert out.loss.item() == pytest.approx(value, abs=1e-5)
    if eps is None:
        assert out.epsilon is None
    else:
        _close(out.epsilon, [eps])
        _close(out.target, [target])


def test_proselflc_at_with_the_local_trust_on_the_learners_own_prediction():
    label, step, total, target, eps, value = TRUST_T1_AT
    for loss in (build_loss("proselflc_at", 3, trust_temperature=1.0),
                 build_loss("proselflc", 3, temperature=0.2, trust_temperature=1.0)):
        out = loss(_logits(), torch.tensor([label]), step, total)
        assert out.loss.item() == pytest.approx(value, abs=1e-5)
        _close(out.epsilon, [eps])
        _close(out.target, [target])


def test_corrected_target_formula():
    y = torch.tensor([[0.0, 1.0, 0.0]])
    _close(corrected_target(y, torch.tensor([[0.2, 0.3, 0.5]]), 0.5), [[0.1, 0.65, 0.25]])
    _close(corrected_target(y, torch.tensor([[0.2, 0.3, 0.5]]), torch.tensor([0.0])), [[0.0, 1.0, 0.0]])


@pytest.mark.parametrize("name", ["ls", "cp", "bootsoft", "proselflc", "proselflc_at"])
def test_target_is_detached_and_gradient_is_analytic(name):
    logits = _logits([Z, [0.0, 3.0, -1.0]], requires_grad=True)
    labels = torch.tensor([1, 2])
    out = build_loss(name, 3)(logits, labels, 7, 10)
    assert not out.target.requires_grad
    out.loss.backward()
    p = torch.softmax(logits.detach(), dim=-1)
    q = out.target
    # d/dz of -Σ q log softmax(z) with q constant: (Σq)·p - q, averaged over the batch of 2.
    expected = (q.sum(-1, keepdim=True) * p - q) / 2
    torch.testing.assert_close(logits.grad, expected, **TOL)


def test_gradient_hand_values_for_proselflc_at():
    logits = _logits(requires_grad=True)
    build_loss("proselflc_at", 3)(logits, torch.tensor([1]), 10, 10).loss.backward()
    # p - q̃ with q̃ from CASES: [0.665241-0.954124, 0.244728-0.045833, 0.090031-0.000043]
    _close(logits.grad, [[-0.2888826260, 0.1988953700, 0.0899872561]])
    logits = _logits(requires_grad=True)
    build_loss("proselflc_at", 3, trust_temperature=1.0)(logits, torch.tensor([1]), 10, 10).loss.backward()
    # l on p: [0.665241-0.240093, 0.244728-0.759896, 0.090031-0.000011]
    _close(logits.grad, [[0.4251478613, -0.5151674747, 0.0900196806]])


def test_cp_loss_stays_finite_for_extreme_logits():
    logits = _logits([[1e30, -1e30, 0.0], [80.0, -80.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    labels = torch.tensor([1, 1, 2])
    per_example = [build_loss("cp", 3)(logits[i : i + 1], labels[i : i + 1], 1, 10).loss for i in range(3)]
    assert all(torch.isfinite(v) for v in per_example)
    assert per_example[0].item() == pytest.approx(0.75 * 2e30, rel=1e-5)
    # p̂ ≈ [1, 0, 0], log p ≈ [0, -160, -80]: -(0.75·(-160) - 0.25·1·0) = 120
    assert per_example[1].item() == pytest.approx(120.0, abs=1e-4)
    # p̂ = p = 1/3 each: q̃ sums to 1 - 2·0.25, loss = 0.5·log 3
    assert per_example[2].item() == pytest.approx(0.5 * math.log(3), abs=1e-6)
    out = build_loss("cp", 3)(logits, labels, 1, 10)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(logits.grad).all()
    in_bf16 = build_loss("cp", 3)(logits.detach()[1:].to(torch.bfloat16), labels[1:], 1, 10).loss
    assert in_bf16.dtype == torch.float32 and in_bf16.item() == pytest.approx((120 + 0.5 * math.log(3)) / 2, abs=1e-3)


def test_proselflc_t1_gradient_is_scaled_cce_gradient():
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(6, 5, generator=gen) * 3
    labels = torch.randint(0, 5, (6,), generator=gen)
    for step in (1, 40, 100):
        z1 = base.clone().requires_grad_(True)
        z2 = base.clone().requires_grad_(True)
        out = build_loss("proselflc", 5, temperature=1.0)(z1, labels, step, 100)
        out.loss.backward()
        build_loss("cce", 5)(z2, labels, step, 100).loss.backward()
        torch.testing.assert_close(z1.grad, (1 - out.epsilon)[:, None] * z2.grad, rtol=1e-5, atol=1e-7)


def test_low_temperature_moves_target_and_gradient_away_from_observed_label():
    logits = _logits([[4.0, 0.0, 0.0]])
    label = torch.tensor([1])  # the model is confident in class 0; the observed label says 1
    grads = {}
    for t in (1.0, 0.2):
        z = logits.clone().requires_grad_(True)
        out = build_loss("proselflc", 3, temperature=t)(z, label, 10, 10)
        out.loss.backward()
        grads[t] = z.grad[0]
        assert out.target.argmax().item() == 0
    # T = 1: gradient descent still raises the observed label's logit (p_1 - q̃_1 = -0.160592 < 0)
    assert grads[1.0][1].item() == pytest.approx(-0.1605920478, abs=1e-6)
    # T = 0.2: it lowers it (+0.015196) and raises class 0's (-0.032864): the label is corrected
    assert grads[0.2][1].item() == pytest.approx(0.0151957182, abs=1e-6)
    assert grads[0.2][0].item() == pytest.approx(-0.0328641382, abs=1e-6)


# ---- derivative manipulation ------------------------------------------------------------------

def test_dm_weights_hand_values_and_sum():
    # β=2, λ=1: exponents 2·p(1-p) = [0.5, 0.18, 0.18] -> e^x / Σ e^x
    w = dm_weights(torch.tensor([0.5, 0.9, 0.1]), beta=2.0, lam=1.0)
    _close(w, [0.4077807712, 0.2961096144, 0.2961096144])
    assert w.sum().item() == pytest.approx(1.0)
    assert dm_weights(torch.tensor([0.3, 0.7]), beta=0.0, lam=2.0).tolist() == [0.5, 0.5]


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("beta", [2.0, 8.0, 24.0])
def test_dm_weights_peak_at_emphasis_mode(lam, beta):
    grid = torch.linspace(0, 1, 10001, dtype=torch.float64)
    w = dm_weights(grid, beta, lam)
    assert w.sum().item() == pytest.approx(1.0)
    assert grid[w.argmax()].item() == pytest.approx(lam / (lam + 1), abs=1e-4)
    assert emphasis_mode(lam) == pytest.approx(lam / (lam + 1))


def test_emphasis_mode_values():
    assert [emphasis_mode(v) for v in (0.0, 0.5, 1.0, 2.0)] == pytest.approx([0.0, 1 / 3, 0.5, 2 / 3])


def test_dm_loss_and_gradient():
    logits = _logits([Z, [0.0, 3.0, -1.0]], requires_grad=True)
    labels = torch.tensor([0, 2])
    out = build_loss("dm", 3, beta=8.0, lam=1.0)(logits, labels, 1, 10)
    # p_y = [0.665241, 0.017148]; exponents 8·p(1-p) -> w = [0.838449, 0.161551]
    _close(out.weights, [0.8384490429, 0.1615509571])
    # Σ_i w_i CE_i / (2 (1 - p_i)) with CE = [0.407606, 4.065884]
    assert out.loss.item() == pytest.approx(0.8446057032, abs=1e-5)
    assert out.epsilon is None and not out.weights.requires_grad
    out.loss.backward()
    p = torch.softmax(logits.detach(), dim=-1)
    y = torch.nn.functional.one_hot(labels, 3).float()
    p_y = p[[0, 1], labels]
    torch.testing.assert_close(logits.grad, (out.weights / (2 * (1 - p_y)))[:, None] * (p - y), **TOL)
    _close(logits.grad.abs().sum(-1), out.weights.tolist())


def test_dm_with_uniform_weights_gives_every_example_the_same_update_size():
    logits = _logits([Z, [0.0, 3.0, -1.0]], requires_grad=True)
    labels = torch.tensor([0, 2])
    out = build_loss("dm", 3, beta=0.0)(logits, labels, 1, 10)
    assert out.loss.item() == pytest.approx(1.3386078523, abs=1e-5)  # mean_i CE_i / (2 (1 - p_i))
    out.loss.backward()
    cce_logits = _logits([Z, [0.0, 3.0, -1.0]], requires_grad=True)
    build_loss("cce", 3)(cce_logits, labels, 1, 10).loss.backward()
    _close(logits.grad.abs().sum(-1), [0.5, 0.5])  # 1/B each, in CCE's direction
    _close(logits.grad / logits.grad.abs().sum(-1, keepdim=True),
           (cce_logits.grad / cce_logits.grad.abs().sum(-1, keepdim=True)).tolist())


def _logits_with_p_y(p_y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits ``(len(p_y), C)`` whose softmax gives class 0 probability p_y, the rest equal shares."""
    rest = ((1 - p_y) / (num_classes - 1)).log()
    return torch.stack([p_y.log()] + [rest] * (num_classes - 1), dim=1).float()


@pytest.mark.parametrize("beta, lam", [(8.0, 1.0), (8.0, 2.0), (8.0, 0.5), (2.0, 1.0), (24.0, 4.0)])
def test_dm_update_size_is_the_weight_and_peaks_at_emphasis_mode(beta, lam):
    """Wang et al.'s DM: example i's logit gradient has L1 norm w_i, so the largest update is at ψ.

    Σ_i w_i CE_i instead gives norm 2 (1 - p_i) w_i, peaking at p ≈ 0.40 for (β 8, λ 1), 0.50 for (8, 2).
    """
    grid = torch.linspace(0.005, 0.995, 199, dtype=torch.float64)  # step 0.005
    logits = _logits_with_p_y(grid, 5).requires_grad_(True)
    loss_fn = build_loss("dm", 5, beta=beta, lam=lam)
    out = loss_fn(logits, torch.zeros(len(grid), dtype=torch.long), 1, 10)
    out.loss.backward()
    size = logits.grad.abs().sum(-1)  # L1 norm of each example's logit gradient
    assert loss_fn.emphasis_mode == pytest.approx(lam / (lam + 1))
    assert grid[size.argmax()].item() == pytest.approx(loss_fn.emphasis_mode, abs=0.005)
    torch.testing.assert_close(size, out.weights, rtol=1e-4, atol=1e-9)  # float32 logits
    torch.testing.assert_close(size.sum(), torch.tensor(1.0), rtol=0, atol=1e-5)  # batch-normalised


def test_dm_update_stays_finite_for_confident_examples():
    logits = _logits([[30.0, 0.0, 0.0], [12.0, 0.0, 0.0], Z], requires_grad=True)  # p_y -> 1 (float32: 1)
    out = build_loss("dm", 3)(logits, torch.tensor([0, 0, 0]), 1, 10)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(logits.grad).all()
    size = logits.grad.abs().sum(-1)
    assert (size <= out.weights * (1 + 1e-5)).all()
    assert size[2].item() == pytest.approx(out.weights[2].item(), rel=1e-5)


# ---- registry and validation ------------------------------------------------------------------

def test_registry_names_and_defaults():
    assert set(loss_names()) >= {"cce", "ls", "cp", "bootsoft", "proselflc", "dm"}
    assert build_loss("ls", 3).params() == {"epsilon": 0.125}
    assert build_loss("cp", 3).params() == {"epsilon": 0.25, "temperature": 0.4}
    assert build_loss("bootsoft", 3).params() == {"epsilon": 0.25, "temperature": 0.2}
    assert build_loss("proselflc", 3).params() == {"B": 12.0, "tau": 0.5, "temperature": 1.0, "burn_in": 0.0,
                                                   "trust_temperature": None}
    assert build_loss("proselflc_at", 3).params()["temperature"] == 0.2
    assert build_loss("proselflc_at", 3, temperature=0.5).params()["temperature"] == 0.5


def test_registry_rejects_unknown_name():
    with pytest.raises(ConfigError, match=r"unknown loss 'focal'; valid losses: cce, ls, cp"):
        build_loss("focal", 3)


@pytest.mark.parametrize("name, params, match", [
    ("cp", {"eps": 0.1}, "unknown parameter.*eps.*valid parameters: epsilon, temperature"),
    ("cce", {"epsilon": 0.1}, "valid parameters: none"),
    ("ls", {"epsilon": 1.0}, r"epsilon must be a number in \[0, 1\)"),
    ("bootsoft", {"epsilon": -0.1}, "epsilon"),
    ("proselflc", {"temperature": 0.0}, r"temperature must be a number in \(0, 1\]"),
    ("cp", {"temperature": 1.5}, "temperature"),
    ("proselflc", {"tau": "half"}, "tau"),
    ("dm", {"lam": -1.0}, "lam"),
])
def test_registry_validates_parameters(name, params, match):
    with pytest.raises(ConfigError, match=match):
        build_loss(name, 3, **params)


def test_registry_validates_num_classes():
    with pytest.raises(ConfigError, match="num_classes"):
        build_loss("cce", 1)


# ---- properties -------------------------------------------------------------------------------

_rows = st.integers(1, 6)
_classes = st.integers(2, 8)


@settings(max_examples=40, deadline=None)
@given(b=_rows, c=_classes, seed=st.integers(0, 2**16), scale=st.floats(0.01, 50.0),
       step=st.integers(1, 50), name=st.sampled_from(["ls", "bootsoft", "proselflc", "proselflc_at"]))
def test_convex_targets_are_distributions(b, c, seed, scale, step, name):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=gen) * scale
    labels = torch.randint(0, c, (b,), generator=gen)
    out = build_loss(name, c)(logits, labels, step, 50)
    torch.testing.assert_close(out.target.sum(-1), torch.ones(b), rtol=0, atol=1e-5)
    assert (out.target >= 0).all() and (out.target <= 1 + 1e-6).all()
    assert ((out.epsilon >= 0) & (out.epsilon <= 1)).all()
    assert torch.isfinite(out.loss)


@settings(max_examples=30, deadline=None)
@given(b=_rows, c=_classes, seed=st.integers(0, 2**16), eps=st.floats(0.0, 0.99),
       temperature=st.floats(0.05, 1.0))
def test_cp_target_sums_to_one_minus_two_epsilon(b, c, seed, eps, temperature):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=gen) * 10
    labels = torch.randint(0, c, (b,), generator=gen)
    out = build_loss("cp", c, epsilon=eps, temperature=temperature)(logits, labels, 1, 10)
    torch.testing.assert_close(out.target.sum(-1), torch.full((b,), 1 - 2 * eps), rtol=0, atol=1e-5)
    assert torch.isfinite(out.loss)
