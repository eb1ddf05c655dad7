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


@pytest.fixture(scope="session")
def crash_at_epoch() -> type[pl.Callback]:
    """The :class:`CrashAtEpoch` callback class, for tests that kill a run."""
    return CrashAtEpoch


# ----------------------------------------------------------------------------------------------- classifier


@pytest.fixture(scope="session")
def noisy_dataset(tmp_path_factory, embedded_dir) -> Path:
    """6 real Pfam families from the embedded sample, symmetric label noise 0.3 + crop noise (read-only)."""
    import pandas as pd

    from protlc.data.prepare import PrepareOptions, prepare_dataset

    tmp = tmp_path_factory.mktemp("data")
    df = pd.read_csv(embedded_dir / "exthomfam_16fam.tsv", sep="\t")
    keep = sorted(df["family_id"].unique())[:6]
    df[df["family_id"].isin(keep)].to_csv(tmp / "six.tsv", sep="\t", index=False)
    out = tmp / "ds"
    prepare_dataset([tmp / "six.tsv"], out, PrepareOptions(label_noise=0.3, crop_noise=0.2, seed=3), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(**overrides)``: a resolved training config for a 2-epoch run of the tiny network."""
    from protlc.training.config import load_config

    def make(**overrides) -> dict:
        items = {"model.preset": "tiny", "trainer.max_epochs": 2, "data.batch_size": 16, "dynamics.every_n_steps": 4,
                 "optim.warmup_steps": 2, "trainer.log_every_n_steps": 2, **overrides}
        return load_config([], [f"{k}={v}" for k, v in items.items()])

    return make


# ----------------------------------------------------------------------------------------------- fitness

@pytest.fixture(scope="session")
def pab1_wild_type(nn4dms) -> tuple[str, int]:
    """``(wild type, wt_offset)`` of Pab1, read from nn4dms' wt_sequences.tsv."""
    import pandas as pd

    table = pd.read_csv(nn4dms / "wt_sequences.tsv", sep="\t").set_index("dataset")
    return table.loc["pab1", "wt_aa"], int(table.loc["pab1", "wt_offset"])


@pytest.fixture(scope="session")
def dms_tiny_config():
    """``dms_tiny_config(*overrides)``: a resolved train-dms config for a 2-epoch run of a tiny head
    (``dms_tiny_config.overrides``: its settings as ``KEY=VALUE`` strings). It trains one head
    (``head.additive=none``); tests of the default ``auto`` (three candidates) set ``head.additive=auto``."""
    from protlc.training.fitness_run import load_dms_config

    tiny = ["model.preset=tiny", "model.filters=16", "model.dilations=[1, 2]", "head.channels=2", "head.hidden=16",
            "head.additive=none", "trainer.max_epochs=2", "data.batch_size=64", "trainer.log_every_n_steps=5", "trainer.progress_bar=false"]

    def make(*extra: str) -> dict:
        return load_dms_config(overrides=[*tiny, *extra])

    make.overrides = tiny  # the same settings as --set options, for CLI tests
    return make


@pytest.fixture(scope="session")
def classifier_checkpoint():
    """``classifier_checkpoint(path, num_classes=3)``: writes a Pfam-classifier-shaped checkpoint (random
    weights, stamped as `protlc train` stamps it) and returns its dict."""
    import torch

    from protlc.model import ProtCNNClassifier, get_preset
    from protlc.model.checkpoint import stamp

    def make(path, num_classes: int = 3) -> dict:
        config = get_preset("tiny").to_dict()
        model = ProtCNNClassifier(get_preset("tiny"), num_classes, generator=torch.Generator().manual_seed(5))
        labels = [{"family_id": f"FAM{i}", "family_accession": None} for i in range(num_classes)]
        ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model_config": config, "labels": labels, "config": {"seed": 0}}}
        stamp(ckpt, "classify")
        torch.save(ckpt, path)
        return ckpt

    return make


# ----------------------------------------------------------------------------------------------- figures


@pytest.fixture(scope="session")
def figure_content():
    """``figure_content(png) -> (width, height, ink, colours)``: pixel size, the share of pixels that are not
    background white, and the number of distinct colours, so a test can tell a drawn figure from a blank one."""
    import matplotlib.image
    import numpy as np

    def measure(path: Path) -> tuple[int, int, float, int]:
        pixels = matplotlib.image.imread(path)[..., :3]
        height, width = pixels.shape[:2]
        ink = float(np.mean(pixels.min(axis=2) < 0.95))
        colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
        return width, height, ink, colours

    return measure
