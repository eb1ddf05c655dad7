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
from protlc.homology import (  # noqa: E402
    Hits,
    HomologyFusion,
    Reference,
    choose_cutoff,
    choose_fusion,
    choose_weight,
    fuse,
    fuse_vote,
    homology_fusion_rule,
    reference_rows,
)
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
                    homology_per_family=10, homology_fusion="best-hit")
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


def test_the_vote_fusion_through_the_cli_chooses_its_weight_on_dev(clean_six, untrained, tmp_path):
    from click.testing import CliRunner

    from protlc.cli import cli

    test = read_split(clean_six, "test")
    test[[col.SEQUENCE_NAME, col.SEQUENCE]].to_csv(tmp_path / "q.tsv", sep="\t", index=False)
    predict(untrained, tmp_path / "q.tsv", tmp_path / "plain.csv")
    result = CliRunner().invoke(cli, ["predict", str(untrained), str(tmp_path / "q.tsv"), "--out", str(tmp_path / "v.csv"),
                                       "--homology-reference", str(clean_six), "--homology-per-family", "10"])
    assert result.exit_code == 0, result.output
    # an untrained network labels the reference badly, so auto keeps the observed labels
    assert "homology vote: observed reference labels, weight" in result.output
    assert "chosen on the reference's dev split" in result.output and "network W 0.01:" in result.output
    a, b = pd.read_csv(tmp_path / "plain.csv"), pd.read_csv(tmp_path / "v.csv")
    assert (b["predicted_family"].to_numpy() == test[col.FAMILY_ID].to_numpy()).mean() >= 0.9
    by_network = b["source"] == "network"
    assert (b.loc[by_network, "predicted_family"] == a.loc[by_network, "predicted_family"]).all()
    bad = CliRunner().invoke(cli, ["predict", str(untrained), str(tmp_path / "q.tsv"), "--out", str(tmp_path / "w.csv"),
                                    "--homology-reference", str(clean_six), "--homology-weight", "-1"])
    assert bad.exit_code != 0 and "--homology-weight must be > 0" in bad.output and not (tmp_path / "w.csv").exists()


def test_cutoff_zero_leaves_every_answer_to_the_network(clean_six, untrained, tmp_path):
    read_split(clean_six, "dev")[[col.SEQUENCE_NAME, col.SEQUENCE]].to_csv(tmp_path / "q.tsv", sep="\t", index=False)
    predict(untrained, tmp_path / "q.tsv", tmp_path / "plain.csv")
    predict(untrained, tmp_path / "q.tsv", tmp_path / "zero.csv", homology_reference=clean_six,
            homology_per_family=5, homology_evalue=0.0)
    a, b = pd.read_csv(tmp_path / "plain.csv"), pd.read_csv(tmp_path / "zero.csv")
    assert (b["source"] == "network").all()
    assert (a["predicted_family"] == b["predicted_family"]).all()


def test_the_homology_unknown_rule_is_hmmers_evalue_cutoff(clean_six, untrained, embedded_dir, tmp_path):
    from click.testing import CliRunner

    from protlc.cli import cli

    known = read_split(clean_six, "test")[[col.SEQUENCE_NAME, col.SEQUENCE]]
    everything = pd.read_csv(embedded_dir / "exthomfam_16fam.tsv", sep="\t")
    others = everything[~everything[col.FAMILY_ID].isin(read_split(clean_six, "train")[col.FAMILY_ID].unique())]
    novel = others.groupby(col.FAMILY_ID).head(3)[[col.SEQUENCE_NAME, col.SEQUENCE]]
    pd.concat([known, novel]).to_csv(tmp_path / "q.tsv", sep="\t", index=False)
    args = ["predict", str(untrained), str(tmp_path / "q.tsv"), "--homology-reference", str(clean_six),
            "--homology-per-family", "10", "--unknown-score", "homology"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "h.csv")])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "h.csv")
    no_hit = ~(out["homology_evalue"] <= 1e-3)  # NaN-safe: an empty E-value is no hit
    assert (out["is_unknown"] == no_hit).all()  # the cutoff alone decides, whatever the network or the vote say
    flagged_known, flagged_novel = out["is_unknown"][:len(known)].mean(), out["is_unknown"][len(known):].mean()
    assert len(novel) >= 20 and flagged_novel >= 0.9 and flagged_known <= 0.1  # real domains, 10 unseen families
    assert f"{out['is_unknown'].sum()} flagged unknown: no phmmer hit at E <= 0.001" in result.output
    strict = CliRunner().invoke(cli, [*args, "--homology-evalue", "1e-30", "--out", str(tmp_path / "s.csv")])
    assert strict.exit_code == 0, strict.output
    assert (pd.read_csv(tmp_path / "s.csv")["is_unknown"] == ~(out["homology_evalue"] <= 1e-30)).all()
    for extra, message in ((["--unknown-rate", "0.05"], "its cutoff is an E-value, --homology-evalue"),
                           (["--unknown-threshold", "0.5"], "its cutoff is an E-value, --homology-evalue")):
        bad = CliRunner().invoke(cli, [*args, *extra, "--out", str(tmp_path / "bad.csv")])
        assert bad.exit_code != 0 and message in bad.output and "Traceback" not in bad.output
    alone = CliRunner().invoke(cli, ["predict", str(untrained), str(tmp_path / "q.tsv"), "--unknown-score", "homology",
                                     "--out", str(tmp_path / "bad.csv")])
    assert alone.exit_code != 0 and "pass --homology-reference DATASET_DIR" in alone.output
    assert not (tmp_path / "bad.csv").exists()


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


def _top_hits(labels, bits, evalues=None) -> Hits:
    labels, bits = np.array(labels, dtype=np.int64), np.array(bits, dtype=float)
    evalues = np.where(labels >= 0, 1e-5, np.inf) if evalues is None else np.array(evalues, dtype=float)
    return Hits(labels[:, 0], evalues[:, 0], bits[:, 0], labels, evalues, bits)


def test_fuse_vote_sums_the_evidence_of_agreeing_hits_and_lets_the_network_break_near_ties():
    #  query 0: one strong hit for 2, three weaker hits for 1 that add up to more -> 1
    #  query 1: no hit -> the network's answer (0)
    #  query 2: 30 vs 29 bits -> the weight decides between the hits' 2 and the network's 0
    #  query 3: a hit above the E-value cutoff is no evidence -> the network
    hits = _top_hits([[2, 1, 1, 1], [-1, -1, -1, -1], [2, 0, -1, -1], [1, -1, -1, -1]],
                     [[50, 20, 20, 20], [0, 0, 0, 0], [30, 29, 0, 0], [40, 0, 0, 0]],
                     [[1e-9, 1e-4, 1e-4, 1e-4], [np.inf] * 4, [1e-6, 1e-6, np.inf, np.inf], [5.0, np.inf, np.inf, np.inf]])
    log_probs = np.log(np.array([[0.4, 0.3, 0.3], [0.8, 0.1, 0.1], [0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]))
    labels, supported = fuse_vote(log_probs, hits, weight=0.01, evalue_cutoff=1e-3)
    assert labels.tolist() == [1, 0, 2, 0] and supported.tolist() == [True, False, True, False]
    labels, _ = fuse_vote(log_probs, hits, weight=10.0, evalue_cutoff=1e-3)
    assert labels[2] == 0  # 29 + 10 log 0.5 > 30 + 10 log 0.2
    with pytest.raises(ConfigError, match="weight"):
        fuse_vote(log_probs, hits, weight=0.0)


def test_choose_weight_picks_on_dev_and_ties_go_to_the_network():
    hits = _top_hits([[2, 0], [1, -1]], [[30, 29], [40, 0]])
    log_probs = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1]]))
    weight, accuracy = choose_weight(log_probs, hits, np.array([0, 1]))
    assert accuracy[0.01] == 0.5 and weight == max(w for w, a in accuracy.items() if a == 1.0)
    weight, _ = choose_weight(log_probs, hits, np.array([2, 1]))
    assert fuse_vote(log_probs, hits, weight)[0].tolist() == [2, 1]


def test_search_keeps_the_top_hits_best_first(clean_six):
    train = read_split(clean_six, "train")
    reference = Reference(train[col.SEQUENCE].tolist()[1:], train[col.LABEL].to_numpy()[1:])
    hits = reference.search([train[col.SEQUENCE].iloc[0]], keep=5)
    assert hits.top_label.shape == (1, 5) and hits.top_label[0, 0] == hits.label[0]
    found = hits.top_label[0] >= 0
    assert found.sum() >= 2 and np.all(np.diff(hits.top_evalue[0, found]) >= 0)


def test_relabelled_hits_take_each_reference_rows_new_label():
    hits = Hits(np.array([3, -1]), np.array([1e-9, np.inf]), np.array([50.0, 0.0]), np.array([[3, 4, 3], [-1, -1, -1]]),
                np.array([[1e-9, 1e-5, 1e-2], [np.inf] * 3]), np.array([[50.0, 30.0, 20.0], [0.0] * 3]),
                top_row=np.array([[0, 2, 1], [-1, -1, -1]]))
    relabelled = hits.relabelled(np.array([7, 8, 9]))
    assert relabelled.top_label.tolist() == [[7, 9, 8], [-1, -1, -1]] and relabelled.label.tolist() == [7, -1]
    assert relabelled.top_bits is hits.top_bits and relabelled.top_row is hits.top_row
    with pytest.raises(ConfigError, match="reference rows"):
        Hits(hits.label, hits.evalue, hits.bitscore).relabelled(np.array([7, 8, 9]))


def test_network_labels_repair_a_noisy_reference_and_auto_chooses_them_on_dev(noisy_dataset):
    """Real phmmer hits against a reference with 30% wrong labels: a network that knows the families (here
    the clean labels stand in for it) makes the vote right again, and auto prefers it on dev; a network that
    only repeats the observed labels ties, and the tie keeps the observed labels."""
    train, dev = read_split(noisy_dataset, "train"), read_split(noisy_dataset, "dev")
    rows = reference_rows(train[col.LABEL].to_numpy(), 15, seed=0)
    observed, clean = train[col.LABEL].to_numpy()[rows], train[col.CLEAN_LABEL].to_numpy()[rows]
    assert (observed != clean).mean() > 0.15
    reference = Reference(train[col.SEQUENCE].to_numpy()[rows].tolist(), observed)
    hits = reference.search(dev[col.SEQUENCE].tolist())
    truth = dev[col.LABEL].to_numpy()
    uniform = np.full((len(dev), 6), 1 / 6)
    auto = homology_fusion_rule("vote", None, None, "auto")
    chosen, accuracy = choose_fusion(auto, uniform, hits, truth, network_labels=clean)
    assert chosen.labels == "network" and chosen.weight is not None
    best_observed = max(a for (source, _), a in accuracy.items() if source == "observed")
    assert accuracy[("network", chosen.weight)] > best_observed
    repeat, _ = choose_fusion(auto, uniform, hits, truth, network_labels=observed)
    assert repeat.labels == "observed"
    fixed, tried = choose_fusion(HomologyFusion("best-hit", 1e-3, None, "auto"), uniform, hits, truth, clean)
    assert fixed.labels == "network" and set(tried) == {("observed", None), ("network", None)}
    with pytest.raises(ConfigError, match="need the network's label"):
        choose_fusion(auto, uniform, hits, truth)
    with pytest.raises(ConfigError, match="--homology-labels 'mine'"):
        homology_fusion_rule("vote", None, None, "mine")


def test_network_reference_labels_through_predict(noisy_dataset, tmp_path, classifier_checkpoint):
    """`--homology-labels network`: every hit is labelled with the network's own answer for that reference
    domain, so with an untrained network the reported hit families are the network's guesses."""
    ckpt = classifier_checkpoint(tmp_path / "u.ckpt", num_classes=6)
    ckpt["hyper_parameters"]["labels"] = read_labels(noisy_dataset)
    torch.save(ckpt, tmp_path / "u.ckpt")
    dev = read_split(noisy_dataset, "dev")
    dev[[col.SEQUENCE_NAME, col.SEQUENCE]].to_csv(tmp_path / "q.tsv", sep="\t", index=False)
    kwargs = dict(homology_reference=noisy_dataset, homology_per_family=15, homology_weight=1.0)
    net = predict(tmp_path / "u.ckpt", tmp_path / "q.tsv", tmp_path / "net.csv", homology_labels="network", **kwargs)
    obs = predict(tmp_path / "u.ckpt", tmp_path / "q.tsv", tmp_path / "obs.csv", homology_labels="observed", **kwargs)
    assert net.fusion.labels == "network" and obs.fusion.labels == "observed" and net.fusion_dev_accuracy is None
    a, b = pd.read_csv(tmp_path / "net.csv"), pd.read_csv(tmp_path / "obs.csv")
    train = read_split(noisy_dataset, "train")
    train.iloc[reference_rows(train[col.LABEL].to_numpy(), 15, seed=0)][[col.SEQUENCE_NAME, col.SEQUENCE]].to_csv(
        tmp_path / "ref.tsv", sep="\t", index=False)
    predict(tmp_path / "u.ckpt", tmp_path / "ref.tsv", tmp_path / "ref.csv")
    network_says = set(pd.read_csv(tmp_path / "ref.csv")["predicted_family"])
    found = a["homology_family"].notna()
    assert found.mean() > 0.8 and (a["homology_evalue"] == b["homology_evalue"]).all()
    assert set(a.loc[found, "homology_family"]) <= network_says < set(b.loc[found, "homology_family"])
