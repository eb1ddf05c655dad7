"""Homology fusion: phmmer against the training domains decides where it finds a significant hit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("pyhmmer", reason="the 'hmmer' extra (pyhmmer) runs phmmer")

from protlc import columns as col  # noqa: E402
from protlc.data.prepare import PrepareOptions, prepare_dataset  # noqa: E402
from protlc.data.store import read_labels, read_split  # noqa: E402
from protlc.errors import ConfigError  # noqa: E402
from protlc.homology import Hits, Reference, choose_cutoff, fuse, reference_rows  # noqa: E402
from protlc.predict import predict  # noqa: E402


@pytest.fixture(scope="module")
def clean_six(tmp_path_factory, embedded_dir):
    """6 real Pfam families of the embedded sample, clean labels, random split; and an untrained tiny
    classifier checkpoint with the dataset's families."""
    tmp = tmp_path_factory.mktemp("homology")
    df = pd.read_csv(embedded_dir / "exthomfam_16fam.tsv", sep="\t")
    df[df[col.FAMILY_ID].isin(sorted(df[col.FAMILY_ID].unique())[:6])].to_csv(tmp / "six.tsv", sep="\t", index=False)
    prepare_dataset([tmp / "six.tsv"], tmp / "ds", PrepareOptions(seed=1), progress=False)
    return tmp / "ds"


@pytest.fixture(scope="module")
def untrained(clean_six, tmp_path_factory, classifier_checkpoint):
    path = tmp_path_factory.mktemp("ckpt") / "untrained.ckpt"
    ckpt = classifier_checkpoint(path, num_classes=6)
    ckpt["hyper_parameters"]["labels"] = read_labels(clean_six)
    torch.save(ckpt, path)
    return path


def test_a_significant_hit_decides_and_the_network_answers_the_rest(clean_six, untrained, tmp_path):
    test = read_split(clean_six, "test")
    test[[col.SEQUENCE_NAME, col.SEQUENCE]].to_csv(tmp_path / "q.tsv", sep="\t", index=False)
    plain = predict(untrained, tmp_path / "q.tsv", tmp_path / "plain.csv")
    fused = predict(untrained, tmp_path / "q.tsv", tmp_path / "fused.csv", homology_reference=clean_six,
                    homology_per_family=10)
    assert plain.sequences == fused.sequences == len(test)
    a, b = pd.read_csv(tmp_path / "plain.csv"), pd.read_csv(tmp_path / "fused.csv")
    truth = test[col.FAMILY_ID].to_numpy()
    network_accuracy = (a["predicted_family"].to_numpy() == truth).mean()
    fused_accuracy = (b["predicted_family"].to_numpy() == truth).mean()
    assert fused_accuracy >= 0.9 > network_accuracy + 0.3  # an untrained network against real homology
    by_search = b["source"] == "homology"
    assert by_search.mean() > 0.8
    assert (b.loc[by_search, "predicted_family"] == b.loc[by_search, "homology_family"]).all()
    assert (b.loc[by_search, "homology_evalue"] <= 1e-3).all()
    assert (b.loc[~by_search, "predicted_family"] == a.loc[~by_search, "predicted_family"]).all()
    assert not b.loc[by_search, "is_unknown"].any()
    assert (a.columns == b.columns.drop(["homology_family", "homology_evalue", "source"])).all()


def test_cutoff_zero_leaves_every_answer_to_the_network(clean_six, untrained, tmp_path):
    read_split(clean_six, "dev")[[col.SEQUENCE_NAME, col.SEQUENCE]].to_csv(tmp_path / "q.tsv", sep="\t", index=False)
    predict(untrained, tmp_path / "q.tsv", tmp_path / "plain.csv")
    predict(untrained, tmp_path / "q.tsv", tmp_path / "zero.csv", homology_reference=clean_six,
            homology_per_family=5, homology_evalue=0.0)
    a, b = pd.read_csv(tmp_path / "plain.csv"), pd.read_csv(tmp_path / "zero.csv")
    assert (b["source"] == "network").all()
    assert (a["predicted_family"] == b["predicted_family"]).all()


def test_a_reference_with_other_families_is_refused(clean_six, tmp_path, classifier_checkpoint):
    classifier_checkpoint(tmp_path / "other.ckpt", num_classes=6)  # families FAM0..FAM5
    pd.DataFrame({"sequence": ["MKV"]}).to_csv(tmp_path / "q.csv", index=False)
    with pytest.raises(ConfigError, match="families differ from the checkpoint"):
        predict(tmp_path / "other.ckpt", tmp_path / "q.csv", tmp_path / "o.csv", homology_reference=clean_six)
    assert not (tmp_path / "o.csv").exists()


def test_reference_rows_keep_a_seeded_sample_per_family():
    labels = np.repeat([0, 1, 2], [5, 50, 2])
    rows = reference_rows(labels, 4, seed=0)
    assert np.bincount(labels[rows]).tolist() == [4, 4, 2]
    assert np.array_equal(rows, reference_rows(labels, 4, seed=0))
    assert not np.array_equal(rows, reference_rows(labels, 4, seed=1))
    assert len(reference_rows(labels, None, seed=0)) == len(labels)


def test_fuse_and_the_dev_choice_of_cutoff():
    hits = Hits(label=np.array([2, -1, 1, 0]), evalue=np.array([1e-20, np.inf, 0.5, 1e-4]), bitscore=np.zeros(4))
    network = np.array([0, 1, 1, 2])
    labels, decided = fuse(network, hits, 1e-3)
    assert labels.tolist() == [2, 1, 1, 0] and decided.tolist() == [True, False, False, True]
    truth = np.array([2, 1, 1, 2])  # the first hit is right, the last wrong: 1e-10 keeps only the first
    cutoff, accuracy = choose_cutoff(network, hits, truth)
    assert cutoff == 1e-10 and accuracy[1e-10] == 1.0 and accuracy[0.0] == 0.75
    with pytest.raises(ConfigError):
        fuse(network, hits, -1.0)


def test_phmmer_finds_the_family_of_a_real_domain(clean_six):
    train = read_split(clean_six, "train")
    reference = Reference(train[col.SEQUENCE].tolist()[1:], train[col.LABEL].to_numpy()[1:])
    hits = reference.search([train[col.SEQUENCE].iloc[0], "AAAAAAAAAAAAAAAAAAAA"])
    assert hits.label[0] == train[col.LABEL].iloc[0] and hits.evalue[0] < 1e-5
    assert hits.label[1] == -1 and np.isinf(hits.evalue[1])
