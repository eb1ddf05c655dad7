"""Novel families (``prepare --novel-families``), confusable-family label noise, the unknown scores and
what ``train``/``predict`` do with them, on the real extHomFam sample (107 families x 32 domains)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from protlc import columns as col
from protlc.cli import cli
from protlc.data import store
from protlc.data.prepare import PrepareOptions, prepare_dataset
from protlc.data.similarity import confusable_map
from protlc.errors import InputError
from protlc.unknown import (
    ALL_SCORES,
    auroc,
    kmer_profiles,
    layer_embedding,
    nearest_reference_rows,
    nearest_similarity,
    novel_metrics,
    score,
    selection_half,
)

REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def novel_dataset(tmp_path_factory, exthomfam_tiny32_tsv):
    out = tmp_path_factory.mktemp("novel") / "ds"
    result = run("prepare", exthomfam_tiny32_tsv, "--out", out, "--novel-families", 10, "--label-noise", 0.4,
                 "--label-noise-kind", "confusable", "--seed", 2)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_novel_families_are_out_of_every_split_and_out_of_labels(novel_dataset):
    out, printed = novel_dataset
    manifest = store.read_manifest(out)
    families = manifest["novel"]["families"]
    assert len(families) == 10 and manifest["novel"]["selection"] == "random" and manifest["novel"]["seed"] == 2
    labels = store.read_labels(out)
    assert len(labels) == 97 and not {e[col.FAMILY_ID] for e in labels} & set(families)
    for split in col.SPLITS:
        frame = store.read_split(out, split)
        assert not set(frame[col.CLEAN_FAMILY_ID]) & set(families) and not set(frame[col.FAMILY_ID]) & set(families)
    novel = store.read_split(out, col.NOVEL)
    assert len(novel) == 320 == manifest["counts"]["novel"] == manifest["novel"]["domains"]
    assert sorted(novel[col.FAMILY_ID].unique()) == families and (novel[col.CLEAN_FAMILY_ID] == novel[col.FAMILY_ID]).all()
    assert (novel[col.LABEL] == -1).all() and (novel[col.CLEAN_LABEL] == -1).all() and not novel[col.IS_NOISY].any()
    assert (novel[col.CROP_END] == novel[col.LENGTH]).all() and (novel[col.SEQUENCE].str.len() == novel[col.LENGTH]).all()
    assert pq.read_schema(out / "novel.parquet").names == list(store.COLUMNS)
    assert "novel families     10 held out" in printed and "  novel         320       0" in printed
    store.check_novel(out, novel, labels)


def test_novel_draw_follows_the_split_seed_only(tmp_path, exthomfam_tiny32_tsv, novel_dataset):
    drawn = store.read_manifest(novel_dataset[0])["novel"]["families"]
    common = dict(novel_families=10, label_noise=0.4, label_noise_kind="confusable", split_seed=2)
    prepare_dataset([exthomfam_tiny32_tsv], tmp_path / "a", PrepareOptions(noise_seed=9, **common), progress=False)
    assert store.read_manifest(tmp_path / "a")["novel"]["families"] == drawn
    common["split_seed"] = 3
    prepare_dataset([exthomfam_tiny32_tsv], tmp_path / "b", PrepareOptions(**common), progress=False)
    assert store.read_manifest(tmp_path / "b")["novel"]["families"] != drawn
    assert not (tmp_path / "c").exists()
    prepare_dataset([exthomfam_tiny32_tsv], tmp_path / "c", progress=False)
    assert not (tmp_path / "c" / "novel.parquet").exists() and "novel" not in store.read_manifest(tmp_path / "c")


def test_named_novel_families_and_bad_requests(tmp_path, exthomfam_tiny32_tsv):
    result = run("prepare", exthomfam_tiny32_tsv, "--out", tmp_path / "named", "--novel-families", "mmp,svmp")
    assert result.exit_code == 0, result.output
    manifest = store.read_manifest(tmp_path / "named")
    assert manifest["novel"]["families"] == ["mmp", "svmp"] and manifest["novel"]["selection"] == "given"
    assert manifest["num_classes"] == 105 and manifest["counts"]["novel"] == 64
    for value, message in [("nosuchfamily", "'nosuchfamily', which is not a family of the input"),
                           ("106", "would leave 1 known family of 107"), ("0", "give a number of families >= 1"),
                           ("mmp,mmp", "family 'mmp' is named twice")]:
        result = run("prepare", exthomfam_tiny32_tsv, "--out", tmp_path / "bad", "--novel-families", value)
        assert result.exit_code == 2 and result.output.startswith("protlc: error: ") and message in result.output
        assert result.output.count("\n") == 1 and not (tmp_path / "bad").exists()


def test_a_tampered_novel_split_is_one_line(tmp_path, novel_dataset):
    out = novel_dataset[0]
    novel = store.read_split(out, col.NOVEL)
    labels = store.read_labels(out)
    bad = novel.copy()
    bad.loc[3, col.LABEL] = 0
    with pytest.raises(InputError, match=rf"novel.parquet, record '{novel[col.SEQUENCE_NAME][3]}': label 0"):
        store.check_novel(out, bad, labels)
    bad = novel.copy()
    bad.loc[5, col.FAMILY_ID] = labels[0][col.FAMILY_ID]
    with pytest.raises(InputError, match="is also a known family"):
        store.check_novel(out, bad, labels)


# ----------------------------------------------------------------------------------------------- confusable


def test_confusable_map_is_deterministic_and_pairs_families_of_one_clan(exthomfam_tiny32_tsv):
    df = pd.read_csv(exthomfam_tiny32_tsv, sep="\t")
    families, labels = np.unique(df[col.FAMILY_ID], return_inverse=True)
    targets, sims = confusable_map(df[col.SEQUENCE].tolist(), labels, len(families))
    again, sims_again = confusable_map(df[col.SEQUENCE].tolist()[::-1], labels[::-1], len(families))  # order-free
    assert np.array_equal(targets, again) and np.allclose(sims, sims_again)
    assert (targets != np.arange(len(families))).all() and targets.dtype == np.int32
    assert (sims <= 1 + 1e-9).all() and (sims >= -1).all()
    index = {f: i for i, f in enumerate(families)}
    # metzincin proteases (Pfam clan CL0126) and scorpion toxin-like knottins (CL0054) map to each other
    for a, b in (("mmp", "svmp"), ("planttoxin", "scorptoxin")):
        assert families[targets[index[a]]] == b and families[targets[index[b]]] == a
    # centring removes the shared composition: no family is everyone's neighbour
    assert np.bincount(targets).max() <= 12


def test_confusable_noise_in_prepare_touches_only_train_with_exact_counts(novel_dataset):
    out = novel_dataset[0]
    manifest = store.read_manifest(out)
    label = manifest["noise"]["label"]
    train = store.read_split(out, "train")
    vocabulary = [e[col.FAMILY_ID] for e in store.read_labels(out)]
    assert label["kind"] == "confusable" and label["noisy"] == round(0.4 * len(train)) == int(train[col.IS_NOISY].sum())
    mapping = label["confusable"]["map"]
    assert sorted(mapping) == vocabulary and all(m["family"] != f and m["family"] in vocabulary for f, m in mapping.items())
    noisy = train[train[col.IS_NOISY]]
    assert (noisy[col.FAMILY_ID] == noisy[col.CLEAN_FAMILY_ID].map(lambda f: mapping[f]["family"])).all()
    assert label["pair_map"] == [vocabulary.index(mapping[f]["family"]) for f in vocabulary]
    # the map comes from the training domains only (clean labels), as recorded
    targets, sims = confusable_map(train[col.SEQUENCE].tolist(), train[col.CLEAN_LABEL].to_numpy(), len(vocabulary))
    assert [vocabulary[t] for t in targets] == [mapping[f]["family"] for f in vocabulary]
    assert np.allclose(sims, [mapping[f]["similarity"] for f in vocabulary], atol=1e-6)
    for split in ("dev", "test"):
        frame = store.read_split(out, split)
        assert not frame[col.IS_NOISY].any() and (frame[col.LABEL] == frame[col.CLEAN_LABEL]).all()


# ----------------------------------------------------------------------------------------------- unknown scores


def test_scores_auroc_and_the_selection_half():
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0], [3.0, 2.0, 0.0]])
    assert np.allclose(score(logits, "max_p"), [np.exp(10) / (np.exp(10) + 2), 1 / 3, np.exp(3) / (np.exp(3) + np.exp(2) + 1)])
    assert np.isclose(score(logits, "entropy")[1], 0.0) and score(logits, "entropy")[0] > 0.99
    assert np.allclose(score(logits, "energy"), np.log(np.exp(logits).sum(axis=1)))
    assert np.allclose(score(logits + 5, "max_p"), score(logits, "max_p"))  # shift: same p, energy + 5
    assert np.allclose(score(logits + 5, "energy"), score(logits, "energy") + 5)
    assert auroc([3, 4, 5], [0, 1, 2]) == 1.0 and auroc([0, 1], [2, 3]) == 0.0 and auroc([1, 1], [1]) == 0.5
    assert auroc([2, 0], [1]) == 0.5
    families = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] * 4)
    half = selection_half(families, 0)
    assert set(families[half]).isdisjoint(families[~half]) and len(set(families[half])) == 2
    assert np.array_equal(half, selection_half(families, 0))
    single = selection_half(np.array(["a"] * 7), 0)
    assert single.sum() == 4


def test_novel_metrics_choose_on_dev_and_report_on_test():
    rng = np.random.default_rng(0)
    known_dev, known_test = rng.normal(0, 1, (400, 5)), rng.normal(0, 1, (400, 5))
    known_dev[:, 0] += 6
    known_test[:, 0] += 6
    novel = rng.normal(0, 1, (200, 5))
    families = np.repeat(np.array(["n1", "n2", "n3", "n4"]), 50)
    novel[families == "n1", 1] += 6  # confident and wrong: only the energy score can tell
    metrics = novel_metrics(known_dev, known_test, novel, families, seed=1)
    half = selection_half(families, 1)
    assert metrics["novel/selection_families"] == sorted(set(families[half]))
    assert metrics["novel/evaluation_domains"] == int((~half).sum()) == 100
    for name in ("max_p", "entropy", "energy"):
        assert metrics[f"novel/auroc_{name}"] == auroc(score(known_test, name), score(novel[~half], name))
        cut = np.quantile(score(known_dev, name), 0.01)
        assert metrics[f"novel/flagged_known_test_{name}"] == np.mean(score(known_test, name) < cut)
        assert metrics[f"novel/flagged_novel_{name}"] == np.mean(score(novel[~half], name) < cut)
    best = max(("max_p", "entropy", "energy"), key=lambda n: metrics[f"novel/dev_auroc_{n}"])
    assert metrics["novel/chosen_score"] == best and metrics["novel/auroc"] == metrics[f"novel/auroc_{best}"]


def test_nearest_similarity_is_the_cosine_of_the_closest_reference():
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(50, 8))
    query = np.concatenate([reference[:5] * 3.0, rng.normal(size=(20, 8)), np.zeros((1, 8))])
    found = nearest_similarity(query, reference, block=7 * 50)  # 7 queries per block
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    assert np.allclose(found, (unit(query) @ unit(reference).T).max(axis=1), atol=1e-6)
    assert np.allclose(found[:5], 1.0, atol=1e-6) and found[-1] == 0.0  # scale-free; a zero vector: 0
    assert np.allclose(found, nearest_similarity(query, reference[rng.permutation(50)]), atol=1e-6)
    with pytest.raises(ValueError, match="non-empty"):
        nearest_similarity(query, np.zeros((0, 8)))


def test_nearest_threshold_range_and_a_run_without_its_calibration(tmp_path):
    from protlc.errors import ConfigError
    from protlc.predict import unknown_rule

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    assert unknown_rule(ckpt, "nearest", -0.25) == ("nearest", -0.25)  # cosine: below 0 is valid
    with pytest.raises(ConfigError, match=r"in \[-1, 1\] for --unknown-score nearest"):
        unknown_rule(ckpt, "nearest", 1.5)
    (tmp_path / "run" / "calibration.json").write_text(json.dumps({"unknown_threshold": 0.5, "thresholds": {"max_p": 0.5}}))
    with pytest.raises(ConfigError, match="no threshold for it .calibrated only when the dataset has novel families"):
        unknown_rule(ckpt, "nearest", None)


def test_nearest_reference_keeps_at_most_100_per_family_deterministically():
    labels = np.repeat(np.arange(3), [250, 40, 101])
    rows = nearest_reference_rows(labels)
    assert np.bincount(labels[rows]).tolist() == [100, 40, 100]
    assert np.array_equal(rows, nearest_reference_rows(labels)) and np.all(np.diff(rows) > 0)


def test_novel_metrics_take_the_nearest_scores_as_candidates():
    rng = np.random.default_rng(0)
    logits = [rng.normal(0, 1, (n, 5)) for n in (300, 300, 200)]  # the logits know nothing
    families = np.repeat(np.array(["n1", "n2", "n3", "n4"]), 50)
    nearest = (rng.uniform(0.8, 1.0, 300), rng.uniform(0.8, 1.0, 300), rng.uniform(0.5, 0.85, 200))
    better = (nearest[0], nearest[1], nearest[2] - 0.2)
    metrics = novel_metrics(*logits, families, seed=1, reference_scores={"nearest": nearest})
    half = selection_half(families, 1)
    assert metrics["novel/chosen_score"] == "nearest"
    assert metrics["novel/auroc"] == metrics["novel/auroc_nearest"] == auroc(nearest[1], nearest[2][~half]) > 0.9
    assert metrics["novel/threshold_nearest"] == np.quantile(nearest[0], 0.01)
    cut = np.sort(nearest[1])[int(0.05 * 300)]
    assert metrics["novel/flagged_novel_at_known_5pct_nearest"] == pytest.approx(np.mean(nearest[2][~half] < cut), abs=0.01)
    assert "novel/auroc_nearest" not in novel_metrics(*logits, families, seed=1)
    both = novel_metrics(*logits, families, seed=1, reference_scores={"nearest": nearest, "nearest_kmer": better})
    assert both["novel/chosen_score"] == "nearest_kmer" and both["novel/auroc_nearest"] == metrics["novel/auroc_nearest"]


def test_kmer_profiles_count_k_mers_of_the_twenty_amino_acids():
    four = kmer_profiles(["ACDEAC", "ACD"]).toarray()  # the default k is 4
    assert four.shape == (2, 20**4) and np.count_nonzero(four[0]) == 3 and not four[1].any()
    assert np.allclose(four[0][[0 * 8000 + 1 * 400 + 2 * 20 + 3, 2 * 8000 + 3 * 400 + 0 * 20 + 1]], 1 / np.sqrt(3))
    profiles = kmer_profiles(["ACDAC", "ACDXACD", "AC", "ACDACD"], k=3)
    assert profiles.shape == (4, 8000)
    dense = profiles.toarray()
    acd, cda, dac = 0 * 400 + 1 * 20 + 2, 1 * 400 + 2 * 20 + 0, 2 * 400 + 0 * 20 + 1
    assert np.allclose(dense[0][[acd, cda, dac]], 1 / np.sqrt(3)) and np.count_nonzero(dense[0]) == 3
    assert np.allclose(dense[1][acd], 1.0) and np.count_nonzero(dense[1]) == 1  # windows over X left out, ACD twice
    assert not dense[2].any()  # shorter than k: a zero row
    assert np.allclose(dense[3][[acd, cda, dac]], np.array([2, 1, 1]) / np.sqrt(6))  # no window across sequences
    assert np.allclose(np.linalg.norm(dense[[0, 1, 3]], axis=1), 1.0)


def test_calibration_records_the_k_of_nearest_kmer_and_older_files_mean_three(tmp_path):
    from protlc.calibration import calibration_kmer, write_calibration
    from protlc.errors import CheckpointError
    from protlc.unknown import KMER, LEGACY_KMER

    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    assert calibration_kmer(checkpoint) == KMER == 4  # no calibration file: this version's k
    write_calibration(tmp_path, np.random.default_rng(0).normal(size=(50, 4)))
    path = tmp_path / "calibration.json"
    assert json.loads(path.read_text())["kmer"] == KMER and calibration_kmer(checkpoint) == KMER
    older = json.loads(path.read_text())
    del older["kmer"]
    path.write_text(json.dumps(older))
    assert calibration_kmer(checkpoint) == LEGACY_KMER == 3
    path.write_text(json.dumps({**older, "kmer": "four"}))
    with pytest.raises(CheckpointError, match="kmer must be an integer"):
        calibration_kmer(checkpoint)


def test_layer_embedding_weighs_every_layer_the_same():
    rng = np.random.default_rng(0)
    pooled = rng.normal(size=(6, 3, 4)) * np.array([1.0, 100.0, 0.01])[None, :, None]
    embedding = layer_embedding(pooled)
    assert embedding.shape == (6, 12) and np.allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-6)
    assert np.allclose(np.linalg.norm(embedding.reshape(6, 3, 4), axis=2), 1 / np.sqrt(3), atol=1e-6)


def test_nearest_with_profiles_takes_the_best_mean_of_both_cosines():
    rng = np.random.default_rng(4)
    query, reference = rng.normal(size=(9, 6)), rng.normal(size=(40, 6))
    sequences = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 30)) for _ in range(49)]
    qp, rp = kmer_profiles(sequences[:9]), kmer_profiles(sequences[9:])
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    expected = ((unit(query) @ unit(reference).T + (qp @ rp.T).toarray()) / 2).max(axis=1)
    found = nearest_similarity(query, reference, block=4 * 40 * 3, profiles=(qp, rp))  # 3 queries per block
    assert np.allclose(found, expected, atol=1e-6)
    with pytest.raises(ValueError, match="k-mer profiles"):
        nearest_similarity(query, reference, profiles=(qp[:3], rp))


def test_pooled_layers_end_with_the_embedding():
    import torch

    from protlc.model import ProtCNNEncoder, get_preset

    encoder = ProtCNNEncoder(get_preset("tiny")).eval()
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 0, 0]])
    with torch.no_grad():
        layers = encoder.pooled_layers(tokens, tokens > 0)
        assert layers.shape == (2, 1 + len(encoder.blocks), encoder.out_features)
        assert torch.allclose(layers[:, -1], encoder(tokens, tokens > 0), atol=1e-6)


# ----------------------------------------------------------------------------------------------- train + predict


def test_train_records_novel_metrics_and_predict_uses_the_chosen_score(novel_dataset, tmp_path, tiny_config):
    from protlc.training.run import train

    out = novel_dataset[0]
    metrics = train(out, tmp_path / "run", tiny_config(**{"trainer.max_epochs": 1}))
    saved = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
    assert saved["novel/chosen_score"] == metrics["novel/chosen_score"] in ALL_SCORES
    for name in ALL_SCORES:
        assert 0.0 <= saved[f"novel/auroc_{name}"] <= 1.0
        assert 0.0 <= saved[f"novel/flagged_novel_at_known_5pct_{name}"] <= 1.0
    assert saved["novel/evaluation_domains"] + saved["novel/selection_domains"] == 320
    calibration = json.loads((tmp_path / "run" / "calibration.json").read_text())
    chosen = calibration["unknown_score"]
    assert chosen == saved["novel/chosen_score"] == saved["dev/unknown_score"]
    assert calibration["thresholds"][chosen] == saved["dev/unknown_threshold"] == saved["novel/threshold"]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result = run("predict", ckpt, out / "novel.parquet", "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    assert {"max_p": "top probability", "entropy": "1 - H(p)/log C", "energy": "logsumexp",
            "nearest": "similarity to the nearest training domain",
            "nearest_kmer": "k-mer similarity to the nearest training domain"}[chosen] in result.output
    frame = pd.read_csv(tmp_path / "p.csv").merge(store.read_split(out, col.NOVEL)[[col.SEQUENCE_NAME, col.FAMILY_ID]])
    evaluation = frame[col.FAMILY_ID].isin(saved["novel/evaluation_families"])
    assert abs(frame["is_unknown"][evaluation].mean() - saved[f"novel/flagged_novel_{chosen}"]) <= 1 / evaluation.sum()
    result = run("predict", ckpt, out / "novel.parquet", "--out", tmp_path / "h.csv", "--unknown-score", "entropy")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "h.csv")
    expected = frame["confidence"] < calibration["thresholds"]["entropy"]
    borderline = (frame["confidence"] - calibration["thresholds"]["entropy"]).abs() < 1e-5
    assert (frame["is_unknown"] == expected)[~borderline].all()
    # --unknown-rate: the calibrated threshold that flags that share of the known dev domains
    result = run("predict", ckpt, out / "novel.parquet", "--out", tmp_path / "r.csv", "--unknown-rate", "0.05")
    assert result.exit_code == 0, result.output
    assert f"< {calibration['rate_thresholds'][chosen]['0.05']:.3f}" in result.output
    assert calibration["rate_thresholds"][chosen]["0.01"] == calibration["thresholds"][chosen]
    assert calibration["rate_thresholds"][chosen]["0.05"] >= calibration["thresholds"][chosen]
    assert pd.read_csv(tmp_path / "r.csv")["is_unknown"].sum() >= pd.read_csv(tmp_path / "p.csv")["is_unknown"].sum()
    for bad, message in ((["--unknown-rate", "0.03"], "choose one of 0.001, 0.005, 0.01, 0.02, 0.05, 0.1"),
                         (["--unknown-rate", "0.05", "--unknown-threshold", "0.5"], "give one of them")):
        result = run("predict", ckpt, out / "novel.parquet", "--out", tmp_path / "bad.csv", *bad)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    # an old calibration file (max p only) still works, and means max p
    (tmp_path / "run" / "calibration.json").write_text(json.dumps({"unknown_threshold": 0.5}))
    result = run("predict", ckpt, out / "novel.parquet", "--out", tmp_path / "old.csv", "--unknown-rate", "0.05")
    assert result.exit_code == 2 and "has thresholds at the 0.01 rate only; pass --unknown-threshold" in result.output
    result = run("predict", ckpt, out / "novel.parquet", "--out", tmp_path / "old.csv")
    assert result.exit_code == 0 and "top probability < 0.500" in result.output
    old = pd.read_csv(tmp_path / "old.csv")
    assert (old["is_unknown"] == (old["probability"] < 0.5)).all()
    result = run("predict", ckpt, out / "novel.parquet", "--out", tmp_path / "e.csv", "--unknown-score", "energy")
    assert result.exit_code == 2 and "has a threshold for max_p only; pass --unknown-threshold" in result.output


def test_predict_nearest_score_matches_training_and_needs_the_dataset(novel_dataset, tmp_path, tiny_config, capsys):
    """The nearest score of predict is the one train calibrated: the novel domains predict flags are the
    ones final_metrics counted; without the run's dataset it stops with one line naming the fix."""
    import shutil

    from protlc.training.run import train

    dataset = tmp_path / "ds"
    shutil.copytree(novel_dataset[0], dataset)
    train(dataset, tmp_path / "run", tiny_config(**{"trainer.max_epochs": 1}))
    saved = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    for name in ("nearest", "nearest_kmer"):
        threshold = json.loads((tmp_path / "run" / "calibration.json").read_text())["thresholds"][name]
        assert threshold == saved[f"novel/threshold_{name}"]
        result = run("predict", ckpt, dataset / "novel.parquet", "--out", tmp_path / f"{name}.csv", "--unknown-score", name)
        assert result.exit_code == 0, result.output
        assert "nearest training domain <" in result.output
        frame = pd.read_csv(tmp_path / f"{name}.csv").merge(
            store.read_split(dataset, col.NOVEL)[[col.SEQUENCE_NAME, col.FAMILY_ID]])
        evaluation = frame[col.FAMILY_ID].isin(saved["novel/evaluation_families"])
        assert abs(frame["is_unknown"][evaluation].mean() - saved[f"novel/flagged_novel_{name}"]) <= 1 / evaluation.sum()
        known = run("predict", ckpt, dataset / "train.parquet", "--out", tmp_path / "t.csv", "--unknown-score", name)
        assert known.exit_code == 0 and pd.read_csv(tmp_path / "t.csv")["is_unknown"].mean() < 0.01  # its own reference
    bench = importlib.util.spec_from_file_location("bench_unknown", REPO / "benchmarks" / "bench_unknown.py")
    module = importlib.util.module_from_spec(bench)
    bench.loader.exec_module(module)
    module.main([str(ckpt), str(dataset / "novel.parquet"), "--no-record"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[-3:]] == ["max_p", "nearest", "nearest_kmer"]
    flagged = pd.read_csv(tmp_path / "nearest_kmer.csv")["is_unknown"].sum()
    assert lines[-1].startswith("nearest_kmer: 320 sequences") and lines[-1].endswith(f"{flagged} flagged")
    shutil.move(dataset, tmp_path / "moved")
    result = run("predict", ckpt, tmp_path / "moved" / "novel.parquet", "--out", tmp_path / "x.csv", "--unknown-score", "nearest")
    assert result.exit_code == 2 and "--homology-reference DATASET_DIR" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.csv").exists()
    result = run("predict", ckpt, tmp_path / "moved" / "novel.parquet", "--out", tmp_path / "x.csv",
                 "--unknown-score", "nearest", "--homology-reference", tmp_path / "moved")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "x.csv")["is_unknown"].tolist() == pd.read_csv(tmp_path / "nearest.csv")["is_unknown"].tolist()
