"""Homology search against labelled reference domains (phmmer, through the optional ``pyhmmer`` package),
and its fusion with the network's prediction.

A learned classifier carries a family to members it has seen something like; a sequence search finds a
significant local alignment to one labelled domain even when the rest of the query is unlike anything in
training. Two fusions (docs/method.md §5, homology fusion), each with one knob chosen on a dev split,
never test:

* ``best-hit`` (:func:`fuse`): the family of the best phmmer hit when its E-value is at most a cutoff, the
  network's prediction otherwise (no hit, or only weak ones).
* ``vote`` (:func:`fuse_vote`, the default): every family named by the query's top :data:`VOTE_HITS` hits
  gets the sum of their bit scores as evidence, and the answer maximises ``evidence_c + weight * log p_c``
  over those families and the network's own top family. A family many good hits agree on wins over one
  lucky hit (robust to wrong labels in the reference), the network breaks near-ties between families, and
  where phmmer finds nothing the network answers.

The reference's labels are the dataset's observed training labels, or the network's own prediction for each
reference domain (``network``): with noisy training labels a trained network labels the training domains
better than the noise does (ProSelfLC's premise: trust the learner's knowledge once it has some), and the
hits then vote with corrected labels. ``auto`` chooses between the two on the dev split with the weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from protlc.errors import ConfigError

INSTALL_HINT = "install the 'hmmer' extra: pip install 'protlc[hmmer]' (the pyhmmer wheel bundles HMMER)"
DEFAULT_EVALUE = 1e-3
DEFAULT_PER_FAMILY = 100
VOTE_HITS = 25
FUSIONS = ("vote", "best-hit")
REFERENCE_LABELS = ("auto", "observed", "network")
WEIGHTS = (0.01, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # fuse_vote's weight candidates, network trust ascending
_LOG_FLOOR = np.log(1e-12)


def _pyhmmer():
    try:
        import pyhmmer
    except ImportError:
        raise ConfigError(f"homology search needs HMMER from the pyhmmer package: {INSTALL_HINT}") from None
    return pyhmmer


@dataclass
class Hits:
    """Best phmmer hit of each query.

    Attributes:
        label: ``(N,)`` int64, the reference label of the best reported hit, -1 when there is none.
        evalue: ``(N,)`` float64, its E-value (``inf`` when there is no hit).
        bitscore: ``(N,)`` float64, its bit score (0 when there is no hit).
        top_label, top_evalue, top_bits: ``(N, K)`` the same for the K best reported hits, best first
            (padded with -1, ``inf`` and 0); None when only the best hit was kept.
        top_row: ``(N, K)`` the reference row of each of them (-1: none); None when not known.
    """

    label: np.ndarray
    evalue: np.ndarray
    bitscore: np.ndarray
    top_label: np.ndarray | None = None
    top_evalue: np.ndarray | None = None
    top_bits: np.ndarray | None = None
    top_row: np.ndarray | None = None

    def relabelled(self, reference_labels: np.ndarray) -> Hits:
        """The same hits with each reference row labelled by ``reference_labels`` ``(M,)`` instead.

        Raises:
            ConfigError: the hits do not know their reference rows.
        """
        if self.top_row is None:
            raise ConfigError("relabelling hits needs their reference rows (Reference.search keeps them)")
        labels = np.where(self.top_row >= 0, np.asarray(reference_labels, np.int64)[np.maximum(self.top_row, 0)], -1)
        return Hits(labels[:, 0].copy(), self.evalue, self.bitscore, labels, self.top_evalue, self.top_bits,
                    self.top_row)


def reference_rows(labels: np.ndarray, per_family: int | None, seed: int) -> np.ndarray:
    """Sorted row indices keeping at most ``per_family`` rows of each label (a seeded sample; None: all)."""
    labels = np.asarray(labels)
    if per_family is None:
        return np.arange(len(labels))
    if per_family < 1:
        raise ConfigError(f"homology reference: at most N domains per family needs N >= 1, got {per_family}")
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_family] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


class Reference:
    """Labelled reference domains, digitised once for repeated searches.

    Args:
        sequences: validated protein sequences (the alphabet of :mod:`protlc.alphabet`).
        labels: ``(M,)`` label index of each.

    Raises:
        ConfigError: pyhmmer is missing, or the reference is empty.
    """

    def __init__(self, sequences: Sequence[str], labels: Sequence[int]):
        if len(sequences) == 0:
            raise ConfigError("homology reference: no reference domains")
        self.sequences = list(sequences)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._database = _digital(_pyhmmer(), sequences)

    def __len__(self) -> int:
        return len(self.labels)

    def search(self, queries: Sequence[str], threads: int = 1, keep: int = VOTE_HITS) -> Hits:
        """phmmer of every query against the reference (HMMER's default thresholds; E-values for the
        reference's size), keeping the ``keep`` (>= 1) best reported hits of each."""
        if keep < 1:
            raise ConfigError(f"homology search: keep at least 1 hit per query, got {keep}")
        pyhmmer = _pyhmmer()
        n = len(queries)
        top_row, top_evalue, top_bits = np.full((n, keep), -1, np.int64), np.full((n, keep), np.inf), np.zeros((n, keep))
        if n:
            for i, top in enumerate(pyhmmer.hmmer.phmmer(_digital(pyhmmer, queries), self._database, cpus=threads)):
                reported = sorted((h for h in top if h.reported), key=lambda h: (h.evalue, -h.score))[:keep]
                for j, hit in enumerate(reported):
                    top_row[i, j] = int(_name(hit))
                    top_evalue[i, j], top_bits[i, j] = hit.evalue, hit.score
        return Hits(np.zeros(n, np.int64), top_evalue[:, 0].copy(), top_bits[:, 0].copy(), None, top_evalue, top_bits,
                    top_row).relabelled(self.labels)


def _name(hit) -> str:
    name = hit.name
    return name.decode() if isinstance(name, bytes) else name


def _digital(pyhmmer, sequences: Sequence[str]):
    """A digital block of ``sequences`` named by their row index. ``*`` never reaches here (not a domain
    letter); ``J``, ``U`` and ``O`` are in Easel's amino alphabet."""
    alphabet = pyhmmer.easel.Alphabet.amino()
    return pyhmmer.easel.DigitalSequenceBlock(alphabet, [
        pyhmmer.easel.TextSequence(name=str(i).encode(), sequence=s).digitize(alphabet)
        for i, s in enumerate(sequences)])


def fuse(network_label: np.ndarray, hits: Hits, evalue_cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and whether each came from the search.

    Args:
        network_label: ``(N,)`` the network's predicted label.
        hits: the best hit of each query.
        evalue_cutoff: a hit at or below this E-value decides; 0 leaves every answer to the network.

    Returns:
        ``(labels, from_homology)``, ``(N,)`` int64 and bool.
    """
    if not evalue_cutoff >= 0:
        raise ConfigError(f"--homology-evalue must be >= 0, got {evalue_cutoff}")
    decided = (hits.label >= 0) & (hits.evalue <= evalue_cutoff)
    return np.where(decided, hits.label, np.asarray(network_label, dtype=np.int64)), decided


def choose_cutoff(network_label: np.ndarray, hits: Hits, truth: np.ndarray,
                  candidates: Sequence[float] = (0.0, 1e-30, 1e-10, 1e-5, 1e-3, 1e-1, 10.0)) -> tuple[float, dict]:
    """The candidate E-value cutoff with the best accuracy on a dev split (ties: the smaller cutoff, i.e.
    more trust in the network), and the accuracy of each."""
    accuracy = {c: float((fuse(network_label, hits, c)[0] == truth).mean()) for c in candidates}
    best = max(accuracy.values())
    return min(c for c, a in accuracy.items() if a == best), accuracy


def family_evidence(hits: Hits, evalue_cutoff: float) -> np.ndarray:
    """The evidence of each top hit's family for its query.

    Returns:
        ``(N, K)``: ``evidence[i, j]`` is the sum of the (non-negative) bit scores of query i's top hits at or
        below ``evalue_cutoff`` labelled ``hits.top_label[i, j]``, 0 where hit j is missing or above the cutoff.
    """
    if hits.top_label is None:
        raise ConfigError("the vote fusion needs the top hits of every query (Reference.search keeps them)")
    counted = (hits.top_label >= 0) & (hits.top_evalue <= evalue_cutoff)
    bits = np.where(counted, np.maximum(hits.top_bits, 0.0), 0.0)
    same = hits.top_label[:, :, None] == hits.top_label[:, None, :]
    return np.where(counted, (same * bits[:, None, :]).sum(axis=2), 0.0)


def fuse_vote(log_probs: np.ndarray, hits: Hits, weight: float,
              evalue_cutoff: float = float("inf")) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels by homology evidence plus weighted network log-probability (module docstring).

    Args:
        log_probs: ``(N, C)`` the network's log-probabilities (floored at log 1e-12).
        hits: the top hits of each query (:meth:`Reference.search`).
        weight: > 0; the network's weight in bits per nat. Small: the hits decide and the network answers
            only where there are none; large: the network decides unless it is unsure.
        evalue_cutoff: hits above this E-value are no evidence.

    Returns:
        ``(labels, supported)``: ``(N,)`` int64, and bool: whether the answer has hit evidence.

    Raises:
        ConfigError: weight not > 0, or hits without their top hits.
    """
    if not weight > 0:
        raise ConfigError(f"--homology-weight must be > 0, got {weight}")
    log_probs = np.maximum(np.asarray(log_probs, dtype=np.float64), _LOG_FLOOR)
    families, evidence = hits.top_label, family_evidence(hits, evalue_cutoff)
    rows = np.arange(len(log_probs))
    network = log_probs.argmax(axis=1)
    candidate = np.where(evidence > 0, evidence + weight * log_probs[rows[:, None], np.maximum(families, 0)], -np.inf)
    network_evidence = np.where(families == network[:, None], evidence, 0.0).max(axis=1, initial=0.0)
    network_score = network_evidence + weight * log_probs[rows, network]
    best = candidate.argmax(axis=1)
    by_hits = candidate[rows, best] > network_score
    labels = np.where(by_hits, families[rows, best], network)
    supported = by_hits | (network_evidence > 0)
    return labels.astype(np.int64), supported


def choose_weight(log_probs: np.ndarray, hits: Hits, truth: np.ndarray, evalue_cutoff: float = float("inf"),
                  candidates: Sequence[float] = WEIGHTS) -> tuple[float, dict]:
    """The candidate weight of :func:`fuse_vote` with the best accuracy on a dev split (ties: the larger
    weight, i.e. more trust in the network), and the accuracy of each."""
    accuracy = {w: float((fuse_vote(log_probs, hits, w, evalue_cutoff)[0] == truth).mean()) for w in candidates}
    best = max(accuracy.values())
    return max(w for w, a in accuracy.items() if a == best), accuracy


@dataclass
class HomologyFusion:
    """How phmmer hits and the network's probabilities make one answer.

    Attributes:
        method: ``vote`` (:func:`fuse_vote`) or ``best-hit`` (:func:`fuse`).
        evalue: best-hit: the cutoff at which a hit decides; vote: hits above it are no evidence.
        weight: vote: the network's weight (see :func:`fuse_vote`); None until chosen on dev.
        labels: the reference's labels: ``observed`` (the dataset's), ``network`` (the network's prediction
            for each reference domain) or ``auto`` until chosen on dev (:func:`choose_fusion`).
    """

    method: str
    evalue: float
    weight: float | None = None
    labels: str = "observed"

    @property
    def needs_dev(self) -> bool:
        """Whether a setting is still to be chosen on a dev split."""
        return self.labels == "auto" or (self.method == "vote" and self.weight is None)

    def apply(self, probs: np.ndarray, hits: Hits) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, from_homology)`` for ``(N, C)`` probabilities."""
        if self.method == "vote":
            return fuse_vote(np.log(np.maximum(probs, 1e-12)), hits, self.weight, self.evalue)
        return fuse(probs.argmax(axis=1), hits, self.evalue)


def homology_fusion_rule(method: str, evalue: float | None, weight: float | None,
                         labels: str = "auto") -> HomologyFusion:
    """The checked fusion settings (module docstring).

    Raises:
        ConfigError: an unknown method or label source, a negative E-value, a weight that is not > 0.
    """
    if method not in FUSIONS:
        raise ConfigError(f"--homology-fusion {method!r}: choose one of {', '.join(FUSIONS)}")
    if labels not in REFERENCE_LABELS:
        raise ConfigError(f"--homology-labels {labels!r}: choose one of {', '.join(REFERENCE_LABELS)}")
    if evalue is None:
        evalue = DEFAULT_EVALUE if method == "best-hit" else float("inf")
    if not evalue >= 0:
        raise ConfigError(f"--homology-evalue must be >= 0, got {evalue}")
    if weight is not None and not weight > 0:
        raise ConfigError(f"--homology-weight must be > 0, got {weight}")
    return HomologyFusion(method, float(evalue), weight, labels)


def choose_fusion(fusion: HomologyFusion, probs: np.ndarray, hits: Hits, truth: np.ndarray,
                  network_labels: np.ndarray | None = None) -> tuple[HomologyFusion, dict]:
    """Settle the settings ``fusion`` leaves open by accuracy on a dev split.

    The reference labels are chosen first, where they matter most: for a vote whose weight is open, at the
    smallest candidate weight (the hits decide and the network only answers queries without hits), else
    with the fusion's own settings; ties keep the observed labels. Then the weight, for the chosen labels
    (:func:`choose_weight`). Choosing both jointly would compare the two label sources where the network
    overrules most hits, which says little about the labels and, on a few hundred dev domains, turns on
    single queries.

    Args:
        fusion: its ``labels`` may be ``auto`` and a vote's ``weight`` None.
        probs: ``(N, C)`` the network's probabilities for the dev domains; truth: ``(N,)`` their labels.
        hits: the dev domains' hits labelled with the observed reference labels.
        network_labels: ``(M,)`` the network's label for each reference domain (needed unless ``labels`` is
            ``observed``).

    Returns:
        The settled fusion and the dev accuracy of each candidate tried, keyed by ``(labels, weight)``
        (weight None for best-hit).

    Raises:
        ConfigError: network labels are needed and missing.
    """
    sources = ("observed", "network") if fusion.labels == "auto" else (fusion.labels,)
    if "network" in sources and network_labels is None:
        raise ConfigError("reference labels 'network' need the network's label for every reference domain")
    source_hits = {s: hits if s == "observed" else hits.relabelled(network_labels) for s in sources}
    log_probs = np.log(np.maximum(probs, 1e-12))
    open_weight = fusion.method == "vote" and fusion.weight is None
    probe = WEIGHTS[0] if open_weight else fusion.weight
    accuracy = {}
    for source in sources:
        candidate = HomologyFusion(fusion.method, fusion.evalue, probe, source)
        accuracy[(source, probe)] = float((candidate.apply(probs, source_hits[source])[0] == truth).mean())
    labels = "network" if accuracy.get(("network", probe), -1.0) > accuracy.get(("observed", probe), -1.0) else sources[0]
    weight = fusion.weight
    if open_weight:
        weight, tried = choose_weight(log_probs, source_hits[labels], truth, fusion.evalue)
        accuracy.update({(labels, w): a for w, a in tried.items()})
    return HomologyFusion(fusion.method, fusion.evalue, weight, labels), accuracy
