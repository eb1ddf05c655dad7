"""``protlc train-dms``: train the fitness head on a deep mutational scanning table."""

from __future__ import annotations

from pathlib import Path

import click

from protlc.cli import options
from protlc.cli.options import echo_metrics, flag_overrides, run_options


_EPILOG = """\b
Mutant notations (--notation auto picks one from the table):
  proteingym  A1P:D2N      1-based, ':'-separated (optional mutated_sequence column)
  nn4dms      A108D,K110R  0-based + the data set's wt_offset (--offset), '_wt' = wild type
  esm         H24C         1-based unless --offset
  or no mutant column and a full-sequence column (mutated_sequence or --sequence-column).

\b
Example (a real Pab1 subset in the nn4dms layout; wild type and offset from wt_sequences.tsv):
  protlc train-dms tests/data/nn4dms/pab1/pab1.tsv \\
      --splits tests/data/nn4dms/pab1/splits_main --out runs/pab1
"""


@click.command("train-dms", epilog=_EPILOG)
@click.argument("table", type=click.Path(path_type=Path))
@run_options("configs/dms.yaml", "--set head.hidden=256 --set optim.lr=3e-4",
             "Training seed (initial weights, batch order, dropout).")
@click.option("--wt", default=None, metavar="SEQ_OR_FASTA",
              help="Wild-type sequence or FASTA file [default: from wt_sequences.tsv for a table in the nn4dms layout].")
@click.option("--notation", default=None, type=click.Choice(("auto", "proteingym", "nn4dms", "esm")),
              help="Mutant notation [default: auto].")
@click.option("--offset", type=int, default=None,
              help="Number of the wild type's first residue in the mutant strings [default: the notation's].")
@click.option("--score-column", default=None, help="Fitness column [default: score, DMS_score or fitness].")
@click.option("--mutant-column", default=None, help="Mutant column [default: mutant, variant, mutation(s)].")
@click.option("--sequence-column", default=None,
              help="Column of full variant sequences, e.g. x (MAVE-NN) or sequence (FLIP) [default: mutated_sequence].")
@click.option("--skip-invalid", is_flag=True, default=None,
              help="Skip bad rows (bad mutant or sequence, missing or non-finite score) into RUN_DIR/rejects.csv "
                   "instead of failing on the first.")
@click.option("--splits", "splits_dir", default=None, type=click.Path(path_type=Path),
              help="Directory with the published nn4dms split files train.txt, tune.txt, stest.txt.")
@click.option("--split", default=None, type=click.Choice(("random", "mutational", "positional")),
              help="Split when no --splits: random 81/9/10, mutational (train <= k mutations, test > k; "
                   "split.mutational_k) or positional (held-out positions) [default: random].")
@click.option("--split-seed", type=int, default=None, help="Seed of the random/mutational/positional split.")
@click.option("--init", default=None, type=click.Path(path_type=Path),
              help="Start the encoder from this Pfam classifier checkpoint (protlc train) [default: from scratch].")
def train_dms_command(table, out_dir, config_files, overrides, max_epochs, batch_size, seed, accelerator, devices,
                      precision, resume, wt, notation, offset, score_column, mutant_column, sequence_column,
                      skip_invalid, splits_dir, split, split_seed, init):
    """Train a fitness regression head on the DMS TABLE (CSV, TSV or Parquet) into RUN_DIR.

    The ridge baseline (one-hot) is fitted on the same split; RUN_DIR/final_metrics.json holds
    test/pearson, test/spearman and ridge/test/pearson, ridge/test/spearman, and plots/ a scatter plot.
    By default (head.additive=auto) three heads train in RUN_DIR/candidates/: the network alone, with an
    additive term started at ridge, and with a global-epistasis term (an additive latent trait through a
    learned monotone map), and their blend with weights >= 0 fitted on tune by least squares is a fourth
    candidate (ensemble; --set head.ensemble=false: none); the one best on the tune split is kept
    (choice/chosen in final_metrics.json).
    """
    from protlc.dms.rejects import REJECTS_FILE, skipped_message
    from protlc.training.fitness_run import load_dms_config, train_dms

    if splits_dir is not None and split is not None:
        raise click.UsageError("give either --splits DIR (published split) or --split KIND, not both")
    flags = flag_overrides({"trainer.max_epochs": max_epochs, "data.batch_size": batch_size,
                            "trainer.accelerator": accelerator, "trainer.devices": devices,
                            "trainer.precision": precision, "split.seed": split_seed})
    config = load_dms_config(options.config_files(out_dir, config_files, resume), [*flags, *overrides])
    metrics = train_dms(table, out_dir, wt, config, notation=notation, offset=offset, score_column=score_column,
                        mutant_column=mutant_column, sequence_column=sequence_column, skip_invalid=skip_invalid,
                        splits_dir=splits_dir, split=split, init=init, seed=seed, resume=resume)
    if metrics is not None and metrics.get("rejected_rows") is not None and (out_dir / REJECTS_FILE).is_file():
        click.echo(skipped_message(metrics["rejected_rows"], out_dir / REJECTS_FILE), err=True)
    echo_metrics(metrics, ["test/pearson", "test/spearman", "ridge/test/pearson", "ridge/test/spearman", "epochs",
                           "choice/chosen"],
                 out_dir)
