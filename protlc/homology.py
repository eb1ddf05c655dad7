"""Homology search against labelled reference domains (phmmer, through the optional ``pyhmmer`` package),
and its fusion with the network's prediction.

A learned classifier carries a family to members it has seen something like; a sequence search finds a
significant local alignment to one labelled domain even when the rest of the query is unlike anything in
training. The fusion (docs/method.md §5, homology fusion) takes the family of the best phmmer hit when its
E-value is at most a cutoff, and the network's prediction otherwise (no hit, or only weak ones): the
network answers where the search is silent or unsure. The cutoff is chosen on a dev split, never test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from protlc.errors import ConfigError

INSTALL_HINT = "install the 'hmmer' extra: pip install 'protlc[hmmer]' (the pyhmmer wheel bundles HMMER)"
DEFAULT_EVALUE = 1e-3
DEFAULT_PER_FAMILY = 100


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
    """

    label: np.ndarray
    evalue: np.ndarray
    bitscore: np.ndarray


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
        self.labels = np.asarray(labels, dtype=np.int64)
        self._database = _digital(_pyhmmer(), sequences)

    def __len__(self) -> int:
        return len(self.labels)

    def search(self, queries: Sequence[str], threads: int = 1) -> Hits:
        """phmmer of every query against the reference (HMMER's default thresholds; E-values for the
        reference's size)."""
        pyhmmer = _pyhmmer()
        n = len(queries)
        label, evalue, bitscore = np.full(n, -1, np.int64), np.full(n, np.inf), np.zeros(n)
        if n == 0:
            return Hits(label, evalue, bitscore)
        for i, top in enumerate(pyhmmer.hmmer.phmmer(_digital(pyhmmer, queries), self._database, cpus=threads)):
            best = next((h for h in top if h.reported), None)
            if best is not None:
                label[i] = self.labels[int(_name(best))]
                evalue[i], bitscore[i] = best.evalue, best.score
        return Hits(label, evalue, bitscore)


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
