"""Unknown-family scores from a classifier's logits, their AUROC against novel families, and the
novel-family evaluation that ``protlc train`` records (docs/method.md §4, "Unknown families").

Scores, all "higher = more like a known family", from logits z over C classes and p = softmax(z):

* ``max_p``: max_j p_j (the default; what ``predict`` has always used);
* ``entropy``: 1 - H(p)/log C, the normalised-entropy confidence;
* ``energy``: logsumexp_j z_j, the negative free energy at temperature 1.

A domain is flagged unknown when its score is below the threshold: the 1st percentile
(:data:`UNKNOWN_QUANTILE`) of the known dev domains' scores, so 99% of in-distribution domains pass.

AUROC of a score for telling novel from known domains: P(s_known > s_novel) + P(s_known = s_novel)/2
over all pairs (the Mann-Whitney U statistic over n_known * n_novel): 1 separates them perfectly, 0.5 is
chance.

Choosing the score without looking at the test novel domains (:func:`novel_metrics`): the novel
families are split into two halves by a Generator seeded with the run's seed
(``default_rng([seed, SELECTION_STREAM])``, the first ceil(K/2) of a permutation of the sorted family
ids): the *selection* half, scored against the known **dev** domains, picks the score with the highest
AUROC (ties: the order of :data:`SCORES`, so max p wins a tie); the *evaluation* half, against the known
**test** domains, gives every reported AUROC and flag rate. With a single novel family its domains are
halved instead.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp
from scipy.stats import rankdata

SCORES = ("max_p", "entropy", "energy")
DEFAULT_SCORE = "max_p"
UNKNOWN_QUANTILE = 0.01
SELECTION_STREAM = 7


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def score(logits: np.ndarray, name: str) -> np.ndarray:
    """One unknown score per row of ``logits`` ``(N, C)``; float64 ``(N,)``, higher = more known.

    Raises:
        ValueError: an unknown score name.
    """
    if name == "energy":
        return logsumexp(np.asarray(logits, dtype=np.float64), axis=1)
    probs = softmax(logits)
    if name == "max_p":
        return probs.max(axis=1)
    if name == "entropy":
        logp = np.log(np.where(probs > 0, probs, 1.0))
        return 1.0 - (-(probs * logp).sum(axis=1)) / math.log(probs.shape[1])
    raise ValueError(f"unknown score {name!r}; choose one of {', '.join(SCORES)}")


def threshold(known_scores: np.ndarray, quantile: float = UNKNOWN_QUANTILE) -> float:
    """The score below which only ``quantile`` of the known (dev) domains fall."""
    return float(np.quantile(np.asarray(known_scores, dtype=np.float64), quantile))


def auroc(known_scores: np.ndarray, novel_scores: np.ndarray) -> float:
    """P(known > novel) + P(tie)/2 over all pairs; NaN when either side is empty."""
    known, novel = np.asarray(known_scores, dtype=np.float64), np.asarray(novel_scores, dtype=np.float64)
    if known.size == 0 or novel.size == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([known, novel]))  # average ranks: ties count one half
    u = ranks[: known.size].sum() - known.size * (known.size + 1) / 2
    return float(u / (known.size * novel.size))


def selection_half(families: np.ndarray, seed: int) -> np.ndarray:
    """Boolean mask over novel domains: True for the half that chooses the score (see the module docstring)."""
    families = np.asarray(families, dtype=object)
    names = sorted(set(families.tolist()))
    rng = np.random.default_rng([seed, SELECTION_STREAM])
    if len(names) >= 2:
        chosen = {names[i] for i in rng.permutation(len(names))[: math.ceil(len(names) / 2)]}
        return np.array([f in chosen for f in families], dtype=bool)
    mask = np.zeros(families.size, dtype=bool)
    mask[rng.permutation(families.size)[: math.ceil(families.size / 2)]] = True
    return mask


def novel_metrics(dev_logits: np.ndarray, test_logits: np.ndarray, novel_logits: np.ndarray,
                  novel_families: np.ndarray, seed: int) -> dict:
    """The ``novel/...`` entries of ``final_metrics.json`` (keys in the module docstring's terms):

    ``novel/auroc_{score}`` (known test vs evaluation-half novel), ``novel/dev_auroc_{score}`` (known dev vs
    selection-half novel), ``novel/threshold_{score}`` (1st percentile of known dev), at that threshold
    ``novel/flagged_novel_{score}`` (share of evaluation-half novel domains flagged) and
    ``novel/flagged_known_test_{score}`` (share of known test domains flagged), then the same for the
    chosen score without suffix, ``novel/chosen_score``, and the families and domain counts of each half.
    """
    half = selection_half(novel_families, seed)
    metrics: dict = {}
    for name in SCORES:
        dev, test, novel = score(dev_logits, name), score(test_logits, name), score(novel_logits, name)
        cut = threshold(dev)
        metrics[f"novel/auroc_{name}"] = auroc(test, novel[~half])
        metrics[f"novel/dev_auroc_{name}"] = auroc(dev, novel[half])
        metrics[f"novel/threshold_{name}"] = cut
        metrics[f"novel/flagged_novel_{name}"] = float(np.mean(novel[~half] < cut)) if (~half).any() else float("nan")
        metrics[f"novel/flagged_known_test_{name}"] = float(np.mean(test < cut))
    dev_aurocs = [metrics[f"novel/dev_auroc_{name}"] for name in SCORES]
    chosen = SCORES[int(np.nanargmax(dev_aurocs))] if not np.all(np.isnan(dev_aurocs)) else DEFAULT_SCORE
    families = np.asarray(novel_families, dtype=object)
    metrics.update({
        "novel/chosen_score": chosen, "novel/auroc": metrics[f"novel/auroc_{chosen}"],
        "novel/threshold": metrics[f"novel/threshold_{chosen}"],
        "novel/flagged_novel": metrics[f"novel/flagged_novel_{chosen}"],
        "novel/flagged_known_test": metrics[f"novel/flagged_known_test_{chosen}"],
        "novel/selection_families": sorted(set(families[half].tolist())),
        "novel/evaluation_families": sorted(set(families[~half].tolist())),
        "novel/selection_domains": int(half.sum()), "novel/evaluation_domains": int((~half).sum()),
        "novel/known_test_domains": int(len(test_logits)), "novel/known_dev_domains": int(len(dev_logits)),
    })
    return metrics
