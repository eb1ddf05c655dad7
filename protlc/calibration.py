"""The "unknown" threshold: calibrated on the dev split at the end of ``protlc train``, read by ``predict``.

A sequence is flagged unknown when its top probability is below the threshold; the default is the 1st
percentile of the dev sequences' top probability, so that 99% of in-distribution sequences pass. It is
stored in ``RUN_DIR/calibration.json`` next to the checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from protlc.jsonio import write_json

CALIBRATION_FILE = "calibration.json"
UNKNOWN_QUANTILE = 0.01


def calibrate_unknown_threshold(dev_probs: np.ndarray, quantile: float = UNKNOWN_QUANTILE) -> float:
    """Top-probability threshold below which only ``quantile`` of dev sequences fall."""
    return float(np.quantile(dev_probs.max(axis=1), quantile))


def write_calibration(run_dir: Path, dev_probs: np.ndarray) -> float:
    threshold = calibrate_unknown_threshold(dev_probs)
    write_json(run_dir / CALIBRATION_FILE, {"unknown_threshold": threshold, "quantile": UNKNOWN_QUANTILE,
                                          "split": "dev", "dev_sequences": int(len(dev_probs))})
    return threshold


def find_calibrated_threshold(checkpoint: Path) -> float | None:
    """The threshold saved next to a run's checkpoints (RUN_DIR/calibration.json), if any."""
    for candidate in (checkpoint.parent / CALIBRATION_FILE, checkpoint.parent.parent / CALIBRATION_FILE):
        if candidate.is_file():
            return float(json.loads(candidate.read_text())["unknown_threshold"])
    return None
