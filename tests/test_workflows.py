"""The issue-3 experiment script end to end on the embedded sample (tiny network, one epoch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_classify_exthomfam_runs_the_three_runs_the_audits_and_the_figure(tmp_path, figure_content):
    env = {**os.environ, "PROTLC_EXTHOMFAM": str(REPO / "data" / "exthomfam_16fam.tsv"),
           "PROTLC": f"{sys.executable} -m protlc", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(REPO / "workflows" / "classify_exthomfam.sh"), str(tmp_path), "tiny", "cpu",
                           "32", "1", "2e-3", "0.3"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    tag = "tiny-e1-lr2e-3-tau0.3"
    summary = json.loads((tmp_path / f"summary-{tag}.json").read_text())
    assert sorted(summary) == [f"{tag}-clean-cce", f"{tag}-r40-cce", f"{tag}-r40-proselflc_at"]
    assert "precision" in summary[f"{tag}-r40-proselflc_at"]["audit"]
    width, height, ink, colours = figure_content(tmp_path / f"dynamics-r40-{tag}.png")
    assert width >= 800 and height >= 400 and ink > 0.02 and colours > 10  # panels with curves, not a blank page
    configs = {run: yaml.safe_load((tmp_path / f"{tag}-{run}" / "config.yaml").read_text())
               for run in ("clean-cce", "r40-cce", "r40-proselflc_at")}
    assert {run: c["optim"]["lr"] for run, c in configs.items()} == dict.fromkeys(configs, 0.002)
    assert configs["r40-proselflc_at"]["loss"]["tau"] == 0.3  # TAU goes to the ProSelfLC-AT run only
    assert all(c["loss"].get("tau") != 0.3 for run, c in configs.items() if run != "r40-proselflc_at")
    dynamics = pd.read_csv(tmp_path / f"{tag}-r40-cce" / "dynamics.csv")
    assert len(dynamics) == 1  # one epoch of 7 steps: only the final model's point
