"""``protlc train``: train ProtCNN on a prepared dataset with a robust loss."""

from __future__ import annotations

import json
from pathlib import Path

import click

from protlc.cli import cli


@cli.command("train")
@click.argument("dataset_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Run directory to create.")
@click.option("--preset", default=None, help="Network size: small (CPU, minutes) | paper (F=1100, GPU) | tiny.")
@click.option("--loss", default=None, help="cce | ls | cp | bootsoft | proselflc | proselflc_at | dm (SPEC defaults).")
@click.option("--config", "config_files", multiple=True, type=click.Path(path_type=Path),
              help="YAML config (e.g. configs/losses/proselflc_at.yaml); repeatable, later files win.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any config key, e.g. --set optim.lr=3e-4 --set loss.temperature=0.3.")
@click.option("--max-epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--seed", type=int, default=None, help="Training seed (init, batch order).")
@click.option("--resume", is_flag=True, help="Continue RUN_DIR from checkpoints/last.ckpt.")
@click.option("--accelerator", default=None, help="cpu | gpu | auto.")
@click.option("--devices", default=None, help="Number of devices (or 'auto').")
@click.option("--num-nodes", type=int, default=None)
@click.option("--strategy", default=None, help="auto | ddp | ddp_spawn ...")
@click.option("--precision", default=None, help="32 | bf16-mixed (GPU) | 16-mixed.")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the network.")
def train_command(dataset_dir, out_dir, preset, loss, config_files, overrides, max_epochs, batch_size, seed,
                  resume, accelerator, devices, num_nodes, strategy, precision, compile_):
    """Train a family classifier on DATASET_DIR (made by `protlc prepare`) into RUN_DIR.

    Ends by evaluating the FINAL model on train (observed labels), dev and test (clean labels) and
    writes RUN_DIR/final_metrics.json, metrics.csv, dynamics.csv (noisy data), plots/ and
    checkpoints/{last,best}.ckpt.
    """
    from protlc.training.config import load_config
    from protlc.training.run import train

    flags = {
        "model.preset": preset, "loss.name": loss, "trainer.max_epochs": max_epochs,
        "data.batch_size": batch_size, "seed": seed, "trainer.accelerator": accelerator,
        "trainer.devices": devices, "trainer.num_nodes": num_nodes, "trainer.strategy": strategy,
        "trainer.precision": precision, "trainer.compile": compile_,
    }
    flag_overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if resume:
        saved = out_dir / "config.yaml"
        config = load_config([saved, *config_files] if saved.is_file() else config_files,
                             [*flag_overrides, *overrides])
    else:
        config = load_config(config_files, [*flag_overrides, *overrides])
    metrics = train(dataset_dir, out_dir, config, resume=resume)
    if metrics is not None:
        keys = ["train/accuracy", "test/accuracy", "test/confidence_entropy", "test/max_p", "test/ece"]
        click.echo(json.dumps({k: round(metrics[k], 4) for k in keys if k in metrics}, indent=1))
        click.echo(f"final metrics: {out_dir / 'final_metrics.json'}")
