"""Family classification against HMMER (pyhmmer) and protlc on the same families and test sequences.

    python benchmarks/bench_hmmer.py --checkpoint CKPT [--noisy-checkpoint CKPT ...]
        [--families 10,30,107] [--queries 300] [--db-per-family 100] [--threads 2] [--no-record]
    python benchmarks/bench_hmmer.py --dataset DIR [--no-profiles] ...   # e.g. a clustered split

Data: a prepared clean dataset (default ``runs/bench/ext_clean``, made by ``benchmarks/run.py``) and the same split with symmetric
label noise r=0.4 on the training labels (default ``runs/bench/ext_r40``); or any prepared dataset
with ``--dataset DIR`` (such as ``protlc prepare --split-method clustered``), where the noisy-label
methods run only when ``--noisy-dataset`` names the same split with noisy labels. Every record names its
dataset and split (``split``: ``random``, or ``clustered <linkage> <identity>``), so the results of a random
and a clustered split sit side by side. For each number of families
``n``, the families are the first ``n`` of one seeded permutation of all labels (so the subsets are
nested), and the queries a seeded sample of at most ``--queries`` test sequences of those families;
every method below classifies the same queries:

* ``phmmer``: each query searched against a database of up to ``--db-per-family`` training sequences
  per family (a seeded sample, the same for every ``n``); prediction = family of the best hit.
  ``phmmer-vote25``: the majority family of the best 25 reported hits (ties: the better-ranked hit's).
* ``hmmscan``: one profile HMM per family, built with pyhmmer's ``Builder`` from a MAFFT (``mafft
  --auto``, the OS package) alignment of that family's database sequences; prediction = best profile.
  Alignments are cached in ``benchmarks/work/hmmer/`` (build time is reported, not counted per query).
* ``phmmer-noisy-top1`` / ``-vote10`` / ``-vote25``: phmmer against the same database rows with the
  noisy OBSERVED labels (what protlc trains on): the best hit's label, or the majority label of the
  top ``k`` reported hits (ties go to the better-ranked hit).
* ``protlc``: each checkpoint predicts the queries (``predict_proba``, one process, ``--threads``
  threads); the 107-family model's output is restricted to the ``n`` families (argmax over their
  columns). ``protlc-head``: the same encoder with an untrained head of C classes (C = each ``n``
  and 17,929, Pfam's size), all timed on the same queries (the last setting's), so the cost of more
  families is measured directly.

Accuracy is against the clean test labels (no hit = wrong). HMMER's cost per query residue (query
sets differ in length) is extrapolated to 17,929 families with a least-squares line through the
measured points, and turned into sequences/s for queries of the last setting's mean length. Results are printed and
appended to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from protlc import columns as col

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402
from results import append, stamp  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "work" / "hmmer"
PFAM_FAMILIES = 17_929
SEED = 0


def load_splits(clean_dir: Path, noisy_dir: Path | None):
    """Clean train/test frames, the noisy training labels (None without ``noisy_dir``), and the family ids
    (label order)."""
    from protlc.data import store

    train, test = store.read_split(clean_dir, "train"), store.read_split(clean_dir, "test")
    families = [lab["family_id"] for lab in store.read_labels(clean_dir)]
    if noisy_dir is None:
        return train, test, None, families
    noisy = store.read_split(noisy_dir, "train")
    if len(noisy) != len(train) or not (noisy["sequence_name"].to_numpy() == train["sequence_name"].to_numpy()).all():
        raise SystemExit(f"{noisy_dir} and {clean_dir} do not hold the same training split")
    return train, test, noisy["label"].to_numpy(), families


def split_name(dataset: Path) -> str:
    """``random`` (per-family random or given split) or ``clustered <linkage> <identity>``, from the manifest."""
    from protlc.data import store

    split = store.read_manifest(dataset)["split"]
    if split["policy"] != "clustered":
        return "random"
    clustering = split["clustering"]
    return f"clustered {clustering['linkage']} {clustering['parameters']['min_seq_id']:g}"


def database_rows(labels: np.ndarray, families: np.ndarray, per_family: int) -> np.ndarray:
    """Up to ``per_family`` training rows of each family (a seeded sample per family, independent of the subset)."""
    rows = []
    for f in families:
        members = np.flatnonzero(labels == f)
        rng = np.random.default_rng([SEED, int(f)])
        rows.append(np.sort(rng.choice(members, min(per_family, len(members)), replace=False)))
    return np.concatenate(rows)


def digital(names, sequences):
    from pyhmmer import easel

    alphabet = easel.Alphabet.amino()
    return easel.DigitalSequenceBlock(alphabet, [
        easel.TextSequence(name=str(n).encode(), sequence=s).digitize(alphabet) for n, s in zip(names, sequences)])


def top_hits(queries, database, k: int, cpus: int) -> tuple[list[list[str]], float]:
    """Names of the best ``k`` reported phmmer hits of each query (best first), and the search seconds."""
    from pyhmmer import hmmer

    started = time.perf_counter()
    hits = [[h.name for h in th if h.reported][:k] for th in hmmer.phmmer(queries, database, cpus=cpus)]
    return hits, time.perf_counter() - started


def vote(labels: list[int]) -> int:
    """Majority label (ties: the better-ranked hit's); -1 for no hit."""
    return Counter(labels).most_common(1)[0][0] if labels else -1


def _align(family: str, sequences: list[str]) -> Path:
    """MAFFT alignment of one family's database sequences, cached by content."""
    digest = hashlib.sha256("\n".join(sequences).encode()).hexdigest()[:12]
    out = WORK / f"{family}.{digest}.afa"
    if not out.is_file():
        with tempfile.NamedTemporaryFile("w", suffix=".fa", dir=WORK, delete=False) as fasta:
            fasta.writelines(f">s{i}\n{s}\n" for i, s in enumerate(sequences))
        aligned = subprocess.run(["mafft", "--auto", "--thread", "1", "--quiet", fasta.name],
                                 capture_output=True, text=True, check=True).stdout
        Path(fasta.name).unlink()
        tmp = out.with_suffix(".tmp")
        tmp.write_text(aligned)
        tmp.replace(out)
    return out


def build_hmms(train, rows: np.ndarray, families: list[str], threads: int) -> tuple[list, float]:
    """One profile HMM per family (named by family index) from the MAFFT alignment of its rows."""
    from pyhmmer import easel, plan7

    WORK.mkdir(parents=True, exist_ok=True)
    alphabet = easel.Alphabet.amino()
    labels = train["label"].to_numpy()[rows]
    groups = {int(f): train["sequence"].to_numpy()[rows[labels == f]].tolist() for f in np.unique(labels)}
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        paths = dict(zip(groups, pool.map(lambda f: _align(families[f], groups[f]), groups)))
    builder, background = plan7.Builder(alphabet), plan7.Background(alphabet)
    hmms = []
    for f, path in paths.items():
        with easel.MSAFile(str(path), digital=True, alphabet=alphabet, format="afa") as handle:
            msa = handle.read()
        msa.name = str(f).encode()
        hmms.append(builder.build_msa(msa, background)[0])
    return hmms, time.perf_counter() - started


def hmmscan_best(queries, hmms, cpus: int) -> tuple[list[int], float]:
    from pyhmmer import hmmer

    started = time.perf_counter()
    best = [int(th[0].name) if len(th) and th[0].reported else -1 for th in hmmer.hmmscan(queries, hmms, cpus=cpus)]
    return best, time.perf_counter() - started


def timed_proba(model, sequences: list[str], repeats: int = 3) -> tuple[np.ndarray, float]:
    """Class probabilities and the best wall time of ``repeats`` runs (after one warm-up)."""
    from protlc.data.loading import EncodedSequences
    from protlc.inference import predict_proba

    probs, best = predict_proba(model, EncodedSequences(sequences[:64]), 256), float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        probs = predict_proba(model, EncodedSequences(sequences), 256)
        best = min(best, time.perf_counter() - started)
    return probs, best


def protlc_accuracy(checkpoint: Path, families: list[str], subset: np.ndarray, sequences, truth) -> tuple[float, float]:
    """Accuracy of a checkpoint restricted to the ``subset`` families, and its seconds for the queries."""
    from protlc.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint, task="classify")
    ours = [lab["family_id"] for lab in loaded.labels]
    missing = sorted({families[f] for f in subset} - set(ours))
    if missing:
        raise SystemExit(f"{checkpoint}: not trained on the families {', '.join(missing[:5])} ...")
    columns = np.array([ours.index(families[f]) for f in subset])
    probs, seconds = timed_proba(loaded.model.eval(), sequences)
    predicted = subset[probs[:, columns].argmax(1)]
    return float(np.mean(predicted == truth)), seconds


def head_seconds(checkpoint: Path, classes: int, sequences: list[str]) -> float:
    """Seconds to predict ``sequences`` with the checkpoint's encoder and an untrained ``classes``-way head."""
    from protlc.model import ProtCNNClassifier
    from protlc.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint, task="classify")
    model = ProtCNNClassifier(loaded.model.config, classes)
    model.encoder.load_state_dict(loaded.model.encoder.state_dict())
    return timed_proba(model.eval(), sequences)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, action="append", default=[],
                        help="protlc classifier checkpoint(s) trained on all families (repeatable)")
    parser.add_argument("--clean-dataset", type=Path, default=results.CLEAN_DATASET)
    parser.add_argument("--noisy-dataset", type=Path, default=None,
                        help=f"the clean dataset's split with r=0.4 label noise [default: {results.NOISY_DATASET} "
                             "unless --dataset is given; none: skip the noisy-label methods]")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="any prepared dataset (e.g. --split-method clustered) instead of --clean-dataset; "
                             "the noisy-label methods run only with --noisy-dataset")
    parser.add_argument("--families", default="10,30,107")
    parser.add_argument("--queries", type=int, default=300, help="test sequences per setting (at most)")
    parser.add_argument("--db-per-family", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-profiles", action="store_true", help="skip MAFFT + hmmbuild + hmmscan")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results.jsonl")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clean_dataset = args.dataset or args.clean_dataset
    noisy_dataset = args.noisy_dataset or (None if args.dataset else results.NOISY_DATASET)
    train, test, noisy_labels, families = load_splits(clean_dataset, noisy_dataset)
    split = split_name(clean_dataset)
    order = np.random.default_rng(SEED).permutation(len(families))
    # a dataset with noisy training labels still holds the clean ones: the "clean" methods use those
    clean_labels = train[col.CLEAN_LABEL if col.CLEAN_LABEL in train else col.LABEL].to_numpy()
    test_labels = test[col.LABEL].to_numpy()
    records, per_query = [], {}

    def record(n, method, accuracy, seconds, queries, **extra):
        records.append({**stamp("hmmer"), "dataset": clean_dataset.name, "split": split, "families": n, "method": method,
                        "queries": queries,
                        "accuracy": None if accuracy is None else round(accuracy, 4), "seconds": round(seconds, 3),
                        "sequences_per_second": round(queries / seconds, 1), "query_residues": residues,
                        "residues_per_second": round(residues / seconds), "threads": args.threads, **extra})
        per_query.setdefault(method, {})[n] = seconds / residues  # per residue: query sets differ in length
        shown = "       -" if accuracy is None else f"{accuracy:>8.1%}"
        print(f"{split:<22}{n:>4} families  {method:<28}{shown}{queries / seconds:>10.1f} seq/s  "
              + " ".join(f"{k}={v}" for k, v in extra.items()), flush=True)

    for n in (int(x) for x in args.families.split(",")):
        subset = np.sort(order[:n])
        candidates = np.flatnonzero(np.isin(test_labels, subset))
        q = np.sort(np.random.default_rng([SEED, n]).choice(candidates, min(args.queries, len(candidates)), replace=False))
        sequences, truth = test["sequence"].to_numpy()[q].tolist(), test_labels[q]
        residues = sum(map(len, sequences))
        queries = digital(q, sequences)
        # (a) phmmer top pick and a 25-neighbour vote, clean labels
        rows = database_rows(clean_labels, subset, args.db_per_family)
        hits, seconds = top_hits(queries, digital(rows, train["sequence"].to_numpy()[rows]), 25, args.threads)
        for k, name in ((1, "phmmer"), (25, "phmmer-vote25")):
            predicted = np.array([vote([int(clean_labels[int(h)]) for h in hit[:k]]) for hit in hits])
            record(n, name, float(np.mean(predicted == truth)), seconds, len(q), database=len(rows), labels="clean")
        # (b) profile HMMs from MAFFT alignments, hmmscan
        if not args.no_profiles:
            hmms, build_seconds = build_hmms(train, rows, families, args.threads)
            best, seconds = hmmscan_best(queries, hmms, args.threads)
            record(n, "hmmscan", float(np.mean(np.array(best) == truth)), seconds, len(q), profiles=len(hmms),
                   build_seconds=round(build_seconds, 1), labels="clean", alignment="mafft --auto")
        # (c) phmmer under the noisy observed labels: top pick and top-k votes
        if noisy_labels is not None:
            rows = database_rows(noisy_labels, subset, args.db_per_family)
            hits, seconds = top_hits(queries, digital(rows, train["sequence"].to_numpy()[rows]), 25, args.threads)
            for k in (1, 10, 25):
                predicted = np.array([vote([int(noisy_labels[int(h)]) for h in hit[:k]]) for hit in hits])
                name = "phmmer-noisy-top1" if k == 1 else f"phmmer-noisy-vote{k}"
                record(n, name, float(np.mean(predicted == truth)), seconds, len(q), database=len(rows),
                       labels="noisy r=0.4 (observed)")
        # protlc: each checkpoint restricted to the subset, and the cost of an n-way head
        for checkpoint in args.checkpoint:
            accuracy, seconds = protlc_accuracy(checkpoint, families, subset, sequences, truth)
            record(n, f"protlc:{checkpoint.parent.parent.name}", accuracy, seconds, len(q), checkpoint=str(checkpoint),
                   restricted_to_subset=n < len(families))
    for n in [int(x) for x in args.families.split(",")] + [PFAM_FAMILIES] if args.checkpoint else []:
        # the cost of an n-way head, all on the last setting's queries (the same residues for every n)
        seconds = head_seconds(args.checkpoint[0], n, sequences)
        record(n, "protlc-head", None, seconds, len(q), head_classes=n, weights="encoder of --checkpoint")
    for method, costs in per_query.items():  # HMMER: a straight line through the measured points
        if method.startswith("protlc") or "vote" in method or len(costs) < 2:
            continue
        slope, intercept = np.polyfit(list(costs), list(costs.values()), 1)
        seconds = (intercept + slope * PFAM_FAMILIES) * residues / len(q)  # per query of the last setting's length
        records.append({**stamp("hmmer"), "dataset": clean_dataset.name, "split": split, "families": PFAM_FAMILIES,
                        "method": method, "extrapolated": True,
                        "seconds_per_query": round(seconds, 4), "sequences_per_second": round(1 / seconds, 3),
                        "fit": f"per residue {intercept:.3g} s + {slope:.3g} s x families", "threads": args.threads})
        print(f"{PFAM_FAMILIES} families  {method:<28}  (extrapolated) {1 / seconds:10.3f} seq/s")
    if not args.no_record:
        append(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
