"""Family similarity from k-mer profiles: the confusable family of every family (docs/method.md §3).

A family's profile is the count vector of the overlapping k-mers (k = 3) of its training domains, summed
over the domains; letters are the 26 of :mod:`protlc.alphabet` (20 standard + ``XBZJUO``), so a profile
has 26**3 = 17,576 dimensions (a sparse matrix, built with numpy and scipy.sparse). Profiles become
frequencies f_c (counts / total), which are *centred*: x_c = f_c - m with m the mean of f over all
families. Two families' similarity is the cosine of their centred profiles, computed from the sparse
f without forming the dense x (x_a.x_b = f_a.f_b - f_a.m - f_b.m + m.m). Centring removes the amino-acid
composition every family shares: with raw counts a few compositionally average families are the nearest
neighbour of dozens of others (on the full extHomFam one family receives 46 of 107 families, against 13
after centring), while centred profiles pair families of one Pfam clan (mmp/svmp, planttoxin/scorptoxin,
laminin_G/ltn). A family's confusable family is the *other* family of highest similarity (ties: the
lower label, i.e. the family id first in sorted order). Everything is a pure function of the sequences
and labels: no random numbers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from protlc.alphabet import EXTRA, STANDARD

KMER = 3
LETTERS = STANDARD + EXTRA
_CODE = np.full(256, -1, dtype=np.int64)
_CODE[np.frombuffer(LETTERS.encode("ascii"), dtype=np.uint8)] = np.arange(len(LETTERS))
_CHUNK = 20_000  # sequences per counting pass (bounds the temporary arrays)
_BLOCK = 1024  # families per similarity block (bounds the dense block to 1024 x C)


def _kmer_counts(sequences: Sequence[str], labels: np.ndarray, num_classes: int, k: int) -> sp.csr_matrix:
    """``(C, 26**k)`` k-mer counts of one chunk of sequences, summed per label."""
    joined = np.frombuffer("\n".join(sequences).encode("ascii", "replace"), dtype=np.uint8)
    codes = _CODE[joined]  # the separator (and anything unexpected) is -1
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    owner = np.repeat(np.asarray(labels, dtype=np.int64), lengths + 1)[: codes.size]
    n = codes.size - k + 1
    if n <= 0:
        return sp.csr_matrix((num_classes, len(LETTERS) ** k), dtype=np.float64)
    valid = np.ones(n, dtype=bool)
    index = np.zeros(n, dtype=np.int64)
    for j in range(k):
        window = codes[j: j + n]
        valid &= window >= 0
        index = index * len(LETTERS) + np.maximum(window, 0)
    counts = sp.coo_matrix((np.ones(int(valid.sum())), (owner[:n][valid], index[valid])),
                           shape=(num_classes, len(LETTERS) ** k))
    return counts.tocsr()  # duplicates are summed


def kmer_profiles(sequences: Sequence[str], labels: np.ndarray, num_classes: int, k: int = KMER) -> sp.csr_matrix:
    """Summed k-mer count vectors per family: float64 CSR ``(num_classes, 26**k)``."""
    labels = np.asarray(labels)
    total = sp.csr_matrix((num_classes, len(LETTERS) ** k), dtype=np.float64)
    for start in range(0, len(sequences), _CHUNK):
        total = total + _kmer_counts(sequences[start: start + _CHUNK], labels[start: start + _CHUNK], num_classes, k)
    return total


def confusable_map(sequences: Sequence[str], labels: np.ndarray, num_classes: int,
                   k: int = KMER) -> tuple[np.ndarray, np.ndarray]:
    """The most similar other family of every family (cosine of centred k-mer frequency profiles).

    Args:
        sequences: the training domains; labels: their (clean) labels in ``[0, num_classes)``.
    Returns:
        ``(targets, similarity)``: int32 ``(C,)`` with ``targets[c] != c``, and the float64 cosine
        similarity ``(C,)`` of each family to its target (in [-1, 1]).
    """
    if num_classes < 2:
        raise ValueError("a confusable family needs at least 2 families")
    counts = kmer_profiles(sequences, labels, num_classes, k)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    freq = (sp.diags(np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)) @ counts).tocsr()
    mean = np.asarray(freq.mean(axis=0)).ravel()
    g = freq @ mean  # f_c . m
    mm = float(mean @ mean)
    norms = np.sqrt(np.maximum(np.asarray(freq.multiply(freq).sum(axis=1)).ravel() - 2 * g + mm, 0.0))
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    freq_t = freq.T.tocsc()
    targets = np.empty(num_classes, dtype=np.int32)
    similarity = np.empty(num_classes, dtype=np.float64)
    for start in range(0, num_classes, _BLOCK):
        stop = min(start + _BLOCK, num_classes)
        dots = (freq[start:stop] @ freq_t).toarray() - g[start:stop, None] - g[None, :] + mm
        block = dots * inverse[start:stop, None] * inverse[None, :]
        rows = np.arange(stop - start)
        block[rows, rows + start] = -np.inf  # never the family itself
        best = block.argmax(axis=1)  # first maximum: the lower label on ties
        targets[start:stop] = best
        similarity[start:stop] = block[rows, best]
    return targets, similarity


def manifest_entry(vocabulary: list[str], targets: np.ndarray, sims: np.ndarray) -> dict:
    """The manifest's record of a confusable map: ``{family: {"family": its confusable family, "similarity": cosine}}``."""
    return {"similarity": f"cosine of centred {KMER}-mer frequency profiles of the training domains",
            "map": {vocabulary[c]: {"family": vocabulary[int(t)], "similarity": round(float(v), 6)}
                    for c, (t, v) in enumerate(zip(targets, sims))}}
