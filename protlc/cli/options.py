"""Options that ``protlc train`` and ``protlc train-dms`` share, declared once, and what both do with them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from protlc import jsonio


def run_options(config_example: str, set_example: str, seed_help: str) -> Callable:
    """Decorate a training command with the options every training run takes.

    Adds ``--out``, ``--config``, ``--set``, ``--max-epochs``, ``--batch-size``, ``--seed``,
    ``--accelerator``, ``--devices``, ``--precision`` and ``--resume``.
    """
    options = [
        click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
                     help="Run directory to create."),
        click.option("--config", "config_files", multiple=True, type=click.Path(path_type=Path),
                     help=f"YAML config (e.g. {config_example}); repeatable, later files win."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help=f"Override any config key, e.g. {set_example}."),
        click.option("--max-epochs", type=int, default=None),
        click.option("--batch-size", type=int, default=None),
        click.option("--seed", type=int, default=None, help=seed_help),
        click.option("--accelerator", default=None, help="cpu | gpu | auto."),
        click.option("--devices", default=None, help="Number of devices (or 'auto')."),
        click.option("--precision", default=None, help="32 | bf16-mixed (GPU) | 16-mixed."),
        click.option("--resume", is_flag=True, help="Continue RUN_DIR from checkpoints/last.ckpt."),
    ]

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def inference_options(command: Callable) -> Callable:
    """``--tokens-per-batch`` and ``--precision`` of predict, audit and score."""
    command = click.option(
        "--precision", default="auto", show_default=True, type=click.Choice(("auto", "32", "bf16-mixed")),
        help="bf16-mixed: bf16 autocast on a GPU (the CPU always computes in float32); auto: the precision "
             "the checkpoint was trained with.")(command)
    return click.option(
        "--tokens-per-batch", type=int, default=None, metavar="N",
        help="Batches of up to N padded positions (lengths rounded up to 64), instead of --batch-size "
             "sequences [default: 65536 on a GPU; on the CPU --batch-size]; 0 = --batch-size.")(command)


def flag_overrides(flags: dict) -> list[str]:
    """``KEY=VALUE`` overrides for the flags the user gave (None means not given)."""
    return [f"{key}={value}" for key, value in flags.items() if value is not None]


def config_files(out_dir: Path, files: tuple[Path, ...], resume: bool) -> list[Path]:
    """The config files of a run: a resumed run starts from its own resolved ``config.yaml``."""
    saved = out_dir / "config.yaml"
    return [saved, *files] if resume and saved.is_file() else list(files)


def echo_metrics(metrics: dict | None, keys: list[str], out_dir: Path) -> None:
    """Print the headline metrics of a finished run and where the rest is."""
    if metrics is None:
        return
    click.echo(jsonio.dumps({key: _rounded(metrics[key]) for key in keys if key in metrics}, indent=1))
    click.echo(f"final metrics: {out_dir / 'final_metrics.json'}")


def _rounded(value):
    """Floats to 4 decimals for the terminal; anything else (None, ints, bools) as it is."""
    return round(value, 4) if isinstance(value, float) else value
