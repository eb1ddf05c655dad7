"""``protlc train-dms``: train the fitness head on a deep mutational scanning table."""

from __future__ import annotations

import json
from pathlib import Path

import click

from protlc.cli import cli

_EPILOG = """\b
Mutant notations (--notation auto picks one from the table):
  proteingym  A1P:D2N      1-based, ':'-separated (optional mutated_sequence column)
  nn4dms      A108D,K110R  0-based + the data set's wt_offset (--offset), '_wt' = wild type
  esm         H24C         1-based unless --offset
  or no mutant column and a full mutated_sequence column.

\b
Example (nn4dms main split of Pab1, wild type and offset from wt_sequences.tsv):
  protlc train-dms ../shared/data/dms/nn4dms/pab1/pab1.tsv \\
      --splits ../shared/data/dms/nn4dms/pab1/splits_main --out runs/pab1
"""


@cli.command("train-dms", epilog=_EPILOG)
@click.argument("table", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Run directory to create.")
@click.option("--wt", default=None, metavar="SEQ_OR_FASTA",
              help="Wild-type sequence or FASTA file [default: from wt_sequences.tsv for a table in the nn4dms layout].")
@click.option("--notation", default=None, type=click.Choice(("auto", "proteingym", "nn4dms", "esm")),
              help="Mutant notation [default: auto].")
@click.option("--offset", type=int, default=None,
              help="Number of the wild type's first residue in the mutant strings [default: the notation's].")
@click.option("--score-column", default=None, help="Fitness column [default: score, DMS_score or fitness].")
@click.option("--mutant-column", default=None, help="Mutant column [default: mutant, variant, mutation(s)].")
@click.option("--splits", "splits_dir", default=None, type=click.Path(path_type=Path),
              help="Directory with the published nn4dms split files train.txt, tune.txt, stest.txt.")
@click.option("--split", default=None, type=click.Choice(("random", "mutational", "positional")),
              help="Split when no --splits: random 81/9/10, mutational (train <= k mutations, test > k; "
                   "split.mutational_k) or positional (held-out positions) [default: random].")
@click.option("--split-seed", type=int, default=None, help="Seed of the random/mutational/positional split.")
@click.option("--init", default=None, type=click.Path(path_type=Path),
              help="Start the encoder from this Pfam classifier checkpoint (protlc train) [default: from scratch].")
@click.option("--config", "config_files", multiple=True, type=click.Path(path_type=Path),
              help="YAML config (e.g. configs/dms.yaml); repeatable, later files win.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any config key, e.g. --set head.hidden=256 --set optim.lr=3e-4.")
@click.option("--max-epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--seed", type=int, default=None, help="Training seed (initial weights, batch order, dropout).")
@click.option("--accelerator", default=None, help="cpu | gpu | auto.")
@click.option("--devices", default=None, help="Number of devices (or 'auto').")
@click.option("--precision", default=None, help="32 | bf16-mixed (GPU).")
@click.option("--resume", is_flag=True, help="Continue RUN_DIR from checkpoints/last.ckpt.")
def train_dms_command(table, out_dir, wt, notation, offset, score_column, mutant_column, splits_dir, split,
                      split_seed, init, config_files, overrides, max_epochs, batch_size, seed, accelerator,
                      devices, precision, resume):
    """Train a fitness regression head on the DMS TABLE (CSV, TSV or Parquet) into RUN_DIR.

    The ridge baseline (one-hot) is fitted on the same split; RUN_DIR/final_metrics.json holds
    test/pearson, test/spearman and ridge/test/pearson, ridge/test/spearman, and plots/ a scatter plot.
    """
    from protlc.training.fitness_run import load_dms_config, train_dms

    if splits_dir is not None and split is not None:
        raise click.UsageError("give either --splits DIR (published split) or --split KIND, not both")
    flags = {"trainer.max_epochs": max_epochs, "data.batch_size": batch_size, "trainer.accelerator": accelerator,
             "trainer.devices": devices, "trainer.precision": precision, "split.seed": split_seed}
    flag_overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
    saved = out_dir / "config.yaml"
    files = [saved, *config_files] if resume and saved.is_file() else list(config_files)
    config = load_dms_config(files, [*flag_overrides, *overrides])
    metrics = train_dms(table, out_dir, wt, config, notation=notation, offset=offset, score_column=score_column,
                        mutant_column=mutant_column, splits_dir=splits_dir, split=split, init=init, seed=seed,
                        resume=resume)
    if metrics is not None:
        keys = ["test/pearson", "test/spearman", "ridge/test/pearson", "ridge/test/spearman", "epochs"]
        click.echo(json.dumps({k: round(metrics[k], 4) for k in keys if k in metrics}, indent=1))
        click.echo(f"final metrics: {out_dir / 'final_metrics.json'}")
