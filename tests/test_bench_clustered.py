"""benchmarks/bench_clustered.py runs end to end on a tiny real dataset and reports every method on dev and test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("pyhmmer", reason="the 'hmmer' extra (pyhmmer) runs phmmer")

from protlc.data.store import read_labels  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_clustered.py"


def test_bench_clustered_reports_the_search_and_the_fusions(noisy_dataset, classifier_checkpoint, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_clustered", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ckpt = classifier_checkpoint(tmp_path / "u.ckpt", num_classes=6)
    ckpt["hyper_parameters"]["labels"] = read_labels(noisy_dataset)
    torch.save(ckpt, tmp_path / "u.ckpt")
    assert bench.main([str(noisy_dataset), str(tmp_path / "u.ckpt"), "--device", "cpu", "--homology-per-family", "10",
                       "--out", str(tmp_path / "r.jsonl")]) == 0
    record = json.loads((tmp_path / "r.jsonl").read_text())
    result = record["models"][str(tmp_path / "u.ckpt")]
    for split in ("dev", "test"):
        assert result[f"{split}/phmmer_vote25"] > 0.6 > result[f"{split}/softmax"]  # real homology vs untrained net
        assert result[f"{split}/fused_auto"] >= result[f"{split}/softmax"]
    # the untrained network's labels for the reference are no better than the noisy observed ones
    assert result["fused_auto_labels"] == "observed" and result["reference_network_label_accuracy"] < 0.7
    assert set(result["fused_auto_dev"]) >= {"observed 0.01", "network 0.01"}
    # --no-knn: only the reference domains of the training split go through the network; the rest is the same
    assert bench.main([str(noisy_dataset), str(tmp_path / "u.ckpt"), "--device", "cpu", "--homology-per-family", "10",
                       "--no-knn", "--out", str(tmp_path / "fast.jsonl")]) == 0
    fast = json.loads((tmp_path / "fast.jsonl").read_text())["models"][str(tmp_path / "u.ckpt")]
    assert "test/knn1" not in fast and "test/knn1" in result
    for key in ("test/fused_auto", "test/fused_vote", "test/phmmer_vote25", "reference_network_label_accuracy"):
        assert fast[key] == result[key]
