"""``protlc audit``: list the training labels a trained model disputes."""

from __future__ import annotations

from pathlib import Path

import click

from protlc.cli.options import inference_options


@click.command("audit")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path), help=".csv, .tsv or .parquet")
@click.option("--dataset", "dataset_dir", type=click.Path(path_type=Path), default=None,
              help="Prepared dataset [default: the one the run trained on].")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "dev", "test"]))
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@inference_options
def audit_command(checkpoint, out_path, dataset_dir, split, batch_size, device, tokens_per_batch, precision):
    """Write the examples whose label the model disputes, with a suggested label, most confident first."""
    from protlc.audit import audit
    from protlc.cli.signals import terminate_cleanly

    with terminate_cleanly():
        s = audit(checkpoint, out_path, dataset_dir, split, batch_size, device, tokens_per_batch, precision)
    click.echo(f"{s.flagged} of {s.examined} {split} labels disputed -> {s.out}")
    if s.precision is not None:
        click.echo(f"against the injected noise: precision {s.precision:.3f}, recall {s.recall:.3f}")
