"""``protlc train``: train ProtCNN on a prepared dataset with a robust loss."""

from __future__ import annotations

from pathlib import Path

import click

from protlc.cli import options
from protlc.cli.options import echo_metrics, flag_overrides, run_options



@click.command("train")
@click.argument("dataset_dir", type=click.Path(path_type=Path))
@run_options("configs/losses/proselflc_at.yaml", "--set optim.lr=3e-4 --set loss.temperature=0.3",
             "Training seed (init, batch order).")
@click.option("--preset", default=None, help="Network size: small (CPU, minutes) | paper (F=1100, GPU) | tiny.")
@click.option("--loss", default=None, help="cce | ls | cp | bootsoft | proselflc | proselflc_at | dm (defaults: docs/method.md §1-2).")
@click.option("--num-nodes", type=int, default=None)
@click.option("--strategy", default=None, help="auto | ddp | ddp_spawn ...")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the network.")
def train_command(dataset_dir, out_dir, config_files, overrides, max_epochs, batch_size, seed, accelerator, devices,
                  precision, resume, preset, loss, num_nodes, strategy, compile_):
    """Train a family classifier on DATASET_DIR (made by `protlc prepare`) into RUN_DIR.

    Ends by evaluating the FINAL model on train (observed labels), dev and test (clean labels) and
    writes RUN_DIR/final_metrics.json, metrics.csv, dynamics.csv (noisy data), plots/ and
    checkpoints/{last,best}.ckpt.
    """
    from protlc.training.config import load_config
    from protlc.training.run import train

    flags = flag_overrides({
        "model.preset": preset, "loss.name": loss, "trainer.max_epochs": max_epochs,
        "data.batch_size": batch_size, "seed": seed, "trainer.accelerator": accelerator,
        "trainer.devices": devices, "trainer.num_nodes": num_nodes, "trainer.strategy": strategy,
        "trainer.precision": precision, "trainer.compile": compile_,
    })
    config = load_config(options.config_files(out_dir, config_files, resume), [*flags, *overrides])
    metrics = train(dataset_dir, out_dir, config, resume=resume)
    echo_metrics(metrics, ["train/accuracy", "test/accuracy", "test/confidence_entropy", "test/max_p", "test/ece"],
                 out_dir)
