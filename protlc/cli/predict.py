"""``protlc predict``: families for new sequences, with an out-of-distribution flag."""

from __future__ import annotations

from pathlib import Path

import click

from protlc.cli.options import inference_options
from protlc.homology import DEFAULT_PER_FAMILY, FUSIONS, REFERENCE_LABELS
from protlc.unknown import HOMOLOGY, PREDICT_SCORES, UNKNOWN_RATES


@click.command("predict")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="Output table: .csv, .tsv or .parquet (written atomically).")
@click.option("--top-k", type=int, default=3, show_default=True, help="Families (with probabilities) per row.")
@click.option("--unknown-threshold", type=float, default=None,
              help="Flag a sequence as unknown when its unknown score is below this "
                   "[default: calibrated on the dev split, RUN_DIR/calibration.json].")
@click.option("--unknown-rate", type=float, default=None,
              help="Set the threshold so that this share of the known dev sequences is flagged: one of "
                   + ", ".join(f"{r:g}" for r in UNKNOWN_RATES) + " [default: 0.01]; instead of --unknown-threshold.")
@click.option("--unknown-score", type=click.Choice(("auto", *PREDICT_SCORES)), default="auto",
              show_default=True,
              help="max_p: top probability; entropy: 1 - H(p)/log C; energy: logsumexp of the logits; nearest: cosine "
                   "similarity of the layer embedding to the closest training domain (<= 100 per family) of the "
                   "run's dataset (or --homology-reference); nearest_kmer: the same, each training domain's "
                   "similarity the mean of that cosine and the 4-mer profile cosine; homology: HMMER's rule, no "
                   "phmmer hit at E <= --homology-evalue [1e-3] in the --homology-reference training domains; "
                   "auto: the score the run chose on dev when its dataset had novel families, else max_p.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--max-length", type=int, default=10_000, show_default=True, help="Reject longer sequences.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 ...")
@click.option("--homology-reference", type=click.Path(path_type=Path), default=None,
              help="Prepared dataset (the one the model was trained on): search its training domains with "
                   "phmmer and fuse the hits with the network's answer (needs the 'hmmer' extra).")
@click.option("--homology-per-family", type=int, default=DEFAULT_PER_FAMILY, show_default=True,
              help="Reference domains per family (a seeded sample; 0: all).")
@click.option("--homology-fusion", type=click.Choice(FUSIONS), default="vote", show_default=True,
              help="vote: each family gets the bit scores of the top 25 hits that name it, plus the network's "
                   "log-probability times --homology-weight; best-hit: the best hit's family when its E-value is "
                   "at most --homology-evalue, else the network's.")
@click.option("--homology-weight", type=float, default=None,
              help="vote: the network's weight in bits per nat [default: chosen on the reference's dev split].")
@click.option("--homology-evalue", type=float, default=None,
              help="best-hit: a best hit at or below this E-value decides [default: 1e-3]; vote: hits above it "
                   "are no evidence [default: every hit phmmer reports].")
@click.option("--homology-labels", type=click.Choice(REFERENCE_LABELS), default="auto", show_default=True,
              help="The reference domains' labels: observed (the dataset's training labels), network (the model's "
                   "prediction for each: corrects noisy training labels) or auto (chosen on the dev split).")
@click.option("--ensemble", "ensemble", multiple=True, type=click.Path(path_type=Path),
              help="Another checkpoint over the same families (repeatable): predict with the mean probability of "
                   "all models; the unknown threshold is then calibrated for the ensemble on the dataset's dev split.")
@click.option("--threads", type=int, default=1, show_default=True, help="phmmer threads.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: when a terminal].")
@inference_options
def predict_command(checkpoint, input_path, out_path, top_k, unknown_threshold, unknown_rate, unknown_score, batch_size,
                    max_length,
                    device, homology_reference, homology_per_family, homology_fusion, homology_weight,
                    homology_evalue, homology_labels, ensemble, threads, progress, tokens_per_batch, precision):
    """Predict the family of every sequence in INPUT (FASTA, CSV/TSV with a `sequence` column, Parquet)."""
    from protlc.cli.signals import terminate_cleanly
    from protlc.predict import predict

    with terminate_cleanly():
        s = predict(checkpoint, input_path, out_path, top_k=top_k, unknown_threshold=unknown_threshold,
                    batch_size=batch_size, device=device, max_length=max_length, progress=progress,
                    tokens_per_batch=tokens_per_batch, precision=precision,
                    unknown_score=None if unknown_score == "auto" else unknown_score, unknown_rate=unknown_rate,
                    homology_reference=homology_reference, homology_per_family=homology_per_family,
                    homology_evalue=homology_evalue, threads=threads, homology_fusion=homology_fusion,
                    homology_weight=homology_weight, homology_labels=homology_labels, ensemble=ensemble)
    if s.fusion_dev_accuracy:
        tried = ", ".join(f"{labels}" + ("" if w is None else f" W {w:g}") + f": {a:.3f}"
                          for (labels, w), a in s.fusion_dev_accuracy.items())
        chosen = f"{s.fusion.labels} reference labels" + ("" if s.fusion.weight is None else f", weight {s.fusion.weight:g}")
        click.echo(f"homology {s.fusion.method}: {chosen}, chosen on the reference's dev split (accuracy {tried})")
    if s.score == HOMOLOGY:
        rule = f"no phmmer hit at E <= {10 ** -s.threshold:.3g}"
    else:
        what = {"max_p": "top probability", "entropy": "1 - H(p)/log C", "energy": "logsumexp of the logits",
                "nearest": "similarity to the nearest training domain",
                "nearest_kmer": "embedding and k-mer similarity to the nearest training domain"}[s.score]
        rule = f"{what} < {s.threshold:.3f}"
    models = f", mean of {s.models} models" if s.models > 1 else ""
    click.echo(f"{s.sequences} sequences -> {s.out} ({s.unknown} flagged unknown: {rule}{models})")
