"""Classifier variants on a (clustered) split's dev and test domains: softmax, embedding kNN, ensembles.

    python benchmarks/bench_clustered.py DATASET_DIR CKPT [CKPT ...] [--device cpu|cuda] [--out FILE]

For every checkpoint (a ``protlc train`` run's ``best.ckpt`` or ``last.ckpt``) and for the ensemble of all
given checkpoints (mean of their probabilities; kNN on their concatenated embeddings), it reports accuracy on
dev and test against the clean labels for

* ``softmax``: the argmax of the head;
* ``knn{k}``: the k nearest training domains by cosine similarity of the encoder's pooled embedding (the
  ProtCNN work's ProtREP), a similarity-weighted vote of their observed labels;
* ``mix``: the softmax probabilities plus the kNN vote share, weighted 1:1;
* with ``--homology-per-family N`` (0: every training domain): ``phmmer`` (the best hit's family among N
  seeded training domains per family, no hit = wrong) and ``fused_softmax`` / ``fused_mix``
  (:mod:`protlc.homology`'s best-hit fusion: the hit's family when its E-value is at most a cutoff chosen on
  dev, else the network's softmax / mix answer) and ``fused_vote`` (its vote fusion, ``protlc predict``'s
  default: top-25 hits' bit scores per family plus the weighted softmax log-probability, weight chosen on
  dev) with the observed reference labels; ``fused_auto`` is ``protlc predict``'s default: the vote with
  reference labels chosen on dev between the observed ones and the network's prediction for each reference
  domain; ``phmmer_vote25`` is the bit-score vote of the top 25 hits alone (no hit = wrong).

Nothing here is tuned on test: the same rules run on dev and test, and a user picks on dev.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protlc import columns as col  # noqa: E402
from protlc.data.loading import EncodedSequences  # noqa: E402
from protlc.data.store import read_split  # noqa: E402
from protlc.homology import (  # noqa: E402
    Reference,
    choose_cutoff,
    choose_fusion,
    choose_weight,
    family_evidence,
    fuse,
    fuse_vote,
    homology_fusion_rule,
    reference_rows,
)
from protlc.inference import model_outputs, softmax  # noqa: E402
from protlc.model.checkpoint import load_checkpoint  # noqa: E402

KS = (1, 5, 25)


def head_probs(head: torch.nn.Module, emb_raw: np.ndarray) -> np.ndarray:
    """Softmax of the classification head over precomputed (pooled, eval-mode) embeddings, on the head's device."""
    device = next(head.parameters()).device
    with torch.no_grad():
        return softmax(head(torch.from_numpy(emb_raw).to(device)).float().cpu().numpy())


def knn_votes(query: np.ndarray, reference: np.ndarray, labels: np.ndarray, num_classes: int, k: int,
              device: torch.device) -> np.ndarray:
    """``(Q, C)`` similarity-weighted vote shares of the k nearest reference rows (cosine)."""
    ref = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32)).to(device)
    lab = torch.from_numpy(labels).to(device)
    out = np.zeros((len(query), num_classes), np.float32)
    for start in range(0, len(query), 2048):
        q = torch.from_numpy(np.ascontiguousarray(query[start:start + 2048], dtype=np.float32)).to(device)
        sim, idx = (q @ ref.T).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes, device=device)
        votes.scatter_add_(1, lab[idx], sim.clamp_min(0) + 1e-6)
        out[start:start + len(q)] = (votes / votes.sum(1, keepdim=True)).cpu().numpy()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="append the JSON record to this file")
    parser.add_argument("--homology-per-family", type=int, default=None,
                        help="also phmmer against N training domains per family, and the fusion")
    parser.add_argument("--threads", type=int, default=1, help="phmmer threads")
    parser.add_argument("--no-knn", action="store_true",
                        help="skip the embedding kNN and mix (then only the reference domains of the training split "
                             "go through the network: much faster on a CPU)")
    args = parser.parse_args(argv)
    if args.no_knn and args.homology_per_family is None:
        parser.error("--no-knn leaves nothing to compare without --homology-per-family")
    device = torch.device(args.device)
    precision = "bf16-mixed" if device.type == "cuda" else "32"
    splits = {s: read_split(args.dataset, s) for s in ("train", "dev", "test")}
    num_classes = int(max(f[col.CLEAN_LABEL].max() for f in splits.values())) + 1
    train_labels = splits["train"][col.LABEL].to_numpy().astype(np.int64)
    truth = {s: splits[s][col.CLEAN_LABEL].to_numpy() for s in ("dev", "test")}
    started = time.perf_counter()
    hits = rows = None
    if args.homology_per_family is not None:
        rows = reference_rows(train_labels, args.homology_per_family or None, seed=0)
        truth["reference"] = splits["train"][col.CLEAN_LABEL].to_numpy()[rows]
        reference = Reference(splits["train"][col.SEQUENCE].to_numpy()[rows].tolist(), train_labels[rows])
        hits = {s: reference.search(splits[s][col.SEQUENCE].tolist(), args.threads) for s in ("dev", "test")}
        print(f"phmmer: {time.perf_counter() - started:.0f} s for {len(reference)} reference domains", flush=True)
    per_model, all_emb, all_probs = {}, [], []
    for checkpoint in args.checkpoints:
        loaded = load_checkpoint(checkpoint, task="classify")
        model = loaded.model.to(device)
        tokens = 65536 if device.type == "cuda" else 16384
        emb, probs = {}, {}
        for name, frame in splits.items():
            sequences = frame[col.SEQUENCE].to_numpy()
            if name == "train" and args.no_knn:
                sequences, rows_here = sequences[rows], np.arange(len(rows))
            else:
                rows_here = rows
            raw = model_outputs(model.encoder, EncodedSequences(sequences.tolist()), device=device,
                                precision=precision, tokens_per_batch=tokens)
            emb[name] = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
            if name != "train":
                probs[name] = head_probs(model.head, raw)
            elif rows is not None:
                probs["reference"] = head_probs(model.head, raw[rows_here])
        all_emb.append(emb)
        all_probs.append(probs)
        per_model[str(checkpoint)] = evaluate(emb, probs, train_labels, truth, num_classes, device, hits,
                                              knn=not args.no_knn)
    report = {"dataset": str(args.dataset), "sizes": {s: len(f) for s, f in splits.items()},
              "models": per_model}
    if len(args.checkpoints) > 1:
        emb = {s: np.concatenate([e[s] for e in all_emb], axis=1) / np.sqrt(len(all_emb)) for s in splits}
        probs = {s: np.mean([p[s] for p in all_probs], axis=0) for s in all_probs[0]}
        report["ensemble"] = evaluate(emb, probs, train_labels, truth, num_classes, device, hits, knn=not args.no_knn)
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report)
    print(text, flush=True)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(text + "\n")
    return 0


def evaluate(emb, probs, train_labels, truth, num_classes, device, hits=None, knn: bool = True) -> dict:
    out, answers = {}, {}
    for split in ("dev", "test"):
        scores = {"softmax": probs[split]}
        if knn:
            for k in KS:
                scores[f"knn{k}"] = knn_votes(emb[split], emb["train"], train_labels, num_classes, k, device)
            scores["mix"] = probs[split] + scores["knn5"]
        answers[split] = {name: s.argmax(1) for name, s in scores.items()}
        if hits is not None:
            answers[split]["phmmer"] = hits[split].label
    if hits is not None:
        for base in ("softmax", "mix") if knn else ("softmax",):
            cutoff, tried = choose_cutoff(answers["dev"][base], hits["dev"], truth["dev"])
            out[f"fused_{base}_cutoff"] = cutoff
            out[f"fused_{base}_dev_by_cutoff"] = tried
            for split in ("dev", "test"):
                answers[split][f"fused_{base}"] = fuse(answers[split][base], hits[split], cutoff)[0]
        log_probs = {split: np.log(np.maximum(probs[split], 1e-12)) for split in ("dev", "test")}
        weight, tried = choose_weight(log_probs["dev"], hits["dev"], truth["dev"])
        out["fused_vote_weight"], out["fused_vote_dev_by_weight"] = weight, tried
        for split in ("dev", "test"):
            answers[split]["fused_vote"] = fuse_vote(log_probs[split], hits[split], weight)[0]
            evidence = family_evidence(hits[split], np.inf)
            voted = hits[split].top_label[np.arange(len(evidence)), evidence.argmax(axis=1)]
            answers[split]["phmmer_vote25"] = np.where(evidence.max(axis=1) > 0, voted, -1)
        network_labels = probs["reference"].argmax(axis=1)
        auto, tried = choose_fusion(homology_fusion_rule("vote", None, None, "auto"), probs["dev"], hits["dev"],
                                    truth["dev"], network_labels)
        out["fused_auto_labels"], out["fused_auto_weight"] = auto.labels, auto.weight
        out["fused_auto_dev"] = {f"{labels} {w:g}": a for (labels, w), a in tried.items()}
        out["reference_network_label_accuracy"] = round(float((network_labels == truth["reference"]).mean()), 4)
        for split in ("dev", "test"):
            chosen_hits = hits[split].relabelled(network_labels) if auto.labels == "network" else hits[split]
            answers[split]["fused_auto"] = auto.apply(probs[split], chosen_hits)[0]
    if hits is not None:  # paired: queries only one of the two gets right
        for fused, search in (("fused_vote", "phmmer"), ("fused_auto", "phmmer_vote25")):
            fused_right, search_right = answers["test"][fused] == truth["test"], answers["test"][search] == truth["test"]
            out[f"test/{fused}_only_right_vs_{search}"] = int((fused_right & ~search_right).sum())
            out[f"test/{search}_only_right_vs_{fused}"] = int((search_right & ~fused_right).sum())
    for split in ("dev", "test"):
        y = truth[split]
        for name, predicted in answers[split].items():
            correct = predicted == y
            out[f"{split}/{name}"] = round(float(correct.mean()), 4)
            out[f"{split}/{name}_se"] = round(float(correct.std(ddof=1) / np.sqrt(len(y))), 4) if len(y) > 1 else None
    return out


if __name__ == "__main__":
    sys.exit(main())
