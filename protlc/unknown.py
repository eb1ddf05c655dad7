"""Unknown-family scores from a classifier's logits, their AUROC against novel families, and the
novel-family evaluation that ``protlc train`` records (docs/method.md §4, "Unknown families").

Scores, all "higher = more like a known family", from logits z over C classes and p = softmax(z):

* ``max_p``: max_j p_j (the default; what ``predict`` has always used);
* ``entropy``: 1 - H(p)/log C, the normalised-entropy confidence;
* ``energy``: logsumexp_j z_j, the negative free energy at temperature 1;
* ``nearest``: the cosine similarity of the domain's *layer embedding* (every encoder layer's max-pooled
  features, each unit-normalised, concatenated: :func:`layer_embedding`) to its most similar *reference*
  domain (:func:`nearest_similarity`; the reference: at most :data:`NEAREST_PER_FAMILY` training domains per
  family, a seeded sample, :func:`nearest_reference_rows`);
* ``nearest_kmer``: the same search where the similarity to a reference domain is the mean of that cosine
  and the cosine of the two domains' k-mer count profiles (:func:`kmer_profiles`, k = :data:`KMER` = 4;
  older runs used 3-mers and their calibration.json says nothing of k, so ``predict``
  keeps 3 for them, :data:`LEGACY_KMER`): a reference domain must be close in both, which a domain of a
  family never trained on rarely is.

The two nearest scores are not functions of the logits: they need the embeddings and the reference
(:class:`NearestReference`), so they are scored only where those are at hand (``protlc train`` with novel
families, ``protlc predict`` with the run's dataset). They ignore the labels, so label noise cannot bend
them, and they ask "is there a training domain like this one", which an under-trained or over-confident
classifier's probabilities answer poorly. Measured on extHomFam cells (README "Unknown families"): AUROC
0.46-0.89 (mean 0.68) for max p, 0.79-0.92 for the last layer's embedding alone, 0.90 (mean) for ``nearest``
and 0.966 (0.947-0.981) for ``nearest_kmer`` with 3-mers; 4-mers were ahead in every cell tried, on dev
(against the selection half of the novel families) as on test.

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

Homology (docs/method.md §4): ``homology_score(E) = -log10 E`` of a domain's best phmmer hit against
labelled reference domains (:mod:`protlc.homology`); no hit scores :data:`NO_HIT_SCORE`, below every
reported hit. HMMER's own rule "no hit at E <= cutoff = unknown" is a threshold on it. The *fused*
score is ``w * F_h(h) + (1 - w) * F_n(s)``: F the mid-rank empirical CDF of the known dev domains' homology
score h and network score s, w one of :data:`FUSION_WEIGHTS` (1: homology alone; ``1 - 1e-6``: homology,
the network only breaking its ties, e.g. among no-hit domains; 0: the network alone), chosen like the
network's score on the selection half only (:func:`homology_metrics`).
"""

from __future__ import annotations

import math

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scipy is imported where it is used: the CLI imports this module for its score names
    from scipy import sparse

from protlc.homology import reference_rows

SCORES = ("max_p", "entropy", "energy")  # scores of the logits
NEAREST = "nearest"  # the layer-embedding score
NEAREST_KMER = "nearest_kmer"  # the layer embedding and the k-mer profile together
REFERENCE_SCORES = (NEAREST, NEAREST_KMER)  # scores against training domains
ALL_SCORES = (*SCORES, *REFERENCE_SCORES)
HOMOLOGY = "homology"  # predict only: HMMER's rule, no phmmer hit at E <= cutoff = unknown (needs a reference)
PREDICT_SCORES = (*ALL_SCORES, HOMOLOGY)
KMER = 4  # k of nearest_kmer's profiles (recorded in calibration.json as "kmer")
LEGACY_KMER = 3  # the k of runs whose calibration.json does not record one
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # k-mers over other letters (X, B, ...) are left out of the profiles
DEFAULT_SCORE = "max_p"
NEAREST_PER_FAMILY = 100  # reference domains per family of the nearest score
NEAREST_SEED = 0
UNKNOWN_QUANTILE = 0.01
UNKNOWN_RATES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)  # dev flag rates calibration.json keeps a threshold for
SELECTION_STREAM = 7
TARGET_KNOWN_RATE = 0.05  # the known-domain flag rate at which novel-family detection is reported


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
        from scipy.special import logsumexp

        return logsumexp(np.asarray(logits, dtype=np.float64), axis=1)
    probs = softmax(logits)
    if name == "max_p":
        return probs.max(axis=1)
    if name == "entropy":
        logp = np.log(np.where(probs > 0, probs, 1.0))
        return 1.0 - (-(probs * logp).sum(axis=1)) / math.log(probs.shape[1])
    raise ValueError(f"unknown score {name!r}; choose one of {', '.join(SCORES)}")


def nearest_reference_rows(labels: np.ndarray, per_family: int = NEAREST_PER_FAMILY) -> np.ndarray:
    """Sorted rows of the training split that form the nearest score's reference: at most ``per_family``
    of each (observed) label, the seeded sample of a homology reference (:func:`protlc.homology.reference_rows`)."""
    return reference_rows(labels, per_family, seed=NEAREST_SEED)


def layer_embedding(pooled_layers: np.ndarray) -> np.ndarray:
    """``(N, layers, F)`` max-pooled features (:meth:`protlc.model.ProtCNNEncoder.pooled_layers`) -> float32
    ``(N, layers * F)`` unit rows: each layer unit-normalised (so each weighs the same), concatenated, over
    sqrt(layers)."""
    x = np.asarray(pooled_layers, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)
    return x.reshape(len(x), -1) / np.float32(math.sqrt(x.shape[1]))


def kmer_profiles(sequences: list[str], k: int = KMER) -> sparse.csr_matrix:
    """Unit-norm k-mer count profiles, float32 CSR ``(N, 20**k)`` (k-mers over the 20 amino acids; a
    sequence without one has a zero row, similarity 0 to everything)."""
    from scipy import sparse

    code = np.full(256, -1, dtype=np.int64)
    code[np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)] = np.arange(len(AMINO_ACIDS))
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    letters = code[np.frombuffer("".join(sequences).upper().encode("ascii", "replace"), dtype=np.uint8)]
    windows = max(len(letters) - k + 1, 0)
    owner = np.repeat(np.arange(len(sequences)), lengths)
    valid = owner[:windows] == owner[k - 1:k - 1 + windows]
    index = np.zeros(windows, dtype=np.int64)
    for j in range(k):
        part = letters[j:j + windows]
        valid &= part >= 0
        index = index * len(AMINO_ACIDS) + np.maximum(part, 0)
    counts = sparse.csr_matrix((np.ones(int(valid.sum()), dtype=np.float32), (owner[:windows][valid], index[valid])),
                               shape=(len(sequences), len(AMINO_ACIDS) ** k))
    counts.sum_duplicates()
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    return sparse.diags(1.0 / np.maximum(norms, 1e-12)).astype(np.float32) @ counts


def nearest_similarity(embeddings: np.ndarray, reference: np.ndarray, block: int = 2**26,
                       profiles: tuple[sparse.csr_matrix, sparse.csr_matrix] | None = None) -> np.ndarray:
    """Cosine similarity of each row of ``embeddings`` ``(N, F)`` to its most similar row of ``reference``
    ``(M, F)``: float64 ``(N,)`` in [-1, 1], higher = more known (a zero vector has similarity 0). With
    ``profiles`` (unit-norm k-mer profiles of the queries and the reference, :func:`kmer_profiles`), the
    similarity to a reference row is the mean of the two cosines. Queries go in batches of at most
    ``block / M`` rows (a ``block``-element similarity matrix: 256 MB by default; a quarter of that with
    profiles).

    Raises:
        ValueError: an empty reference, different widths, or profiles of other sizes.
    """
    plain, combined = nearest_similarities(embeddings, reference, block, profiles)
    return plain if combined is None else combined


def nearest_similarities(embeddings: np.ndarray, reference: np.ndarray, block: int = 2**26,
                         profiles: tuple[sparse.csr_matrix, sparse.csr_matrix] | None = None,
                         ) -> tuple[np.ndarray, np.ndarray | None]:
    """Both maxima of :func:`nearest_similarity` from one pass over the reference: ``(N,)`` of the embedding
    cosine alone, and ``(N,)`` of the mean with the k-mer cosine (None without ``profiles``)."""
    query, ref = (np.asarray(a, dtype=np.float32) for a in (embeddings, reference))
    if ref.ndim != 2 or len(ref) == 0 or query.ndim != 2 or query.shape[1] != ref.shape[1]:
        raise ValueError(f"nearest score: need (N, F) embeddings and a non-empty (M, F) reference, got "
                         f"{query.shape} and {ref.shape}")
    if profiles is not None and (profiles[0].shape[0] != len(query) or profiles[1].shape[0] != len(ref)):
        raise ValueError(f"nearest score: {profiles[0].shape[0]} and {profiles[1].shape[0]} k-mer profiles for "
                         f"{len(query)} queries and {len(ref)} reference rows")
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    plain = np.empty(len(query), dtype=np.float64)
    combined = None if profiles is None else np.empty(len(query), dtype=np.float64)
    batch = max(1, (block if profiles is None else block // 4) // len(ref))
    ref_profiles_t = None if profiles is None else profiles[1].T.tocsc()
    for start in range(0, len(query), batch):
        q = query[start:start + batch]
        similarity = (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)) @ ref.T
        plain[start:start + batch] = similarity.max(axis=1)
        if profiles is not None:
            similarity += (profiles[0][start:start + batch] @ ref_profiles_t).toarray()
            combined[start:start + batch] = similarity.max(axis=1) / 2
    return plain, combined


class NearestReference:
    """The training domains that the nearest scores compare with: their layer embeddings and k-mer profiles.

    Args:
        pooled_layers: ``(M, layers, F)`` of the reference domains (:meth:`ProtCNNEncoder.pooled_layers`).
        sequences: their M sequences.
        kmer: k of the profiles of ``nearest_kmer``.
    """

    def __init__(self, pooled_layers: np.ndarray, sequences: list[str], kmer: int = KMER) -> None:
        self.embeddings = layer_embedding(pooled_layers)
        self.kmer = kmer
        self.profiles = kmer_profiles(sequences, kmer)

    def scores(self, pooled_layers: np.ndarray, sequences: list[str], names=REFERENCE_SCORES) -> dict[str, np.ndarray]:
        """``{name: (N,) float64}`` for each of ``names`` (:data:`REFERENCE_SCORES`) of N query domains."""
        profiles = (kmer_profiles(sequences, self.kmer), self.profiles) if NEAREST_KMER in names else None
        plain, combined = nearest_similarities(layer_embedding(pooled_layers), self.embeddings, profiles=profiles)
        return {name: plain if name == NEAREST else combined for name in names}


def nearest_scores(pooled_of, train_sequences: list[str], train_labels: np.ndarray,
                   queries: list[list[str]], query_pooled: list[np.ndarray] | None = None,
                   ) -> dict[str, tuple[np.ndarray, ...]]:
    """The nearest scores of each list of query sequences against the training split's reference sample
    (:func:`nearest_reference_rows`): ``{name: (one (N,) array per list)}`` for :data:`REFERENCE_SCORES`.
    ``pooled_of(sequences)``: the model's ``(N, layers, F)`` pooled layer features; ``query_pooled``: the
    queries' features when the caller has them already (one array per list)."""
    sequences = [train_sequences[i] for i in nearest_reference_rows(train_labels)]
    reference = NearestReference(pooled_of(sequences), sequences)
    pooled = query_pooled if query_pooled is not None else [pooled_of(q) for q in queries]
    found = [reference.scores(features, q) for features, q in zip(pooled, queries, strict=True)]
    return {name: tuple(scores[name] for scores in found) for name in REFERENCE_SCORES}


def threshold(known_scores: np.ndarray, quantile: float = UNKNOWN_QUANTILE) -> float:
    """The score below which only ``quantile`` of the known (dev) domains fall."""
    return float(np.quantile(np.asarray(known_scores, dtype=np.float64), quantile))


def auroc(known_scores: np.ndarray, novel_scores: np.ndarray) -> float:
    """P(known > novel) + P(tie)/2 over all pairs; NaN when either side is empty."""
    known, novel = np.asarray(known_scores, dtype=np.float64), np.asarray(novel_scores, dtype=np.float64)
    if known.size == 0 or novel.size == 0:
        return float("nan")
    from scipy.stats import rankdata

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
                  novel_families: np.ndarray, seed: int,
                  reference_scores: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> dict:
    """The ``novel/...`` entries of ``final_metrics.json`` (keys in the module docstring's terms):

    ``novel/auroc_{score}`` (known test vs evaluation-half novel), ``novel/dev_auroc_{score}`` (known dev vs
    selection-half novel), ``novel/threshold_{score}`` (1st percentile of known dev), at that threshold
    ``novel/flagged_novel_{score}`` (share of evaluation-half novel domains flagged) and
    ``novel/flagged_known_test_{score}`` (share of known test domains flagged), then the same for the
    chosen score without suffix, ``novel/chosen_score``, and the families and domain counts of each half.
    ``reference_scores``: ``{name: (known dev, known test, novel)}`` of the nearest scores
    (:meth:`NearestReference.scores`); each is one more candidate (ties: the logit scores win, then the
    order of :data:`REFERENCE_SCORES`).
    """
    half = selection_half(novel_families, seed)
    values = {name: tuple(score(z, name) for z in (dev_logits, test_logits, novel_logits)) for name in SCORES}
    for name in REFERENCE_SCORES:
        if reference_scores and name in reference_scores:
            values[name] = tuple(np.asarray(v, dtype=np.float64) for v in reference_scores[name])
    metrics: dict = {}
    for name, (dev, test, novel) in values.items():
        found = score_metrics(dev, test, novel, half)
        metrics.update({f"novel/{key}_{name}": value for key, value in found.items()})
    names = list(values)
    dev_aurocs = [metrics[f"novel/dev_auroc_{name}"] for name in names]
    chosen = names[int(np.nanargmax(dev_aurocs))] if not np.all(np.isnan(dev_aurocs)) else DEFAULT_SCORE
    families = np.asarray(novel_families, dtype=object)
    metrics.update({
        "novel/chosen_score": chosen, "novel/auroc": metrics[f"novel/auroc_{chosen}"],
        "novel/threshold": metrics[f"novel/threshold_{chosen}"],
        "novel/flagged_novel": metrics[f"novel/flagged_novel_{chosen}"],
        "novel/flagged_known_test": metrics[f"novel/flagged_known_test_{chosen}"],
        "novel/flagged_novel_at_known_5pct": metrics[f"novel/flagged_novel_at_known_5pct_{chosen}"],
        "novel/selection_families": sorted(set(families[half].tolist())),
        "novel/evaluation_families": sorted(set(families[~half].tolist())),
        "novel/selection_domains": int(half.sum()), "novel/evaluation_domains": int((~half).sum()),
        "novel/known_test_domains": int(len(test_logits)), "novel/known_dev_domains": int(len(dev_logits)),
    })
    return metrics


def score_metrics(dev: np.ndarray, test: np.ndarray, novel: np.ndarray, half: np.ndarray) -> dict:
    """One score's ``auroc`` (known test vs evaluation-half novel), ``dev_auroc`` (known dev vs selection
    half), ``threshold`` (1st percentile of known dev) and at it ``flagged_novel`` (evaluation half) and
    ``flagged_known_test``, and ``flagged_novel_at_known_5pct``: the share of evaluation-half novel domains
    below the threshold that flags 5% of known test domains (:func:`flagged_at_rate`; the issue's
    operating point, measured on test, so not a rule a user can apply). ``dev``/``test``/``novel``: ``(N,)``
    scores; ``half``: ``(N_novel,)`` bool, True for the selection half."""
    cut = threshold(dev)
    return {"auroc": auroc(test, novel[~half]), "dev_auroc": auroc(dev, novel[half]), "threshold": cut,
            "flagged_novel": float(np.mean(novel[~half] < cut)) if (~half).any() else float("nan"),
            "flagged_known_test": float(np.mean(test < cut)),
            "flagged_novel_at_known_5pct": flagged_at_rate(test, novel[~half], TARGET_KNOWN_RATE)}


MIN_EVALUE = 1e-300  # an E-value that underflowed to 0 counts as this
NO_HIT_SCORE = -300.0  # no reported hit: below every hit (phmmer reports E <= 10, a score >= -1)
EVALUE_CUTOFF = 1e-3  # HMMER's rule: no hit at E <= 1e-3 = unknown
TIE_BREAK = 1 - 1e-6  # the fused score's weight at which the network only breaks homology ties
FUSION_WEIGHTS = (1.0, TIE_BREAK, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)  # ties: the first wins


def homology_score(evalue: np.ndarray) -> np.ndarray:
    """``-log10 E`` of each domain's best hit, float64 ``(N,)``, higher = more known; E = inf (no hit)
    scores :data:`NO_HIT_SCORE`, E = 0 scores 300.

    Raises:
        ValueError: a negative or NaN E-value.
    """
    e = np.asarray(evalue, dtype=np.float64)
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("E-values must be >= 0 (inf: no hit)")
    return np.where(np.isinf(e), NO_HIT_SCORE, -np.log10(np.maximum(e, MIN_EVALUE)))


def percentile(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mid-rank empirical CDF of ``reference`` ``(M,)`` at ``values`` ``(N,)``: (#ref < v + #ref <= v) / 2M,
    in [0, 1]; a value tied with many reference values sits in the middle of their block."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    values = np.asarray(values, dtype=np.float64)
    return (np.searchsorted(ref, values, "left") + np.searchsorted(ref, values, "right")) / (2.0 * ref.size)


def fused_score(homology: np.ndarray, network: np.ndarray, dev_homology: np.ndarray, dev_network: np.ndarray,
                weight: float) -> np.ndarray:
    """``weight * F_h(homology) + (1 - weight) * F_n(network)``, ``(N,)``, F the known dev domains' CDFs
    (:func:`percentile`). With ``weight = 1 - 1e-6`` the network only breaks the homology score's ties
    (dev sets under 500,000 domains: a step of F_h is at least 1 / 2M)."""
    return weight * percentile(homology, dev_homology) + (1 - weight) * percentile(network, dev_network)


def flagged_at_rate(known: np.ndarray, novel: np.ndarray, rate: float) -> float:
    """Share of ``novel`` flagged when the lowest-scoring ``rate`` of ``known`` is flagged, domains tied at
    the threshold flagged at random (the ROC curve's linear interpolation): comparing scores at one
    known-flag rate."""
    known, novel = np.sort(np.asarray(known, dtype=np.float64)), np.asarray(novel, dtype=np.float64)
    if known.size == 0 or novel.size == 0 or not 0 <= rate <= 1:
        return float("nan")
    cut = known[min(int(np.floor(rate * known.size)), known.size - 1)]
    below, tied = np.mean(known < cut), np.mean(known == cut)
    share = min(max((rate - below) / tied, 0.0), 1.0)
    return float(np.mean(novel < cut) + share * np.mean(novel == cut))


def homology_metrics(network: tuple[np.ndarray, np.ndarray, np.ndarray], evalues: tuple[np.ndarray, np.ndarray, np.ndarray],
                     novel_families: np.ndarray, seed: int, evalue_cutoff: float = EVALUE_CUTOFF) -> dict:
    """HMMER's and the fused score's unknown-family metrics next to the network's chosen score.

    Args:
        network: the network's chosen score (``novel/chosen_score`` of :func:`novel_metrics`) of the
            known dev ``(D,)``, known test ``(T,)`` and novel ``(N,)`` domains.
        evalues: best-hit E-values of the same domains (inf: no hit).
        novel_families: ``(N,)`` family of each novel domain; ``seed``: the run's (the halves).

    Returns:
        ``hmmer/...`` and ``fused/...`` as in :func:`score_metrics` (``fused/weight``: the weight chosen
        on the selection half; ``fused/dev_auroc_w{w}`` for each), ``hmmer/flagged_*_evalue`` under
        "no hit at E <= evalue_cutoff", ``{hmmer,fused}/flagged_novel_at_network_rate`` at the network's
        known-test flag rate, ``{network,fused}/flagged_novel_at_evalue_rate`` at the E-value rule's.
    """
    half = selection_half(novel_families, seed)
    homology = [homology_score(e) for e in evalues]
    metrics = {f"hmmer/{k}": v for k, v in score_metrics(*homology, half).items()}
    unknown = [np.asarray(e, dtype=np.float64) > evalue_cutoff for e in evalues]
    metrics["hmmer/flagged_known_test_evalue"] = float(np.mean(unknown[1]))
    metrics["hmmer/flagged_novel_evalue"] = float(np.mean(unknown[2][~half])) if (~half).any() else float("nan")
    fused = {}
    for w in FUSION_WEIGHTS:
        fused[w] = [fused_score(h, s, homology[0], network[0], w) for h, s in zip(homology, network)]
        metrics[f"fused/dev_auroc_w{w:g}"] = auroc(fused[w][0], fused[w][2][half])
    dev = [metrics[f"fused/dev_auroc_w{w:g}"] for w in FUSION_WEIGHTS]
    weight = FUSION_WEIGHTS[int(np.nanargmax(dev))] if not np.all(np.isnan(dev)) else 1.0
    metrics["fused/weight"] = weight
    metrics.update({f"fused/{k}": v for k, v in score_metrics(*fused[weight], half).items()})
    network_rate = float(np.mean(network[1] < threshold(network[0])))
    for name, (_, test, novel) in (("hmmer", homology), ("fused", fused[weight]), ("network", network)):
        metrics[f"{name}/flagged_novel_at_network_rate"] = flagged_at_rate(test, novel[~half], network_rate)
        metrics[f"{name}/flagged_novel_at_evalue_rate"] = flagged_at_rate(
            test, novel[~half], metrics["hmmer/flagged_known_test_evalue"])
    return metrics
