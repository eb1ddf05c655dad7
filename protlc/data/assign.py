"""Train/dev/test assignment for ``prepare``: kept from the input (ProtCNN shards), the per-family random
split (:mod:`protlc.data.splits`) or whole MMseqs2 clusters (:mod:`protlc.data.clusters`), and the
one-line error for a split that would be empty."""

from __future__ import annotations

import math

import numpy as np

from protlc import columns as col
from protlc.data import clusters, splits
from protlc.errors import ConfigError, InputError

SPLIT_STREAM, IDENTITY_STREAM = 1, 4  # default_rng([split_seed, stream]); see protlc.data.prepare


def min_size_for_all_splits(fractions: tuple[float, float, float]) -> int:
    """Smallest family that gets members in train, dev and test under the rule of :mod:`splits`."""
    n = max(1, math.ceil(0.5 / min(fractions[1:])) - 1)  # round half up reaches 1 at n * f >= 0.5
    while not (splits.family_split_sizes(np.array([n]), fractions)[0] > 0).all():
        n += 1
    return n


def assign_splits(given: np.ndarray, labels: np.ndarray, options, split_seed: int, inputs,
                   sequences=None, vocabulary=None) -> tuple[np.ndarray, dict]:
    """Split codes and the manifest's ``split`` entry; ``sequences`` (a callable giving the kept rows'
    sequences) and ``vocabulary`` are used by the clustered split only."""
    names = ", ".join(str(p) for p in inputs)
    if (given >= 0).all():
        if options.split is not None:
            raise ConfigError(f"{names}: the input already fixes train/dev/test; drop --split")
        if options.split_method != "random":
            raise ConfigError(f"{names}: the input already fixes train/dev/test; drop --split-method {options.split_method}")
        codes, info = given, {"policy": "given", "fractions": None, "seed": None}
    elif (given < 0).all():
        fractions = splits.parse_fractions(options.split)
        if options.split_method == "clustered":
            codes, extra = clusters.clustered_assignment(
                sequences(), labels, vocabulary, fractions, identity=options.cluster_identity,
                coverage=options.cluster_coverage, linkage=options.cluster_linkage, threads=options.cluster_threads,
                sample=options.identity_sample, split_rng=np.random.default_rng([split_seed, SPLIT_STREAM]),
                sample_rng=np.random.default_rng([split_seed, IDENTITY_STREAM]))
            info = {"policy": "clustered", "fractions": list(fractions), "seed": split_seed, **extra}
        else:
            codes = splits.stratified_split(labels, fractions, np.random.default_rng([split_seed, SPLIT_STREAM]))
            info = {"policy": "stratified", "fractions": list(fractions), "seed": split_seed}
    else:
        raise ConfigError(f"{names}: cannot mix inputs with fixed splits (protcnn-csv) and inputs without")
    for code, split in enumerate(col.SPLITS):
        if not (codes == code).any():
            hint = ""
            if info["policy"] == "stratified":
                largest = int(np.bincount(labels).max())
                hint = (f": each family goes to train only unless it has at least "
                        f"{min_size_for_all_splits(info['fractions'])} members, and the largest has {largest}; "
                        f"give more sequences per family or larger dev/test fractions with --split")
            elif info["policy"] == "clustered":
                hint = (f": no cluster of {info['clustering']['clusters']} fits a family's {split} quota "
                        f"(largest cluster {info['clustering']['largest_cluster']}); give more sequences per family, "
                        f"larger dev/test fractions with --split, or a higher --cluster-identity")
            raise InputError(f"{names}: the {split} split would be empty{hint}")
    return codes, info
