"""``protlc reproduce``: the noise table of docs/method.md §4 (methods × noise settings × seeds) in one command."""

from __future__ import annotations

from pathlib import Path

import click


from protlc.errors import ConfigError


@click.command("reproduce")
@click.option("--preset", default=None, help="cpu (16 Pfam families, small network, ~25 min on 2 cores) | "
                                               "full (paper network, GPU, needs --data).")
@click.option("--config", "config_file", default=None, type=click.Path(path_type=Path),
              help="A grid YAML file instead of a preset (see configs/reproduce/).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output directory; rerunning into it skips finished cells and resumes interrupted ones.")
@click.option("--seeds", default=None, metavar="0,1,2", help="Seeds [default: the grid's].")
@click.option("--jobs", default=1, show_default=True, type=int,
              help="Cells trained in parallel, each in its own process with cores // jobs threads.")
@click.option("--data", "data", multiple=True, type=click.Path(path_type=Path),
              help="Input(s) of `protlc prepare` replacing the grid's data; repeatable.")
@click.option("--collect-only", is_flag=True, help="Train nothing: tabulate the cells finished so far.")
def reproduce_command(preset, config_file, out_dir, seeds, jobs, data, collect_only):
    """Train every method under every noise setting and seed; write OUT/noise_table.{md,csv},
    ece_table.csv, figures/dynamics_<setting>.png and summary.json."""
    from protlc.reproduce import load_grid, parse_seeds, preset_path, reproduce

    if (preset is None) == (config_file is None):
        raise ConfigError("give exactly one of --preset cpu|full and --config FILE")
    path = preset_path(preset) if preset else config_file
    grid = load_grid(path, data=list(data) or None, seeds=parse_seeds(seeds) if seeds else None)
    summary = reproduce(grid, out_dir, jobs=jobs, log=click.echo, collect_only=collect_only)
    click.echo(f"{summary['cells_trained']} cells trained, {summary['cells_skipped']} skipped, "
               f"{summary['cells_missing']} missing, "
               f"{summary['wall_seconds'] / 60:.1f} min")
    click.echo(f"table: {out_dir / 'noise_table.md'}")
