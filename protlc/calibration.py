"""The "unknown" threshold: calibrated on the dev split at the end of ``protlc train``, read by ``predict``.

A sequence is flagged unknown when its unknown score (:mod:`protlc.unknown`: max p by default) is below
the threshold: the 1st percentile of the dev sequences' score, so that 99% of in-distribution sequences
pass. ``RUN_DIR/calibration.json`` holds ``unknown_threshold`` (always the max-p threshold, as before),
``thresholds`` (every score's), ``rate_thresholds`` (every score's at each dev flag rate of
:data:`~protlc.unknown.UNKNOWN_RATES`: ``predict --unknown-rate``), and ``unknown_score``: the score the run
chose on its dev data when the dataset had novel families (else max p), and ``kmer``, the k of the
``nearest_kmer`` profiles its thresholds were computed with. A file without ``unknown_score`` (older runs)
means max p; one without ``rate_thresholds`` has the 1% thresholds only; one without ``kmer``, 3-mers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from protlc.errors import CheckpointError, ConfigError
from protlc.jsonio import write_json
from protlc.unknown import (DEFAULT_SCORE, KMER, LEGACY_KMER, SCORES, UNKNOWN_QUANTILE, UNKNOWN_RATES, score,
                            threshold)

CALIBRATION_FILE = "calibration.json"


def calibrate_unknown_threshold(dev_probs: np.ndarray, quantile: float = UNKNOWN_QUANTILE) -> float:
    """Top-probability threshold below which only ``quantile`` of dev sequences fall."""
    return float(np.quantile(dev_probs.max(axis=1), quantile))


def write_calibration(run_dir: Path, dev_logits: np.ndarray, unknown_score: str = DEFAULT_SCORE,
                      other_scores: dict[str, np.ndarray] | None = None) -> float:
    """Write ``calibration.json`` from the dev split's logits (and the dev values of scores that are not
    functions of the logits, ``other_scores``: the nearest scores); returns the threshold of ``unknown_score``."""
    values = {name: score(dev_logits, name) for name in SCORES}
    values.update(other_scores or {})
    thresholds = {name: threshold(v) for name, v in values.items()}
    by_rate = {name: {f"{rate:g}": threshold(v, rate) for rate in UNKNOWN_RATES} for name, v in values.items()}
    write_json(run_dir / CALIBRATION_FILE,
               {"unknown_threshold": thresholds[DEFAULT_SCORE], "unknown_score": unknown_score, "thresholds": thresholds,
                "quantile": UNKNOWN_QUANTILE, "rate_thresholds": by_rate, "split": "dev",
                "dev_sequences": int(len(dev_logits)), "kmer": KMER})
    return thresholds[unknown_score]


def find_calibration(checkpoint: Path, rate: float = UNKNOWN_QUANTILE) -> tuple[str, dict[str, float]] | None:
    """``(unknown_score, {score: threshold})`` saved next to a run's checkpoints (RUN_DIR/calibration.json),
    if any, the thresholds that flag ``rate`` of the dev sequences (one of
    :data:`~protlc.unknown.UNKNOWN_RATES`); an older file gives ``("max_p", {"max_p": unknown_threshold})``.

    Raises:
        CheckpointError: the file is not valid JSON or lacks the threshold. ConfigError: a ``rate`` other than
            1% that the file has no thresholds for (a run of an older protlc).
    """
    for candidate in (checkpoint.parent / CALIBRATION_FILE, checkpoint.parent.parent / CALIBRATION_FILE):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
                thresholds = {k: float(v) for k, v in data.get("thresholds", {}).items()}
                thresholds.setdefault(DEFAULT_SCORE, float(data["unknown_threshold"]))
                chosen = str(data.get("unknown_score", DEFAULT_SCORE))
                by_rate = {k: float(v[f"{rate:g}"]) for k, v in data.get("rate_thresholds", {}).items()
                           if f"{rate:g}" in v}
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
                raise CheckpointError(f"{candidate}: not a calibration file (expected JSON with unknown_threshold); "
                                      "pass --unknown-threshold or remove it") from None
            if chosen not in thresholds:
                raise CheckpointError(f"{candidate}: unknown_score {chosen!r} has no threshold; pass --unknown-threshold")
            if rate != UNKNOWN_QUANTILE:
                if not by_rate:
                    raise ConfigError(f"--unknown-rate {rate:g}: {candidate} (older protlc) has thresholds at the "
                                      f"{UNKNOWN_QUANTILE:g} rate only; pass --unknown-threshold")
                thresholds = by_rate
            return chosen, thresholds
    return None


def find_calibrated_threshold(checkpoint: Path) -> float | None:
    """The max-p threshold saved next to a run's checkpoints (RUN_DIR/calibration.json), if any."""
    found = find_calibration(checkpoint)
    return None if found is None else found[1][DEFAULT_SCORE]


def calibration_kmer(checkpoint: Path) -> int:
    """The k of ``nearest_kmer`` that the run's calibration.json was computed with: its ``kmer``, 3 for a file
    of an earlier protlc without one (:data:`~protlc.unknown.LEGACY_KMER`), :data:`~protlc.unknown.KMER`
    without a file. (The file's validity is checked by :func:`find_calibration`.)"""
    for candidate in (checkpoint.parent / CALIBRATION_FILE, checkpoint.parent.parent / CALIBRATION_FILE):
        if candidate.is_file():
            try:
                kmer = json.loads(candidate.read_text()).get("kmer", LEGACY_KMER)
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                return KMER
            if not isinstance(kmer, int) or isinstance(kmer, bool) or not 1 <= kmer <= 6:
                raise CheckpointError(f"{candidate}: kmer must be an integer from 1 to 6, got {kmer!r}")
            return kmer
    return KMER
