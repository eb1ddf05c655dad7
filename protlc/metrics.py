"""Confidence metrics, calibration and the six training-dynamics curves of docs/method.md §4.

All functions take class probabilities ``probs`` of shape ``(N, C)`` (rows sum to 1) and integer
labels of shape ``(N,)`` as numpy arrays, and return plain floats.
"""

from __future__ import annotations

import numpy as np


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy per row (nats), with 0·log 0 = 0. Shape ``(N,)``."""
    logp = np.log(np.where(probs > 0, probs, 1.0))
    return -(probs * logp).sum(axis=1)


def confidence_entropy(probs: np.ndarray) -> float:
    """Mean of 1 - H(p)/H(u): 1 for one-hot predictions, 0 for uniform ones."""
    if len(probs) == 0:
        return float("nan")
    return float(np.mean(1.0 - entropy(probs) / np.log(probs.shape[1])))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else float("nan")


def max_p(probs: np.ndarray) -> float:
    return float(np.mean(probs.max(axis=1))) if len(probs) else float("nan")


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width confidence bins (top-label)."""
    if len(labels) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            total += in_bin.mean() * abs(conf[in_bin].mean() - correct[in_bin].mean())
    return float(total)


def summarize(probs: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, float]:
    """The docs/method.md §4 metrics of one data set: ``{prefix}/accuracy``, ``/confidence_entropy``, ``/max_p``, ``/ece``."""
    return {
        f"{prefix}/accuracy": accuracy(probs, labels),
        f"{prefix}/confidence_entropy": confidence_entropy(probs),
        f"{prefix}/max_p": max_p(probs),
        f"{prefix}/ece": ece(probs, labels),
    }


DYNAMICS_CURVES = (
    "correct_fitting",  # (a) accuracy on the clean subset
    "wrong_fitting",  # (b) accuracy on the noisy subset against the noisy labels
    "class_correction",  # (c) accuracy on the noisy subset against the clean labels
    "entropy_clean",  # (d) mean H(p)/log C on the clean subset
    "entropy_noisy",  # (e) mean H(p)/log C on the noisy subset
    "generalisation",  # (f) test accuracy
)


def training_dynamics(train_probs: np.ndarray, observed: np.ndarray, clean: np.ndarray,
                      is_noisy: np.ndarray, test_probs: np.ndarray, test_labels: np.ndarray) -> dict[str, float]:
    """The six curves of docs/method.md §4 at one point of training (values in [0, 1]; NaN for an empty subset)."""
    is_noisy = is_noisy.astype(bool)
    c, n = ~is_noisy, is_noisy
    log_c = np.log(train_probs.shape[1])
    norm_entropy = entropy(train_probs) / log_c
    return {
        "correct_fitting": accuracy(train_probs[c], observed[c]),
        "wrong_fitting": accuracy(train_probs[n], observed[n]),
        "class_correction": accuracy(train_probs[n], clean[n]),
        "entropy_clean": float(norm_entropy[c].mean()) if c.any() else float("nan"),
        "entropy_noisy": float(norm_entropy[n].mean()) if n.any() else float("nan"),
        "generalisation": accuracy(test_probs, test_labels),
    }


def correlation(predicted, measured, method: str = "pearson") -> float | None:
    """Pearson or Spearman correlation of two equal-length vectors, or None where it is undefined.

    Undefined: fewer than two pairs, a non-finite value, or a vector without spread (a constant
    prediction, e.g. an untrained head). Computed in float64 without numpy or scipy warnings, so that
    nothing reaches the user's terminal for a metric that simply does not exist.
    """
    a = np.asarray(predicted, dtype=np.float64).ravel()
    b = np.asarray(measured, dtype=np.float64).ravel()
    if len(a) != len(b) or len(a) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    if method == "spearman":
        from scipy.stats import rankdata

        a, b = rankdata(a), rankdata(b)
    elif method != "pearson":
        raise ValueError(f"unknown correlation {method!r}")
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    if not norm > 0 or not np.isfinite(norm):
        return None
    return float(np.clip(np.dot(a, b) / norm, -1.0, 1.0))
