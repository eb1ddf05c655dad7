"""The homology known-ness score, the fused score and their metrics (protlc.unknown; no search needed)."""

from __future__ import annotations

import numpy as np
import pytest

from protlc.unknown import (
    FUSION_WEIGHTS,
    NO_HIT_SCORE,
    auroc,
    flagged_at_rate,
    fused_score,
    homology_metrics,
    homology_score,
    percentile,
    selection_half,
)


def test_homology_score_orders_evalues_and_puts_no_hit_lowest():
    s = homology_score(np.array([1e-30, 1e-3, 10.0, np.inf, 0.0]))
    assert s[:3] == pytest.approx([30.0, 3.0, -1.0]) and s[3] == NO_HIT_SCORE and s[4] == pytest.approx(300.0)
    assert np.isfinite(s).all() and s[3] < s[:3].min()
    for bad in ([-1.0], [np.nan]):
        with pytest.raises(ValueError, match=">= 0"):
            homology_score(np.array(bad))


def test_homology_auroc_on_a_constructed_case_with_no_hit_ties():
    known = homology_score(np.array([1e-40, 1e-20, 1e-5, np.inf]))  # one known domain without a hit
    novel = homology_score(np.array([np.inf, np.inf, 1e-1]))
    # pairs: the three known hits beat all 3 novel (9); the no-hit known ties two no-hit novel (2 x 1/2) and
    # loses to the weak hit: 10 of 12
    assert auroc(known, novel) == pytest.approx(10 / 12)
    assert auroc(homology_score(np.full(3, np.inf)), homology_score(np.full(2, np.inf))) == 0.5


def test_percentile_is_the_mid_rank_cdf():
    ref = np.array([0.0, 0.0, 1.0, 2.0])
    assert percentile(np.array([-1.0, 0.0, 1.0, 1.5, 3.0]), ref).tolist() == [0.0, 0.25, 0.625, 0.75, 1.0]


def test_the_tie_break_weight_keeps_homology_order_and_splits_no_hit_ties_by_the_network():
    dev_h, dev_n = homology_score(np.array([1e-30, 1e-10, 1e-5, np.inf])), np.array([0.9, 0.8, 0.7, 0.1])
    h = homology_score(np.array([1e-20, np.inf, np.inf]))
    n = np.array([0.0, 0.95, 0.05])
    fused = fused_score(h, n, dev_h, dev_n, 1 - 1e-6)
    assert fused[0] > fused[1] > fused[2]  # any hit above no hit; among no-hits the network decides
    assert fused_score(h, n, dev_h, dev_n, 0.0).tolist() == percentile(n, dev_n).tolist()


def test_flagged_at_rate_interpolates_ties():
    known, novel = np.array([0.0, 0.0, 1.0, 2.0]), np.array([0.0, 0.0, 5.0, -1.0])
    assert flagged_at_rate(known, novel, 0.0) == 0.25  # only what is below every known domain
    assert flagged_at_rate(known, novel, 0.25) == pytest.approx(0.25 + 0.5 * 0.5)  # half of the tied block
    assert flagged_at_rate(known, novel, 0.5) == 0.75 and flagged_at_rate(known, novel, 1.0) == 0.75


def _case(rng, n_known=200, n_novel=200):
    """Known domains mostly hit; novel ones of 4 families mostly do not, the network tells them apart."""
    families = np.repeat(np.array(["a", "b", "c", "d"], dtype=object), n_novel // 4)

    def e(n, hit):
        return np.where(rng.random(n) < hit, 10.0 ** -rng.uniform(5, 50, n), np.inf)

    evalues = (e(n_known, 0.9), e(n_known, 0.9), e(n_novel, 0.1))
    network = (rng.normal(1, 1, n_known), rng.normal(1, 1, n_known), rng.normal(-1, 1, n_novel))
    return network, evalues, families


def test_homology_metrics_and_the_fused_choice_uses_the_selection_half_only():
    rng = np.random.default_rng(0)
    network, evalues, families = _case(rng)
    m = homology_metrics(network, evalues, families, seed=3)
    half = selection_half(families, 3)
    assert m["fused/weight"] in FUSION_WEIGHTS and m["fused/weight"] not in (0.0, 1.0)  # both carry signal
    assert m["hmmer/auroc"] == pytest.approx(auroc(homology_score(evalues[1]), homology_score(evalues[2])[~half]))
    assert m["fused/auroc"] > max(m["hmmer/auroc"], auroc(network[1], network[2][~half]))
    assert m["hmmer/flagged_known_test_evalue"] == pytest.approx(np.mean(evalues[1] > 1e-3))
    assert m["hmmer/flagged_novel_evalue"] == pytest.approx(np.mean(evalues[2][~half] > 1e-3))
    # change the known test domains and the evaluation half at will: the weight, chosen on dev and the
    # selection half, stays; changing the selection half moves it
    shuffled = (network[0], -network[1], np.where(half, network[2], 10.0))
    assert homology_metrics(shuffled, (evalues[0], np.full(200, np.inf), evalues[2]), families, 3)["fused/weight"] == \
        m["fused/weight"]
    flipped = (network[0], network[1], np.where(half, network[2] + 6, network[2]))
    assert homology_metrics(flipped, evalues, families, 3)["fused/weight"] == 1.0  # the network now misleads


def test_at_rate_comparisons_share_one_known_flag_rate():
    network, evalues, families = _case(np.random.default_rng(1))
    m = homology_metrics(network, evalues, families, seed=0)
    # HMMER at its own E-value rule's known rate is the E-value rule (no novel E-value between the hits)
    assert m["hmmer/flagged_novel_at_evalue_rate"] == pytest.approx(m["hmmer/flagged_novel_evalue"])
    assert 0 <= m["fused/flagged_novel_at_network_rate"] <= 1 and 0 <= m["network/flagged_novel_at_evalue_rate"] <= 1
