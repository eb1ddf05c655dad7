"""The noise-table reproduction (docs/method.md §4): a grid of methods × noise settings × seeds.

``load_grid`` reads ``configs/reproduce/{cpu,full}.yaml`` (or any grid file), ``reproduce`` prepares
the datasets, trains every cell (skipping finished ones, resuming interrupted ones, in parallel worker
processes) and writes the table, the ECE table, the figures and ``summary.json``.
"""

from protlc.reproduce.grid import PRESETS, Grid, load_grid, parse_seeds, preset_path
from protlc.reproduce.runner import reproduce

__all__ = ["PRESETS", "Grid", "load_grid", "parse_seeds", "preset_path", "reproduce"]
