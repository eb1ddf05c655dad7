"""Run a grid: prepare each (noise setting, seed) dataset once, train every cell, collect.

Layout of ``OUT``::

    OUT/grid.json                               what decides the results (a rerun must match it)
    OUT/data/<setting>/seed<k>/                 prepared datasets (``protlc prepare`` output)
    OUT/runs/<setting>/<method>/seed<k>/        one ``protlc train`` run dir per cell (+ reproduce_cell.json:
                                                its wall time), and seed<k>.log next to it
    OUT/noise_table.{csv,md}, ece_table.csv, summary.json, figures/dynamics_<setting>.png

A cell whose ``final_metrics.json`` exists is skipped; one with ``checkpoints/last.ckpt`` but no
final metrics is resumed; anything else in its directory (a crash before the first epoch ended) is
removed and the cell starts again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from protlc import jsonio
from protlc.jsonio import write_json
from protlc.errors import ConfigError, ProtlcError, TrainingInterrupted
from protlc.reproduce.grid import Grid, Method, NoiseSetting

CELL_FILE = "reproduce_cell.json"
DONE_FILE = "final_metrics.json"
LAST_CKPT = Path("checkpoints") / "last.ckpt"


@dataclass(frozen=True)
class Cell:
    """One training run of the grid (picklable: it travels to worker processes)."""

    noise: NoiseSetting
    method: Method
    seed: int
    dataset: Path
    run_dir: Path
    config: dict

    @property
    def log_path(self) -> Path:
        """The cell's training log, next to its run dir (which must stay empty for a fresh run)."""
        return self.run_dir.with_name(self.run_dir.name + ".log")

    @property
    def key(self) -> str:
        return f"{self.noise.label} / {self.method.label} / seed {self.seed}"


def cell_state(run_dir: Path) -> str:
    """``done`` (final metrics exist), ``resume`` (a last checkpoint, no final metrics) or ``new``."""
    if (run_dir / DONE_FILE).is_file():
        return "done"
    if (run_dir / LAST_CKPT).is_file():
        return "resume"
    return "new"


def cells_of(grid: Grid, out: Path) -> list[Cell]:
    """Every cell, ordered seed-major so that a partial run covers all methods early."""
    return [Cell(s, m, seed, out / "data" / s.name / f"seed{seed}", out / "runs" / s.name / m.slug / f"seed{seed}",
                 grid.train_config(m, seed))
            for seed in grid.seeds for s in grid.noise for m in grid.methods]


def check_out_dir(grid: Grid, out: Path) -> None:
    """Record the grid's fingerprint in ``OUT/grid.json``, or check that it matches the recorded one.

    Raises:
        ConfigError: ``OUT`` holds results of a different grid (other data, noise, training or methods).
    """
    fingerprint = json.loads(jsonio.dumps(grid.fingerprint(), default=str))
    path = out / "grid.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != fingerprint:
            changed = sorted(k for k in fingerprint if saved.get(k) != fingerprint[k])
            raise ConfigError(f"{out} holds a grid with different {', '.join(changed) or 'settings'} "
                              f"(see {path}); use a new --out, or delete it to start over")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, fingerprint, indent=1)


def prepare_all(grid: Grid, out: Path, log: Callable[[str], None]) -> None:
    """Prepare the dataset of every (noise setting, seed) that is not there yet."""
    from protlc.data.prepare import prepare_dataset

    for seed in grid.seeds:
        for setting in grid.noise:
            target = out / "data" / setting.name / f"seed{seed}"
            if (target / "manifest.json").is_file():
                continue
            summary = prepare_dataset(grid.data, target, grid.prepare_options(setting, seed), progress=False)
            counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
            log(f"prepared {target}: {summary.num_families} families, {counts}; {setting.describe()}")


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_cell(cell: Cell, threads: int | None = None) -> dict:
    """Train one cell unless it is finished. Failures come back as ``status: failed``, except an interruption.

    Returns:
        ``{"key", "status": skipped|trained|resumed|failed, "wall_seconds", "error"?}``.
    """
    import torch

    from protlc.training.run import train

    record = {"noise": cell.noise.name, "method": cell.method.label, "seed": cell.seed, "run_dir": str(cell.run_dir)}
    state = cell_state(cell.run_dir)
    if state == "done":
        saved = cell.run_dir / CELL_FILE
        earlier = json.loads(saved.read_text()) if saved.is_file() else {}
        return {**record, "status": "skipped", "wall_seconds": earlier.get("wall_seconds")}
    if state == "new" and cell.run_dir.exists():
        shutil.rmtree(cell.run_dir)  # a crash before the first checkpoint: nothing to keep
    cell.run_dir.parent.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    _quiet_lightning()
    started = time.perf_counter()
    try:
        with open(cell.log_path, "a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            train(cell.dataset, cell.run_dir, cell.config, resume=state == "resume")
    except TrainingInterrupted:  # Ctrl-C / SIGTERM: stop the whole grid, not just this cell
        raise TrainingInterrupted(f"reproduce interrupted in cell {cell.key}; rerun the same command to continue "
                                  "(finished cells are skipped, this one resumes)") from None
    except Exception as exc:  # reported in the summary; the other cells go on
        return {**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                "wall_seconds": time.perf_counter() - started}
    finally:
        torch.set_num_threads(old_threads)
    status = "resumed" if state == "resume" else "trained"
    info = {"status": status, "wall_seconds": time.perf_counter() - started, "threads": torch.get_num_threads()
            if not threads else threads, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(cell.run_dir / CELL_FILE, info, indent=1)
    return {**record, **info}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_cells(cells: list[Cell], jobs: int, log: Callable[[str], None], threads: int | None = None) -> list[dict]:
    """Run ``cells`` in ``jobs`` worker processes with ``threads`` torch threads each (default
    ``cores // jobs``); ``jobs=1`` runs them in this process. Returns one record per cell, in order."""
    threads = threads or max(1, available_cores() // jobs)
    records: dict[int, dict] = {}
    todo = [i for i, c in enumerate(cells) if cell_state(c.run_dir) != "done"]
    for i, c in enumerate(cells):
        if i not in todo:
            records[i] = run_cell(c)
    log(f"{len(cells)} cells: {len(cells) - len(todo)} finished earlier (skipped), {len(todo)} to train "
        f"with {jobs} job(s) × {threads} thread(s)")

    def report(i: int, rec: dict) -> None:
        records[i] = rec
        done = sum(1 for j in todo if j in records)
        extra = rec.get("error") or f"{rec['wall_seconds']:.0f} s"
        log(f"[{done}/{len(todo)}] {cells[i].key}: {rec['status']} ({extra})")

    if jobs == 1 or len(todo) <= 1:
        for i in todo:
            report(i, run_cell(cells[i], threads))
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_cell, cells[i], threads): i for i in todo}
            try:
                for future in as_completed(futures):
                    report(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return [records[i] for i in range(len(cells))]


def reproduce(grid: Grid, out: str | Path, jobs: int = 1, log: Callable[[str], None] = print,
              threads: int | None = None, collect_only: bool = False) -> dict:
    """Prepare, train (skip/resume) and collect the whole grid into ``out``.

    Returns:
        the summary (also ``OUT/summary.json``).
    Args:
        threads: torch threads per job (default: cores // jobs).
        collect_only: train nothing; tabulate the cells finished so far (the others show as missing).
    Raises:
        ConfigError: ``jobs < 1``, or ``out`` holds a different grid.
        ProtlcError: some cells failed (after the table of the others has been written).
    """
    from protlc.reproduce.collect import collect

    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be >= 1")
    out = Path(out)
    started = time.perf_counter()
    check_out_dir(grid, out)
    if collect_only:
        cells = cells_of(grid, out)
        records = [run_cell(c) if cell_state(c.run_dir) == "done" else
                   {"noise": c.noise.name, "method": c.method.label, "seed": c.seed, "run_dir": str(c.run_dir),
                    "status": "missing", "wall_seconds": None} for c in cells]
        log(f"collect only: {sum(r['status'] == 'skipped' for r in records)} of {len(cells)} cells finished")
        return collect(grid, out, cells, records, wall_seconds=time.perf_counter() - started, jobs=jobs)
    prepare_all(grid, out, log)
    cells = cells_of(grid, out)
    records = run_cells(cells, jobs, log, threads)
    summary = collect(grid, out, cells, records, wall_seconds=time.perf_counter() - started, jobs=jobs)
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        first = failed[0]
        raise ProtlcError(f"{len(failed)} of {len(records)} cells failed, first {first['run_dir']}: {first['error']} "
                          f"(see its .log next to it; rerun the same command to retry)")
    return summary
