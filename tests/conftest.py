"""Shared fixtures: paths to the embedded data in data/ and the real-data subsets in tests/data
(sources, licences and subsetting rules in tests/data/README.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "data"
TEST_DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    return EMBEDDED


@pytest.fixture(scope="session")
def exthomfam_tiny32_tsv() -> Path:
    """The embedded real extHomFam sample (32 domains per family, with family_id)."""
    return EMBEDDED / "exthomfam_tiny32.tsv"


@pytest.fixture(scope="session")
def nn4dms() -> Path:
    """Real subsets of the nn4dms DMS data sets in their layout: ``<name>/<name>.tsv`` holds every 40th
    (pab1: 1,022 variants) or 100th (avgfp: 541, bgl3: 267) row of the published table, and
    ``<name>/splits_main`` the published main split restricted to those rows and renumbered;
    ``wt_sequences.tsv`` is whole."""
    return TEST_DATA / "nn4dms"


@pytest.fixture(scope="session")
def pab1(nn4dms):
    """The 1,022 real Pab1 variants of ``nn4dms`` in protlc's canonical columns."""
    from protlc.dms.tables import load_dms_table

    return load_dms_table(nn4dms / "pab1" / "pab1.tsv")


@pytest.fixture(scope="session")
def proteingym_reference() -> Path:
    """The rows of ProteinGym's DMS_substitutions.csv for BLAT_ECOLX_Stiffler_2015 and
    PABP_YEAST_Melamed_2013 (all columns)."""
    return TEST_DATA / "proteingym_ref" / "DMS_substitutions.csv"


@pytest.fixture(scope="session")
def pfam_seed_files(embedded_dir) -> list[Path]:
    """18 real Pfam seed alignments in Stockholm format, one family each: Biopython's 10 test files
    (tests/data/stockholm_seeds) and HMMER's 8 (data/pfam_seeds)."""
    biopython = sorted((TEST_DATA / "stockholm_seeds" / "biopython-1.88").iterdir())
    seeds = [p for p in biopython if p.suffix == ".sth" or p.name.endswith(".seed.txt")]
    seeds += sorted((embedded_dir / "pfam_seeds").glob("*.sto"))
    assert len(seeds) == 18
    return seeds


@pytest.fixture(scope="module")
def sequences(exthomfam_tiny32_tsv):
    """Eight real domains from the tiny extHomFam sample (lengths 25-180), two with X/B/Z."""
    with open(exthomfam_tiny32_tsv, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    plain = [r["sequence"] for r in rows[:6]]
    ambiguous = [r["sequence"] for r in rows if set(r["sequence"]) & set("XBZ")][:2]
    assert len(ambiguous) == 2
    return plain + ambiguous


class CrashAtEpoch(pl.Callback):
    """Simulates a killed run: raises at the start of training epoch ``epoch`` (after last.ckpt of the one
    before); ``error=KeyboardInterrupt`` simulates Ctrl-C."""

    def __init__(self, epoch: int, error: type[BaseException] = RuntimeError):
        self.epoch = epoch
        self.error = error

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise self.error("simulated kill")
