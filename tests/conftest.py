"""Shared fixtures: paths to the embedded data in data/ and the real data in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "data"
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    return EMBEDDED


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared/data``; tests that need it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED


@pytest.fixture(scope="session")
def shared_or_embedded_tsv() -> Path:
    """The embedded real extHomFam sample (32 domains per family, with family_id)."""
    for path in (EMBEDDED / "exthomfam_tiny32.tsv",):
        if path.is_file():
            return path
    pytest.skip("no extHomFam sample available")


@pytest.fixture(scope="session")
def nn4dms(shared_dir) -> Path:
    """The nn4dms DMS data sets (avgfp, bgl3, pab1) with their published splits."""
    return shared_dir / "dms" / "nn4dms"


@pytest.fixture(scope="session")
def pab1(nn4dms):
    """The whole real Pab1 table (40,852 variants) in protlc's canonical columns."""
    from protlc.dms.tables import load_dms_table

    return load_dms_table(nn4dms / "pab1" / "pab1.tsv")


class CrashAtEpoch(pl.Callback):
    """Simulates a killed run: raises at the start of training epoch ``epoch`` (after last.ckpt of the one
    before); ``error=KeyboardInterrupt`` simulates Ctrl-C."""

    def __init__(self, epoch: int, error: type[BaseException] = RuntimeError):
        self.epoch = epoch
        self.error = error

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise self.error("simulated kill")
