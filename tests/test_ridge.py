"""Ridge baseline: equals ridge on the dense full one-hot; clearly beats the mean predictor on the nn4dms main
split of the repository's real Pab1 subset. (The nn4dms reference Pearsons on the full main splits of avGFP,
Bgl3 and Pab1 are checked by benchmarks/check_full_data.py, which needs ../shared/data.)"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

import protlc.dms.ridge as ridge_module
from protlc.dms.ridge import OneHotRidge, ridge_baseline
from protlc.dms.splits import Split, published_split
from protlc.dms.tables import MUTATED_SEQUENCE, SCORE, load_dms_table, sequence_matrix
from protlc.errors import InputError

LETTERS = "ACDEFGHIKLMNPQRSTVWY*"


def _dense_one_hot(sequences):
    matrix = np.zeros((len(sequences), len(sequences[0]) * len(LETTERS)))
    for i, s in enumerate(sequences):
        matrix[i, [p * len(LETTERS) + LETTERS.index(c) for p, c in enumerate(s)]] = 1.0
    return matrix


@pytest.mark.parametrize("dense_limit", [ridge_module.MAX_DENSE_FEATURES, 0])
def test_matches_sklearn_ridge_on_the_full_one_hot(pab1, monkeypatch, dense_limit):
    """Both solvers (eigendecomposition, LSQR) equal sklearn on the dense L x 21 one-hot of real Pab1 variants."""
    monkeypatch.setattr(ridge_module, "MAX_DENSE_FEATURES", dense_limit)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(pab1), size=1000, replace=False)
    train, test = rows[:800], rows[800:]
    sequences = pab1[MUTATED_SEQUENCE].to_numpy()
    scores = pab1[SCORE].to_numpy()
    wt = pab1.attrs["wild_type"]
    ours = OneHotRidge(wt).fit(sequence_matrix(list(sequences[train]), len(wt)), scores[train])
    for alpha in (0.3, 10.0):
        reference = Ridge(alpha=alpha).fit(_dense_one_hot(sequences[train]), scores[train])
        expected = reference.predict(_dense_one_hot(sequences[test]))
        predicted = ours.predict(sequence_matrix(list(sequences[test]), len(wt)), alpha)
        np.testing.assert_allclose(predicted, expected, atol=1e-5)


@pytest.mark.parametrize("dense_limit", [ridge_module.MAX_DENSE_FEATURES, 0])
def test_substitution_types_match_sklearn_with_type_count_columns(pab1, monkeypatch, dense_limit):
    """substitution_types=True equals sklearn ridge on the full one-hot plus one count column per
    substitution type (wild-type letter -> mutant letter) seen in training, on real Pab1 variants."""
    monkeypatch.setattr(ridge_module, "MAX_DENSE_FEATURES", dense_limit)
    rows = np.random.default_rng(1).choice(len(pab1), size=1000, replace=False)
    train, test = rows[:800], rows[800:]
    sequences = pab1[MUTATED_SEQUENCE].to_numpy()
    scores = pab1[SCORE].to_numpy()
    wt = pab1.attrs["wild_type"]

    def types_of(s):
        return [(w, m) for w, m in zip(wt, s) if w != m]

    seen = sorted({t for s in sequences[train] for t in types_of(s)})

    def design(batch):
        counts = np.zeros((len(batch), len(seen)))
        for i, s in enumerate(batch):
            for t in types_of(s):
                if t in seen:
                    counts[i, seen.index(t)] += 1
        return np.hstack([_dense_one_hot(batch), counts])

    ours = OneHotRidge(wt, substitution_types=True).fit(sequence_matrix(list(sequences[train]), len(wt)), scores[train])
    assert ours.num_features > OneHotRidge(wt).fit(sequence_matrix(list(sequences[train]), len(wt)),
                                                   scores[train]).num_features
    for alpha in (0.3, 10.0):
        expected = Ridge(alpha=alpha).fit(design(sequences[train]), scores[train]).predict(design(sequences[test]))
        predicted = ours.predict(sequence_matrix(list(sequences[test]), len(wt)), alpha)
        np.testing.assert_allclose(predicted, expected, atol=1e-5)


def _published(nn4dms, name):
    frame = load_dms_table(nn4dms / name / f"{name}.tsv")
    split = published_split(nn4dms / name / "splits_main", n_rows=len(frame))
    return ridge_baseline(frame.attrs["wild_type"], frame[MUTATED_SEQUENCE].tolist(), frame[SCORE].to_numpy(), split)


def test_pab1_main_split_beats_the_mean_predictor(nn4dms):
    """Ridge on the published main split restricted to the 1,022 real Pab1 variants (816 train, 103 tune,
    103 test). Measured: test Pearson 0.782, Spearman 0.827, MSE 0.39 x the training-mean predictor's.
    Fitting on only 200 of the training rows gives 0.56, 0.58 and 0.68 x, failing all three bounds;
    shuffled scores or misaligned predictions give a Pearson near 0."""
    result = _published(nn4dms, "pab1")
    frame = load_dms_table(nn4dms / "pab1" / "pab1.tsv")
    split = published_split(nn4dms / "pab1" / "splits_main", n_rows=len(frame))
    scores = frame[SCORE].to_numpy()
    measured = scores[split.test]
    assert len(result.test_predictions) == len(split.test) == 103
    assert result.test_pearson > 0.72, result
    assert result.test_spearman > 0.75, result
    mean_mse = np.mean((scores[split.train].mean() - measured) ** 2)
    assert np.mean((result.test_predictions - measured) ** 2) < 0.55 * mean_mse, result
    metrics = result.metrics()
    assert metrics["ridge/test/pearson"] == result.test_pearson
    assert {"ridge/test/spearman", "ridge/alpha", "ridge/tune/pearson"} <= set(metrics)


def test_bad_inputs(pab1):
    wt = pab1.attrs["wild_type"]
    sequences = pab1[MUTATED_SEQUENCE].tolist()[:30]
    split = Split(np.arange(20), np.arange(20, 25), np.arange(25, 30))
    with pytest.raises(InputError, match="wild type's length 75"):
        ridge_baseline(wt, sequences[:29] + [wt[:-1]], np.arange(30.0), split)
    with pytest.raises(InputError, match="no training variant differs"):
        ridge_baseline(wt, [wt] * 30, np.arange(30.0), split)
