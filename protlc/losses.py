"""Robust losses (docs/method.md §1) and derivative manipulation (docs/method.md §2), as small units plus a registry.

Shapes: ``B`` examples, ``C`` classes. Every loss is built by name with :func:`build_loss` and called as
``loss_fn(logits (B, C), labels (B,) long, step, total_steps) -> LossOutput``, where ``step`` is the
1-based optimizer step and ``total_steps`` the run's total optimizer steps (Γ).

All target-based losses are cross-entropy against a detached target ``q̃`` averaged over the batch,
``L = mean_i -Σ_j q̃_ij log p_ij`` with ``log p`` from ``log_softmax`` (finite even where ``q̃`` is
negative, as for CP). Their logit gradient is ``(Σ_j q̃_ij · p_i - q̃_i) / B`` (``(p_i - q̃_i) / B`` when
the target sums to 1). DM is not a target: it scales each example's cross-entropy by a detached factor
so that example i's logit gradient ``w_i (p_i - y_i) / ‖p_i - y_i‖₁`` has L1 norm exactly the detached,
batch-normalised weight ``w_i`` (Wang et al., "Derivative Manipulation for General Example Weighting").
"""

from __future__ import annotations

import inspect
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from protlc.errors import ConfigError
from protlc.validate import Rule, check, number


# DM divides by 1 - p(y|x); below this the divisor is held (see DerivativeManipulation).
DM_MIN_RESIDUAL = 1e-4


class LossOutput(NamedTuple):
    """What one loss call returns.

    Attributes:
        loss: scalar to back-propagate.
        epsilon: ``(B,)`` detached ε used per example, or None (CCE, DM: no target correction).
        weights: ``(B,)`` detached normalised DM weights (sum 1), or None.
        target: ``(B, C)`` detached target q̃, or None (CCE, DM: the observed one-hot label).
        global_trust: g(t) of ProSelfLC (0 during its burn-in), else None.
        local_trust: ``(B,)`` l(p̂_i) of ProSelfLC, else None.
    """

    loss: torch.Tensor
    epsilon: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    target: torch.Tensor | None = None
    global_trust: float | None = None
    local_trust: torch.Tensor | None = None


# ---- pure units -------------------------------------------------------------------------------

def global_trust(step: int, total_steps: int, B: float = 12.0, tau: float = 0.5) -> float:
    """g(t) = 1 / (1 + exp(-B (t/Γ - τ))): trust in the learner, rising from ~0 to ~1 over the run.

    Raises:
        ConfigError: ``total_steps`` < 1 or ``step`` < 1.
    """
    if total_steps < 1 or step < 1:
        raise ConfigError(f"global trust needs step >= 1 and total_steps >= 1, got step={step}, total_steps={total_steps}")
    x = B * (step / total_steps - tau)
    if x >= 0:  # the two branches keep exp() from overflowing for any B
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def burn_in_steps(total_steps: int, burn_in: float) -> int:
    """Optimizer steps of a ProSelfLC burn-in: round(burn_in · Γ), at most Γ - 1 (0 for ``burn_in`` = 0)."""
    return min(total_steps - 1, int(math.floor(burn_in * total_steps + 0.5))) if burn_in > 0 else 0


def progressive_trust(step: int, total_steps: int, B: float = 12.0, tau: float = 0.5, burn_in: float = 0.0) -> float:
    """g(t) with an optional burn-in (docs/method.md §1): 0 for the first ``b = burn_in_steps(Γ, burn_in)``
    steps (the loss is CCE), then :func:`global_trust` over the remaining ``Γ - b`` steps, i.e.
    g(t) = 1 / (1 + exp(-B ((t - b)/(Γ - b) - τ))). ``burn_in`` = 0 is exactly :func:`global_trust`.
    """
    if total_steps < 1 or step < 1:
        raise ConfigError(f"global trust needs step >= 1 and total_steps >= 1, got step={step}, total_steps={total_steps}")
    b = burn_in_steps(total_steps, burn_in)
    if step <= b:
        return 0.0
    return global_trust(step - b, total_steps - b, B, tau)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c target_c log softmax(logits)_c; ``(B, C)`` each, computed in float32."""
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def local_trust(p: torch.Tensor) -> torch.Tensor:
    """l(p) = 1 - H(p)/log C per row (0·log 0 = 0), clamped to [0, 1] against rounding.

    Args:
        p: ``(B, C)`` probabilities, C >= 2.

    Returns:
        ``(B,)``: 1 for a one-hot row, 0 for the uniform distribution.
    """
    entropy = -torch.special.xlogy(p, p).sum(dim=-1)
    return (1.0 - entropy / math.log(p.shape[-1])).clamp(0.0, 1.0)


def corrected_target(y: torch.Tensor, q: torch.Tensor, epsilon: torch.Tensor | float) -> torch.Tensor:
    """q̃ = (1 - ε) y + ε q.

    LS uses q = uniform (``1/C``), Boot-soft and ProSelfLC q = p̂, CP q = -p̂.

    Args:
        y: ``(B, C)`` one-hot observed labels.
        q: ``(B, C)`` or ``(C,)`` what the target moves towards.
        epsilon: a float or ``(B,)`` per-example ε.

    Returns:
        ``(B, C)``.
    """
    if isinstance(epsilon, torch.Tensor):
        epsilon = epsilon.unsqueeze(-1)
    return (1.0 - epsilon) * y + epsilon * q


def dm_weights(p_y: torch.Tensor, beta: float, lam: float) -> torch.Tensor:
    """Normalised DM weights w_i ∝ exp(β p_i^λ (1 - p_i)), summing to 1 over the batch.

    Args:
        p_y: ``(B,)`` probability of each example's observed label (detached by the caller).
        beta: β >= 0, how strongly examples are told apart (0 gives uniform weights).
        lam: λ >= 0; the weight peaks at p = :func:`emphasis_mode` (λ).

    Returns:
        ``(B,)``.
    """
    return torch.softmax(beta * p_y.pow(lam) * (1.0 - p_y), dim=0)


def dm_residual(p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 - p(y_i|x_i) = ‖p_i - y_i‖₁ / 2 per row, summed over the other classes (no cancellation near 1).

    Args:
        p: ``(B, C)`` probabilities.
        labels: ``(B,)`` long observed labels.

    Returns:
        ``(B,)``.
    """
    return p.scatter(-1, labels.unsqueeze(-1), 0.0).sum(dim=-1)


def emphasis_mode(lam: float) -> float:
    """ψ = λ / (λ + 1): the p(y|x) that gets the largest DM weight."""
    return lam / (lam + 1.0)


def sharpened(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """p̂ = softmax(z / T) of detached float32 logits ``(B, C)``."""
    return torch.softmax(logits.detach().float() / temperature, dim=-1)


# ---- loss modules -----------------------------------------------------------------------------

class RobustLoss(nn.Module):
    """Cross-entropy against a detached target; subclasses define :meth:`targets`.

    Args:
        num_classes: C >= 2.
    """

    name = "base"

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ConfigError(f"loss {self.name!r}: num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = num_classes

    def params(self) -> dict:
        """The loss's hyper-parameters as plain values (for configs and logs)."""
        return {}

    def targets(self, logits: torch.Tensor, labels: torch.Tensor, step: int, total_steps: int):
        """Detached target ``(B, C)`` and per-example ε ``(B,)`` (or None) for these logits."""
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, step: int, total_steps: int) -> LossOutput:
        """``logits`` ``(B, C)`` (any float dtype; computed in float32), ``labels`` ``(B,)`` long."""
        with torch.no_grad():
            target, epsilon = self.targets(logits, labels, step, total_steps)
        return LossOutput(loss=soft_cross_entropy(logits, target), epsilon=epsilon, target=target)

    def _one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, self.num_classes).float()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params().items())


class CrossEntropy(RobustLoss):
    """CCE: target = y."""

    name = "cce"

    def targets(self, logits, labels, step, total_steps):
        return self._one_hot(labels), None

    def forward(self, logits, labels, step, total_steps) -> LossOutput:
        return LossOutput(loss=F.cross_entropy(logits.float(), labels))


class LabelSmoothing(RobustLoss):
    """LS: q̃ = (1 - ε) y + ε/C."""

    name = "ls"

    def __init__(self, num_classes: int, epsilon: float = 0.125) -> None:
        super().__init__(num_classes)
        self.epsilon = _check(self.name, "epsilon", epsilon, number(0, 1, high_open=True))

    def params(self):
        return {"epsilon": self.epsilon}

    def targets(self, logits, labels, step, total_steps):
        eps = torch.full(labels.shape, self.epsilon, device=logits.device)
        return corrected_target(self._one_hot(labels), 1.0 / self.num_classes, eps), eps


class _FixedSelfTarget(RobustLoss):
    """q̃ = (1 - ε) y + sign · ε p̂ with a fixed ε (Boot-soft: +1, CP: -1)."""

    sign = 1.0

    def __init__(self, num_classes: int, epsilon: float = 0.25, temperature: float = 1.0) -> None:
        super().__init__(num_classes)
        self.epsilon = _check(self.name, "epsilon", epsilon, number(0, 1, high_open=True))
        self.temperature = _check(self.name, "temperature", temperature, number(0, 1, low_open=True))

    def params(self):
        return {"epsilon": self.epsilon, "temperature": self.temperature}

    def targets(self, logits, labels, step, total_steps):
        eps = torch.full(labels.shape, self.epsilon, device=logits.device)
        q = self.sign * sharpened(logits, self.temperature)
        return corrected_target(self._one_hot(labels), q, eps), eps


class ConfidencePenalty(_FixedSelfTarget):
    """CP: q̃ = (1 - ε) y - ε p̂ (sums to 1 - 2ε; negative entries are fine)."""

    name = "cp"
    sign = -1.0

    def __init__(self, num_classes: int, epsilon: float = 0.25, temperature: float = 0.4) -> None:
        super().__init__(num_classes, epsilon, temperature)


class BootSoft(_FixedSelfTarget):
    """Boot-soft: q̃ = (1 - ε) y + ε p̂."""

    name = "bootsoft"

    def __init__(self, num_classes: int, epsilon: float = 0.25, temperature: float = 0.2) -> None:
        super().__init__(num_classes, epsilon, temperature)


class ProSelfLC(RobustLoss):
    """ProSelfLC: q̃ = (1 - ε_i) y + ε_i p̂, ε_i = g(t) · l(softmax(z_i / T_l)); T < 1 is ProSelfLC-AT.

    The local trust is measured at ``trust_temperature`` T_l; None (default) means T_l = T, the literal
    l(p̂) of the method. T_l = 1 measures it on the learner's own p: at T = 0.2, l(p̂) trusts a weak model
    with ~100 classes, which collapses short runs (docs/method.md §1). With T = 1 both are the same.
    ``burn_in`` (a fraction of the run's optimizer steps, in [0, 1)) keeps ε = 0 (plain CCE) for the
    first round(burn_in · Γ) steps and runs g over the rest (:func:`progressive_trust`).
    """

    name = "proselflc"

    def __init__(self, num_classes: int, B: float = 12.0, tau: float = 0.5, temperature: float = 1.0,
                 burn_in: float = 0.0, trust_temperature: float | None = None) -> None:
        super().__init__(num_classes)
        self.B = _check(self.name, "B", B, number(0))
        self.tau = _check(self.name, "tau", tau, number(0, 1))
        self.temperature = _check(self.name, "temperature", temperature, number(0, 1, low_open=True))
        self.burn_in = _check(self.name, "burn_in", burn_in, number(0, 1, high_open=True))
        self.trust_temperature = (None if trust_temperature is None else
                                  _check(self.name, "trust_temperature", trust_temperature, number(0, 1, low_open=True)))

    def params(self):
        return {"B": self.B, "tau": self.tau, "temperature": self.temperature, "burn_in": self.burn_in,
                "trust_temperature": self.trust_temperature}

    def trust(self, logits, step, total_steps):
        """p̂ ``(B, C)``, g(t) and l(p̂) ``(B,)`` for these logits (detached)."""
        p_hat = sharpened(logits, self.temperature)
        t_l = self.trust_temperature
        p_l = p_hat if t_l is None or t_l == self.temperature else sharpened(logits, t_l)
        return p_hat, progressive_trust(step, total_steps, self.B, self.tau, self.burn_in), local_trust(p_l)

    def targets(self, logits, labels, step, total_steps):
        p_hat, g, l = self.trust(logits, step, total_steps)
        eps = g * l
        return corrected_target(self._one_hot(labels), p_hat, eps), eps

    def forward(self, logits, labels, step, total_steps) -> LossOutput:
        """As :meth:`RobustLoss.forward`, plus g(t) and l(p̂) for the training log."""
        with torch.no_grad():
            p_hat, g, l = self.trust(logits, step, total_steps)
            eps = g * l
            target = corrected_target(self._one_hot(labels), p_hat, eps)
        return LossOutput(loss=soft_cross_entropy(logits, target), epsilon=eps, target=target, global_trust=g,
                          local_trust=l)


class DerivativeManipulation(RobustLoss):
    """DM: example i's logit gradient is ``w_i (p_i - y_i) / ‖p_i - y_i‖₁``, of L1 norm ``w_i``.

    ``w_i = dm_weights(p(y_i|x_i), β, λ)`` is detached and normalised to sum 1 over the batch, so the
    largest update goes to p(y_i|x_i) = ψ = λ/(λ+1) (:attr:`emphasis_mode`) and the batch's updates sum
    to 1 in L1 norm. The loss is ``Σ_i c_i CE_i`` with the detached factor
    ``c_i = w_i / (2 max(1 - p(y_i|x_i), DM_MIN_RESIDUAL))`` (``‖p_i - y_i‖₁ = 2 (1 - p(y_i|x_i))``). The
    clamp keeps c_i finite as p(y_i|x_i) -> 1: above ``1 - DM_MIN_RESIDUAL`` the update shrinks to 0
    linearly instead of dividing by float32 rounding error. (Σ_i w_i CE_i would give updates of norm
    ``2 (1 - p) w_i``, which moves the largest update below ψ, e.g. to p ≈ 0.40 for β 8, λ 1.)
    """

    name = "dm"

    def __init__(self, num_classes: int, beta: float = 8.0, lam: float = 1.0) -> None:
        super().__init__(num_classes)
        self.beta = _check(self.name, "beta", beta, number(0))
        self.lam = _check(self.name, "lam", lam, number(0))

    def params(self):
        return {"beta": self.beta, "lam": self.lam}

    @property
    def emphasis_mode(self) -> float:
        """ψ = λ/(λ+1): the p(y|x) whose example gets the largest update."""
        return emphasis_mode(self.lam)

    def targets(self, logits, labels, step, total_steps):
        return self._one_hot(labels), None

    def forward(self, logits, labels, step, total_steps) -> LossOutput:
        log_p = F.log_softmax(logits.float(), dim=-1)
        per_example = F.nll_loss(log_p, labels, reduction="none")
        with torch.no_grad():
            p = log_p.exp()
            residual = dm_residual(p, labels)  # 1 - p(y_i|x_i)
            weights = dm_weights(1.0 - residual, self.beta, self.lam)
            scale = weights / (2.0 * residual.clamp(min=DM_MIN_RESIDUAL))
        return LossOutput(loss=(scale * per_example).sum(), weights=weights)


def _check(loss: str, key: str, value, rule: Rule) -> float:
    return float(check(value, rule, f"loss {loss!r}: {key}"))


# ---- registry ---------------------------------------------------------------------------------

# name -> (class, default overrides); `proselflc_at` is ProSelfLC with the low temperature of docs/method.md §1.
LOSSES: dict[str, tuple[type[RobustLoss], dict]] = {
    "cce": (CrossEntropy, {}),
    "ls": (LabelSmoothing, {}),
    "cp": (ConfidencePenalty, {}),
    "bootsoft": (BootSoft, {}),
    "proselflc": (ProSelfLC, {}),
    "proselflc_at": (ProSelfLC, {"temperature": 0.2}),
    "dm": (DerivativeManipulation, {}),
}


def loss_names() -> list[str]:
    """Registered loss names."""
    return list(LOSSES)


def build_loss(name: str, num_classes: int, **params) -> RobustLoss:
    """Build a registered loss with its defaults (docs/method.md §1-2), overridden by ``params``.

    Raises:
        ConfigError: unknown name, unknown parameter, or a value out of range.
    """
    if name is None or (isinstance(name, str) and not name.strip()):  # --loss '' (YAML reads it as null)
        raise ConfigError(f"the loss name is empty; valid losses: {', '.join(LOSSES)}")
    if not isinstance(name, str) or name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; valid losses: {', '.join(LOSSES)}")
    cls, defaults = LOSSES[name]
    accepted = list(inspect.signature(cls.__init__).parameters)[2:]  # after self, num_classes
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) if accepted else "none"
        raise ConfigError(f"loss {name!r}: unknown parameter(s) {', '.join(unknown)}; valid parameters: {valid}")
    return cls(num_classes, **{**defaults, **params})
