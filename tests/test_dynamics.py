import math

import numpy as np
import torch
import torchmetrics

from protlc.metrics import accuracy, confidence_entropy, ece, max_p, training_dynamics


def test_confidence_entropy_extremes_and_hand_value():
    onehot = np.eye(3)
    uniform = np.full((2, 3), 1 / 3)
    assert confidence_entropy(onehot) == 1.0
    assert abs(confidence_entropy(uniform)) < 1e-12
    p = np.array([[0.5, 0.5, 0.0]])  # H = log 2, H(u) = log 3
    assert math.isclose(confidence_entropy(p), 1 - math.log(2) / math.log(3))


def test_accuracy_and_max_p():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    assert accuracy(p, np.array([0, 1])) == 0.5
    assert math.isclose(max_p(p), 0.65)


def test_ece_matches_torchmetrics():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 7)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 7, 500)
    ref = torchmetrics.functional.classification.multiclass_calibration_error(
        torch.tensor(probs, dtype=torch.float64), torch.tensor(labels), num_classes=7, n_bins=15)
    assert math.isclose(ece(probs, labels), float(ref), abs_tol=1e-6)


def test_training_dynamics_subsets():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    observed = np.array([0, 1, 1, 1])
    clean = np.array([0, 1, 0, 0])
    noisy = np.array([False, False, True, True])
    d = training_dynamics(probs, observed, clean, noisy, probs[:2], np.array([0, 0]))
    assert d["correct_fitting"] == 1.0
    assert d["wrong_fitting"] == 0.5  # row 3 predicts 1 == noisy label
    assert d["class_correction"] == 0.5  # row 2 predicts 0 == clean label
    assert d["generalisation"] == 0.5
    h = lambda p: -(p * np.log(p)).sum() / np.log(2)  # noqa: E731
    assert math.isclose(d["entropy_noisy"], (h(probs[2]) + h(probs[3])) / 2)
