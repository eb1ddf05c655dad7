"""``protlc score``: predicted fitness for every variant of a mutant library, streamed in chunks."""

from __future__ import annotations

from pathlib import Path

import click

from protlc.cli.options import inference_options


_EPILOG = """\b
Libraries:
  LIBRARY            CSV/TSV/Parquet with a mutant column (mutant, variant, mutation(s) or
                     --mutant-column; ProteinGym A1P:D2N, nn4dms A108D,K110R, ESM H24C) or a
                     full-sequence column (mutated_sequence or --sequence-column)
  --saturation       every single substitution of the wild type (19 x L rows)
  --combinatorial    every combination of allowed residues, e.g. '10:AGV,25:DE'; the count
                     is printed first, and more than --max-variants (10,000,000) is refused
Output: the input rows in input order + fitness (+ predicted_family, family_probability for a
model trained with --init), no index column, written atomically. Invalid rows stop the run with
file, row and token, unless --skip-invalid sets them aside in OUT's .rejects.csv (row, variant, token, reason).

\b
Devices: --device cuda runs on the GPU; --devices N shards chunks over N worker processes
(cuda:0..N-1 with --device cuda, or N CPU processes sharing the cores).

\b
Example:
  protlc score runs/pab1/checkpoints/best.ckpt --saturation --out pab1_saturation.csv
"""


@click.command("score", epilog=_EPILOG)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("library", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="Output table: .csv, .tsv or .parquet.")
@click.option("--wt", default=None, metavar="SEQ_OR_FASTA", help="Wild type [default: the checkpoint's].")
@click.option("--offset", type=int, default=None,
              help="Number of the wild type's first residue in the mutants [default: the notation's own: 1 for "
                   "ProteinGym, ESM and generated libraries; nn4dms: the data set's wt_offset].")
@click.option("--notation", default="auto", show_default=True,
              type=click.Choice(("auto", "proteingym", "nn4dms", "esm")), help="Mutant notation of LIBRARY.")
@click.option("--mutant-column", default=None, help="Mutant column of LIBRARY.")
@click.option("--sequence-column", default=None,
              help="Column of full variant sequences, e.g. x (MAVE-NN) or sequence (FLIP) [default: mutated_sequence].")
@click.option("--saturation", is_flag=True, help="Score every single substitution of the wild type.")
@click.option("--combinatorial", default=None, metavar="SPEC", help="Score every combination, e.g. '10:AGV,25:DE'.")
@click.option("--max-variants", type=int, default=10_000_000, show_default=True, metavar="N",
              help="Refuse a --combinatorial library of more variants.")
@click.option("--skip-invalid", is_flag=True, help="Write invalid rows to OUT's .rejects.csv instead of failing.")
@click.option("--batch-size", type=int, default=512, show_default=True, help="Sequences per forward pass.")
@click.option("--chunk-size", type=int, default=100_000, show_default=True, help="Rows read and written at a time.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 ...")
@click.option("--devices", type=int, default=1, show_default=True, help="Worker processes (one per GPU with cuda).")
@click.option("--output-column", default="fitness", show_default=True, help="Name of the predicted column.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: when a terminal].")
@click.option("--ensemble", multiple=True, type=click.Path(path_type=Path), metavar="CHECKPOINT",
              help="Another train-dms checkpoint of the same wild type (repeatable; e.g. a run with another --seed): "
                   "score with the mean of all the checkpoints' predictions.")
@inference_options
def score_command(checkpoint, library, out_path, wt, offset, notation, mutant_column, sequence_column, saturation,
                  combinatorial, max_variants, skip_invalid, batch_size, chunk_size, device, devices, output_column,
                  progress, ensemble, tokens_per_batch, precision):
    """Predict the fitness of every variant of LIBRARY (or a generated library) with a train-dms CHECKPOINT."""
    from protlc.cli.signals import terminate_cleanly
    from protlc.dms.rejects import skipped_message
    from protlc.dms.scoring import score_library

    with terminate_cleanly():
        s = score_library(checkpoint, library, out_path, wt=wt, offset=offset, notation=notation,
                          saturation=saturation, combinatorial=combinatorial, skip_invalid=skip_invalid,
                          mutant_column=mutant_column, sequence_column=sequence_column, batch_size=batch_size,
                          chunk_size=chunk_size, device=device,
                          devices=devices, output_column=output_column, progress=progress,
                          tokens_per_batch=tokens_per_batch, precision=precision, max_variants=max_variants,
                          announce=click.echo, ensemble=ensemble)
    rate = s.rows / s.seconds if s.seconds > 0 else float("nan")
    click.echo(f"{s.scored} variants scored -> {s.out} ({s.unique_sequences} distinct sequences, "
               f"{s.rejected} rejected, {rate:,.0f} rows/s)")
    if s.rejects is not None:
        click.echo(skipped_message(s.rejected, s.rejects), err=True)
