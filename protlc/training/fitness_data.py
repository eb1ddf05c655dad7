"""The data of a ``train-dms`` run: the table read, split and encoded once, with the ridge baseline of its
split (shared by the candidate heads of ``head.additive: auto``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from protlc.atomic import atomic_write_text
from protlc.data import store
from protlc.data.loading import EncodedSequences
from protlc.dms import splits as dms_splits
from protlc.dms.epistasis import fit_global_epistasis
from protlc.dms.rejects import REJECTS_FILE, write_rejects
from protlc.dms.ridge import ridge_baseline
from protlc.dms.tables import MUTATED_SEQUENCE, NUM_MUTATIONS, POSITIONS, SCORE, load_dms_table
from protlc.errors import ConfigError
from protlc.training.config import dump_config

SPLIT_KINDS = ("published", "random", "mutational", "positional")
EXTRAPOLATING_KINDS = ("mutational", "positional")  # the kinds whose tune can be drawn by split.tune_mode


class ScoredSequences(EncodedSequences):
    """:class:`EncodedSequences` whose batches also carry ``score`` ``(B,)`` float32."""

    def __init__(self, sequences, scores):
        super().__init__(sequences)
        self.scores = torch.as_tensor(np.asarray(scores, dtype=np.float32))

    def __getitem__(self, rows):
        batch = super().__getitem__(rows)
        batch["score"] = self.scores[batch["index"]]
        return batch


def make_split(frame: pd.DataFrame, split: dict) -> dms_splits.Split:
    """The split named by ``split["kind"]`` (each random kind draws only from ``split["seed"]``), its tune
    part drawn as ``split["tune_mode"]`` says (mutational and positional kinds only).

    Raises:
        ConfigError: unknown kind, published without a directory, a tune mode other than random for the
            published or random kind, empty part.
        InputError: bad split files.
    """
    kind = split["kind"]
    tune_mode = split.get("tune_mode", "random")
    if tune_mode != "random" and kind not in EXTRAPOLATING_KINDS:
        raise ConfigError(f"split.tune_mode={tune_mode} applies to the mutational and positional splits only, "
                          f"not split kind {kind!r}")
    if kind == "published":
        if not split.get("dir"):
            raise ConfigError("split kind 'published' needs the directory of train.txt, tune.txt, stest.txt (--splits DIR)")
        published = dms_splits.published_split(split["dir"], frame.attrs.get("rows", len(frame)))
        return _without_rejected(published, frame.index.to_numpy(), frame.attrs.get("rows", len(frame)))
    if kind == "random":
        return dms_splits.random_split(len(frame), split["fractions"], split["seed"])
    if kind == "mutational":
        return dms_splits.mutational_split(frame[NUM_MUTATIONS].to_numpy(), int(split["mutational_k"]),
                                           split["seed"], split["tune_fraction"], tune_mode)
    if kind == "positional":
        return dms_splits.positional_split(frame[POSITIONS].tolist(), split["seed"], split["positional_fraction"],
                                           split["tune_fraction"], tune_mode)
    raise ConfigError(f"split.kind must be one of {', '.join(SPLIT_KINDS)}, got {kind!r}")


def _without_rejected(split: dms_splits.Split, kept_rows: np.ndarray, rows: int) -> dms_splits.Split:
    """A published split (input row numbers) as positions among the kept rows, rejected rows left out.

    Raises:
        ConfigError: a part is left empty.
    """
    if len(kept_rows) == rows:
        return split
    position = np.full(rows, -1, dtype=np.int64)
    position[kept_rows] = np.arange(len(kept_rows))
    parts = {name: position[rows_] for name, rows_ in split.parts().items()}
    return dms_splits.finish_split(*(p[p >= 0] for p in parts.values()), what="published split without rejected rows")


@dataclass
class DmsData:
    """A DMS table read, split and encoded once per run, with its ridge baseline (shared by the candidates)."""
    frame: pd.DataFrame
    wild_type: str
    parts: dict
    sequences: np.ndarray
    scores: np.ndarray
    encoded: dict
    sha256: str
    ridge: object
    ridge_seconds: float
    _starts: dict = field(default_factory=dict)
    start_seconds: float | None = None

    def additive_start(self, kind: str = "ridge"):
        """The fit that ``head.additive=KIND`` starts from (fitted once per run): ridge with substitution
        types (:class:`~protlc.dms.ridge.RidgeResult`) or global epistasis
        (:class:`~protlc.dms.epistasis.EpistasisResult`). ``start_seconds`` adds up their fitting times."""
        if kind not in self._starts:
            started = time.perf_counter()
            split = dms_splits.Split(**self.parts)
            if kind == "ridge":
                self._starts[kind] = ridge_baseline(self.wild_type, self.sequences, self.scores, split,
                                                    substitution_types=True)
            elif kind == "epistasis":
                self._starts[kind] = fit_global_epistasis(self.wild_type, self.sequences, self.scores, split)
            else:
                raise ConfigError(f"head.additive={kind!r} has no start")
            self.start_seconds = (self.start_seconds or 0.0) + time.perf_counter() - started
        return self._starts[kind]


def prepare_data(config: dict, table, wt) -> DmsData:
    """Read and split the table (filling ``config["dms"]``'s wild type, notation and offset), fit the ridge baseline."""
    dms = config["dms"]
    frame = load_dms_table(table, wt if wt is not None else dms["wild_type"], dms["notation"], dms["offset"],
                           dms["score_column"], dms["mutant_column"], sequence_column=dms["sequence_column"],
                           skip_invalid=bool(dms["skip_invalid"]))
    wild_type = frame.attrs["wild_type"]
    dms.update(wild_type=wild_type, notation=frame.attrs["notation"], offset=int(frame.attrs["offset"]))
    sha256 = store.fingerprint(table)
    parts = make_split(frame, config["split"]).parts()
    sequences = frame[MUTATED_SEQUENCE].to_numpy()
    scores = frame[SCORE].to_numpy()
    started = time.perf_counter()
    ridge = ridge_baseline(wild_type, sequences, scores, dms_splits.Split(**parts))
    ridge_seconds = time.perf_counter() - started
    encoded = {p: ScoredSequences(sequences[rows].tolist(), scores[rows]) for p, rows in parts.items()}
    return DmsData(frame, wild_type, parts, sequences, scores, encoded, sha256, ridge, ridge_seconds)


def write_run_config(out: Path, config: dict, data: DmsData, rejects: bool = True) -> None:
    atomic_write_text(out / "config.yaml", dump_config(config))
    if rejects and config["dms"]["skip_invalid"]:
        write_rejects(out / REJECTS_FILE, data.frame.attrs["rejects"])
